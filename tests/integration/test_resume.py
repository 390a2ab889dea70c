"""Killed training resumes to bit-identical weights (real SIGKILL of a real `isplit` process)."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

from isplit.nets import models, split
from tools.synthetic import INPUT
from tools.synthetic import TRAIN_CFG as CFG

FINETUNE_OUTPUTS = ("model.pt", "metrics.json", "history.csv", "predictions.parquet")


def finetune_cmd(dataset, out, cfg=CFG):
    return [
        sys.executable,
        "-m",
        "isplit",
        "finetune",
        "--dataset",
        str(dataset),
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--input",
        json.dumps(INPUT),
        "--config",
        json.dumps(cfg),
        "--seed",
        "3",
        "--model-out",
        str(out / "model.pt"),
        "--metrics-out",
        str(out / "metrics.json"),
        "--history-out",
        str(out / "history.csv"),
        "--predictions-out",
        str(out / "predictions.parquet"),
        "--threads",
        "1",
    ]


def state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_killed_run_resumes_to_identical_weights(array_dataset, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    r = subprocess.run(finetune_cmd(array_dataset, full), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    proc = subprocess.Popen(
        finetune_cmd(array_dataset, resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = resumed / ".metrics-checkpoint" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < CFG["epochs"]
    assert not (resumed / "model.pt").exists()

    r = subprocess.run(finetune_cmd(array_dataset, resumed), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"resuming from {ckpt} after epoch {done}/4" in r.stderr
    a, b = state(full / "model.pt"), state(resumed / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the finished model supersedes the checkpoint: only the named outputs are left
    assert sorted(p.name for p in resumed.iterdir()) == sorted(FINETUNE_OUTPUTS)
    assert sorted(p.name for p in full.iterdir()) == sorted(FINETUNE_OUTPUTS)

    m_full = json.loads((full / "metrics.json").read_text())
    m_res = json.loads((resumed / "metrics.json").read_text())
    assert m_full["test"] == m_res["test"]
    assert m_full["test"]["top1"] > 0.6  # three easy classes: it learned something
    hist = pd.read_csv(resumed / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(hist.columns)
    assert set(m_full["test"]["per_class"]) == {"horizontal", "vertical", "blob"}
    conf = np.array(m_full["test"]["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == m_full["test"]["n"] == 60


def test_retrain_resumes_after_kill(array_dataset, tmp_path):
    torch.manual_seed(0)
    model = models.build("resnet18", 3)
    meta = {"model": "resnet18", "num_classes": 3, "input": {"image_size": 32}}
    models.save_model(tmp_path / "ft.pt", model, meta)
    cfg = {
        "bottleneck": "ae",
        "ratio": 8,
        "stages": 2,
        "epochs": 4,
        "batch_size": 30,
        "optimizer": "adam",
        "lr": 0.003,
        "schedule": "onecycle",
        "recon_weight": 0.1,
    }

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "isplit",
            "retrain-split",
            "--model",
            str(tmp_path / "ft.pt"),
            "--dataset",
            str(array_dataset),
            "--layer",
            "layer2.0",
            "--config",
            json.dumps(cfg),
            "--seeds",
            "1",
            "--model-out",
            str(out / "model.pt"),
            "--metrics-out",
            str(out / "metrics.json"),
            "--predictions-out",
            str(out / "predictions.parquet"),
            "--threads",
            "1",
        ]

    r = subprocess.run(cmd(tmp_path / "a"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(
        cmd(tmp_path / "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "b" / ".metrics-seeds" / "checkpoint-seed1.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run(cmd(tmp_path / "b"), capture_output=True, text=True)
    assert r.returncode == 0 and "resuming from" in r.stderr, r.stderr
    # the finished seeds and checkpoints went with the job: only the named outputs are left
    outputs = ["metrics.json", "model.pt", "predictions.parquet"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == outputs
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["layer"] == "layer2.0" and m["bytes"] == m["bytes_float32"] == 32 * 1 * 1 * 4
    assert m["activation_shape"] == [128, 4, 4] and m["code_shape"] == [32, 1, 1]
    assert m["head_params"] + m["tail_params"] == sum(p.numel() for p in model.parameters())
    assert m["head_flops"] > 0 and m["tail_flops"] > 0 and m["encoder_flops"] > 0
    # the frozen backbone really stayed frozen
    s, _ = split.load_split(tmp_path / "a" / "model.pt")
    base = model.state_dict()
    head = [p for _, p in s.head.named_parameters()]
    assert any(torch.equal(p, base["conv1.weight"]) for p in head)
    for p in head:  # every head parameter is the fine-tuned model's, unchanged
        assert any(torch.equal(p, q) for q in base.values() if q.shape == p.shape)
    assert 0 <= m["runs"][0]["test"]["top1"] <= 1 and m["runs"][0]["test"]["n"] == 60


def test_same_machine_and_config_give_identical_numbers(array_dataset, tmp_path):
    """Two independent processes fine-tuning, then retraining a split with two seeds, from one
    config on one machine: the same weights, the same scores and the same predictions."""
    cfg = {**CFG, "epochs": 1}
    retrain_cfg = json.dumps({"bottleneck": "budget", "code_bytes": 64, "epochs": 1,
                              "batch_size": 30, "train_subset": 60})  # fmt: skip
    for run in ("a", "b"):
        r = subprocess.run(
            finetune_cmd(array_dataset, tmp_path / run / "ft", cfg), capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        out = tmp_path / run / "split"
        r = subprocess.run(
            [sys.executable, "-m", "isplit", "retrain-split",
             "--model", str(tmp_path / run / "ft" / "model.pt"), "--dataset", str(array_dataset),
             "--layer", "layer3.0", "--config", retrain_cfg, "--seeds", "0,1",
             "--model-out", str(out / "model.pt"), "--metrics-out", str(out / "metrics.json"),
             "--predictions-out", str(out / "predictions.parquet"), "--threads", "1"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    a, b = state(tmp_path / "a/ft/model.pt"), state(tmp_path / "b/ft/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = state(tmp_path / "a/split/model.pt"), state(tmp_path / "b/split/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)

    def scores(run):
        m = json.loads((tmp_path / run / "split/metrics.json").read_text())
        return [{k: v for k, v in r.items() if k not in ("train_seconds", "history")}
                for r in m["runs"]]  # fmt: skip

    assert scores("a") == scores("b")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a/split/predictions.parquet"),
        pd.read_parquet(tmp_path / "b/split/predictions.parquet"),
    )
    assert (
        json.loads((tmp_path / "a/ft/metrics.json").read_text())["test"]
        == json.loads((tmp_path / "b/ft/metrics.json").read_text())["test"]
    )
