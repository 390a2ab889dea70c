import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from isplit import models
from isplit.datasets.loader import ManifestDataset, stratified_subset, transform_from_config
from isplit.train import evaluate, fit

INPUT = {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"}
CFG = {
    "epochs": 4,
    "batch_size": 30,
    "optimizer": "adamw",
    "lr": 0.003,
    "weight_decay": 0.05,
    "schedule": "onecycle",
    "warmup": 0.3,
    "augment": "flip",
}


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
        "--out",
        str(out),
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
    ckpt = resumed / "checkpoint.pt"
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
    assert not ckpt.exists()  # the finished model supersedes it

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


def test_checkpoint_of_another_run_is_ignored(array_dataset, tmp_path):
    torch.manual_seed(0)
    model = models.build("resnet18", 3)
    ds = ManifestDataset(array_dataset, "train", transform_from_config(INPUT), subset=30)
    cfg = {**CFG, "epochs": 1}
    fit(
        model,
        ds,
        cfg,
        seed=0,
        checkpoint=tmp_path / "c.pt",
        fingerprint="A",
        log=open(os.devnull, "w"),
    )
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        fit(
            models.build("resnet18", 3),
            ds,
            cfg,
            seed=0,
            checkpoint=tmp_path / "c.pt",
            fingerprint="B",
            log=fh,
        )
    assert "belongs to another run" in log.read_text()


def test_stratified_subset_is_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    idx = stratified_subset(labels, 32, seed=1)
    assert len(idx) == 32 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx])
    assert counts.tolist() == [20, 10, 2]
    assert np.array_equal(idx, stratified_subset(labels, 32, seed=1))
    assert not np.array_equal(idx, stratified_subset(labels, 32, seed=2))
    assert len(stratified_subset(labels, None, 0)) == 160
    with pytest.raises(ValueError):
        stratified_subset(labels, 0, 0)


def test_evaluate_counts():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # predicts class 0 for every input
            return torch.tensor([[1.0, 0.0]]).expand(len(x), 2)

    data = [(torch.zeros(1), y) for y in (0, 0, 1)]
    ev = evaluate(Fixed(), data, batch_size=2, num_classes=2)
    assert ev["top1"] == pytest.approx(2 / 3)
    assert ev["per_class"] == [1.0, 0.0]
    assert ev["confusion"] == [[2, 0], [1, 0]]
