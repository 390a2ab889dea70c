import os

import numpy as np
import pytest
import torch

from isplit.config import settings
from isplit.data.loader import ManifestDataset, stratified_subset, transform_from_config
from isplit.nets import models
from isplit.train import retrain
from isplit.train.loop import evaluate, fit
from tools.synthetic import INPUT
from tools.synthetic import TRAIN_CFG as CFG


def test_checkpoint_of_another_run_is_ignored(array_dataset, tmp_path):
    torch.manual_seed(0)
    model = models.build("resnet18", 3)
    ds = ManifestDataset(array_dataset, "train", transform_from_config(INPUT), subset=30)
    cfg = settings("finetune", {**CFG, "epochs": 1})
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


def test_retraining_uses_label_smoothing(array_dataset, tmp_path):
    """retrain.label_smoothing reaches the loss (it used to be silently ignored)."""
    torch.manual_seed(0)
    models.save_model(
        tmp_path / "ft.pt",
        models.build("resnet18", 3),
        {"model": "resnet18", "num_classes": 3, "input": INPUT},
    )
    losses = []
    for smoothing in (0.0, 0.5):
        m = retrain.run(
            model_path=tmp_path / "ft.pt",
            dataset_dir=array_dataset,
            layer="layer3.1",
            out_dir=tmp_path / f"s{smoothing}",
            cfg={"epochs": 1, "batch_size": 30, "train_subset": 30, "label_smoothing": smoothing},
            seed=0,
            threads=1,
            log=open(os.devnull, "w"),
        )
        losses.append(m["history"][0]["train_loss"])
    # same seed, same data, same initial bottleneck: only the loss differs
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_cached_head_outputs_train_the_same_bottleneck(array_dataset, tmp_path, monkeypatch):
    """Training on the frozen head's outputs computed once gives the bottleneck that
    recomputing them every batch gives (up to float rounding)."""
    torch.manual_seed(0)
    models.save_model(
        tmp_path / "ft.pt",
        models.build("resnet18", 3),
        {"model": "resnet18", "num_classes": 3, "input": INPUT},
    )
    runs = {}
    for name, limit in (("cached", retrain.CACHE_LIMIT_BYTES), ("recomputed", 0)):
        monkeypatch.setattr(retrain, "CACHE_LIMIT_BYTES", limit)
        m = retrain.run(
            model_path=tmp_path / "ft.pt",
            dataset_dir=array_dataset,
            layer="layer2.1",
            out_dir=tmp_path / name,
            cfg={"epochs": 2, "batch_size": 30, "train_subset": 60},
            seed=0,
            threads=1,
            log=open(os.devnull, "w"),
        )
        runs[name] = m
        assert m["head_outputs_cached"] == (limit > 0)
    a = torch.load(tmp_path / "cached/model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "recomputed/model.pt", weights_only=True)["state_dict"]
    for k in a:
        if k.startswith("bottleneck."):
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k
    losses = [[h["train_loss"] for h in runs[n]["history"]] for n in ("cached", "recomputed")]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
