import os

import numpy as np
import pandas as pd
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


def _finetuned(tmp_path):
    torch.manual_seed(0)
    models.save_model(
        tmp_path / "ft.pt",
        models.build("resnet18", 3),
        {"model": "resnet18", "num_classes": 3, "input": INPUT},
    )
    return tmp_path / "ft.pt"


def _retrain(ft, dataset, out, cfg, seeds, layer="layer3.1"):
    return retrain.run(
        model_path=ft,
        dataset_dir=dataset,
        layer=layer,
        cfg=cfg,
        seeds=seeds,
        model_out=out / "model.pt",
        metrics_out=out / "metrics.json",
        predictions_out=out / "predictions.parquet",
        threads=1,
        log=open(os.devnull, "w"),
    )


def test_retraining_uses_label_smoothing(array_dataset, tmp_path):
    """retrain.label_smoothing reaches the loss."""
    ft = _finetuned(tmp_path)
    losses = []
    for smoothing in (0.0, 0.5):
        cfg = {"epochs": 1, "batch_size": 30, "train_subset": 30, "label_smoothing": smoothing}
        m = _retrain(ft, array_dataset, tmp_path / f"s{smoothing}", cfg, [0])
        losses.append(m["runs"][0]["history"][0]["train_loss"])
    # same seed, same data, same initial bottleneck: only the loss differs
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_seeds_in_one_job_equal_separate_jobs(array_dataset, tmp_path):
    """One job training seeds 3 and 5 gives, for seed 5, the predictions, history and
    bottleneck that a job training seed 5 alone gives (each seed starts from a fresh copy of
    the fine-tuned model), and only the first seed's model is saved."""
    ft = _finetuned(tmp_path)
    cfg = {"epochs": 2, "batch_size": 30, "train_subset": 60, "classifier_epochs": 1}
    both = _retrain(ft, array_dataset, tmp_path / "both", cfg, [3, 5])
    alone = _retrain(ft, array_dataset, tmp_path / "alone", cfg, [5])
    assert [r["seed"] for r in both["runs"]] == [3, 5] and both["seeds"] == [3, 5]
    a, b = both["runs"][1], alone["runs"][0]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test"] == b["test"] and a["val"] == b["val"]
    pa = pd.read_parquet(tmp_path / "both/predictions.parquet")
    pb = pd.read_parquet(tmp_path / "alone/predictions.parquet")
    assert sorted(pa["seed"].unique()) == [3, 5]
    pd.testing.assert_frame_equal(pa[pa["seed"] == 5].reset_index(drop=True), pb)
    three = _retrain(ft, array_dataset, tmp_path / "three", cfg, [3])
    sa = torch.load(tmp_path / "both/model.pt", weights_only=True)
    sb = torch.load(tmp_path / "three/model.pt", weights_only=True)
    assert sa["meta"]["seed"] == 3
    for k, v in sa["state_dict"].items():
        assert torch.equal(v, sb["state_dict"][k]), k
    assert three["runs"][0]["test"] == both["runs"][0]["test"]
    # nothing but the three declared outputs is left beside them
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == [
        "metrics.json",
        "model.pt",
        "predictions.parquet",
    ]


def test_cached_head_outputs_train_the_same_bottleneck(array_dataset, tmp_path, monkeypatch):
    """Training on the frozen head's outputs computed once gives the bottleneck that
    recomputing them every batch gives (up to float rounding)."""
    ft = _finetuned(tmp_path)
    runs = {}
    for name, limit in (("cached", retrain.CACHE_LIMIT_BYTES), ("recomputed", 0)):
        monkeypatch.setattr(retrain, "CACHE_LIMIT_BYTES", limit)
        cfg = {"epochs": 2, "batch_size": 30, "train_subset": 60}
        m = _retrain(ft, array_dataset, tmp_path / name, cfg, [0], layer="layer2.1")
        runs[name] = m
        assert m["head_outputs_cached"] == (limit > 0)
    a = torch.load(tmp_path / "cached/model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "recomputed/model.pt", weights_only=True)["state_dict"]
    for k in a:
        if k.startswith("bottleneck."):
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k
    losses = [[h["train_loss"] for h in runs[n]["runs"][0]["history"]] for n in runs]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
