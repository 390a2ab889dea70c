"""Any classifier through the workflow (docs/models.md): the dry run takes every spelling and
refuses a model it cannot split, naming why; the tiny pipeline runs the worked example and a
vision transformer to quality.json; every export holds ONNX halves and the measured onnxruntime
profile feeds the recommendation (``latency.device: measured``)."""

from __future__ import annotations

import json
import re
import textwrap

import pandas as pd
import pytest
import yaml

from tools.workflow import ROOT, planned_jobs, snakemake

EXAMPLE = "python:examples/custom_net.py:build"


def tiny_config(path, model, *, image_size=32, **changes):
    """config/tiny.yaml with experiment ``e`` on ``model`` (random init), ``changes`` merged
    into its sections."""
    cfg = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    exp = cfg["experiments"].pop("tiny")
    exp.update(model=model, weights="none", input={"image_size": image_size})
    for section, values in changes.items():
        exp.setdefault(section, {}).update(values)
    cfg["experiments"]["e"] = exp
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("model", "size"), [("densenet121", 32), ("googlenet", 32), ("vit_b_16", 32), (EXAMPLE, 32)]
)
def test_dry_run_accepts_any_classifier(tmp_path, model, size):
    cfg = tiny_config(tmp_path / "c.yaml", model, image_size=size)
    r = snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path))
    jobs = planned_jobs(r.stdout)
    assert jobs["finetune"] == 1 and jobs["profile_onnx"] == 1
    summary = [json.loads(p.read_text()) for p in (tmp_path / ".snakemake/isplit-models").iterdir()]
    assert summary[0]["image_size"] == size and summary[0]["probe_points"] >= 5


BAD = {
    "raises.py": ("import torch\nraise RuntimeError('boom at import')\ndef build(): pass\n",
                  "importing python model file .*raises.py failed: RuntimeError: boom at import"),
    "nomodule.py": ("def build(num_classes=2):\n    return 'a string'\n",
                    "returned str, not a torch nn.Module"),
    "control.py": (textwrap.dedent("""
        from torch import nn
        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)
            def forward(self, x):
                y = self.conv(x)
                if y.sum() > 0:
                    y = y * 2
                return self.fc(y.mean((2, 3)))
        def build():
            return Gate()
        """), "cannot trace Gate with torch.fx: in its own forward after node 'gt': TraceError"),
    "nocut.py": (textwrap.dedent("""
        import torch
        from torch import nn
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Linear(8, 2)
            def forward(self, x):
                return self.fc(torch.cat([self.a(x).mean((2, 3)), self.b(x).mean((2, 3))], 1))
        def build():
            return Two()
        """), "Two has no usable cut point before its classifier 'fc'"),
}  # fmt: skip


def test_dry_run_names_what_is_wrong_with_a_python_model(tmp_path):
    for name, (code, message) in BAD.items():
        (tmp_path / name).write_text(code)
        cfg = tiny_config(tmp_path / "c.yaml", f"python:{name}:build")
        r = snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path), check=False)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "experiments.e.model" in out, name
        assert re.search(message, out), (name, out[-2000:])
        assert not (tmp_path / "results").exists()
    for spec, message in [
        ("python:gone.py:build", "python model file 'gone.py' does not exist"),
        ("python:nomodule.py:make", "defines no 'make' at its top level"),
    ]:
        cfg = tiny_config(tmp_path / "c.yaml", spec)
        r = snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path), check=False)
        assert r.returncode != 0 and message in r.stdout + r.stderr
    cfg = tiny_config(tmp_path / "c.yaml", EXAMPLE)
    cfg.write_text(cfg.read_text().replace("weights: none", "weights: imagenet"))
    r = snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path), check=False)
    assert r.returncode != 0 and "experiments.e.weights: 'imagenet'" in r.stdout + r.stderr


def test_worked_example_runs_end_to_end_with_measured_device(tmp_path):
    """examples/custom_net.py through config/tiny.yaml, this machine as the device: quality,
    ONNX halves in every export, the measured profile and a recommendation made from it."""
    cfg = tiny_config(tmp_path / "c.yaml", EXAMPLE, latency={"device": "measured"})
    snakemake(
        "--cores", "2", "--configfile", str(cfg), "--directory", str(tmp_path),
        "results/e/quality.json", "results/e/recommendation.json",
    )  # fmt: skip
    res = tmp_path / "results/e"
    quality = json.loads((res / "quality.json").read_text())
    assert quality["n_points"] >= 1
    layers = pd.read_csv(res / "candidates.tsv", sep="\t")["layer"].tolist()
    measured = pd.read_parquet(res / "latency/measured.parquet")
    for layer in layers:
        files = {p.name for p in (res / "deploy" / layer).iterdir()}
        assert {"device.onnx", "server.onnx", "device.pt2", "server.pt2"} <= files
    assert set(measured["layer"]) == {*layers, "LC"}
    assert set(measured["precision"]) == {"fp32", "int8"}
    fp32 = measured[measured["precision"] == "fp32"].set_index("layer")
    assert (fp32["median_s"] > 0).all() and (fp32["p95_s"] >= fp32["median_s"]).all()
    # the float32 ONNX model scores what the fine-tuned PyTorch model scored on test
    finetune = json.loads((res / "finetune/metrics.json").read_text())
    assert fp32.loc["LC", "test_top1"] == pytest.approx(finetune["test"]["top1"])
    int8 = measured[measured["precision"] == "int8"]
    assert (int8["median_s"].notna() | (int8["note"] != "")).all()
    latency = pd.read_parquet(res.parent / "e/latency.parquet")
    row = latency[latency["layer"] == layers[0]].iloc[0]
    assert row["device_s"] == pytest.approx(fp32.loc[layers[0], "median_s"])
    assert json.loads((res / "recommendation.json").read_text())


def test_vision_transformer_runs_to_quality(tmp_path):
    """A small timm ViT (tokens N x L x D at every probe point) through the tiny pipeline."""
    pytest.importorskip("timm")
    cfg = tiny_config(tmp_path / "c.yaml", "timm:vit_tiny_patch16_224", retrain={"seeds": [0]})
    snakemake(
        "--cores", "2", "--configfile", str(cfg), "--directory", str(tmp_path),
        "results/e/quality.json",
    )  # fmt: skip
    res = tmp_path / "results/e"
    samples = pd.read_parquet(res / "importance/samples.parquet")
    assert "blocks.0" in set(samples["layer"]) and (samples["cui"] >= 0).all()
    assert samples.groupby("layer")["cui"].mean().gt(0).any()
    assert json.loads((res / "quality.json").read_text())["n_points"] >= 1
