"""Retrain the bottleneck at one split point, then evaluate the split model.

The protocol is ours (the public code ships no training code; docs/methods.md): the
fine-tuned backbone is frozen, BatchNorm layers of head and tail stay in eval mode, and only the
bottleneck is trained, with cross-entropy at the output plus an optional ``recon_weight`` × MSE
between the decoded and the original activation. An optional second stage then freezes the
bottleneck and fine-tunes the classifier's final Linear layer (the public code's
``fine_tuning_freeze``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from isplit import __version__
from isplit.config import RetrainSettings, settings
from isplit.data.loader import read_classes, split_sets
from isplit.io.files import write_json, write_table
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism
from isplit.nets.split import SplitModel, build_split, cost, save_split
from isplit.train.loop import cross_entropy, file_identity, fit, run_fingerprint, score

CACHE_LIMIT_BYTES = 2 << 30  # head outputs kept in memory for training, at most


class AfterHead(nn.Module):
    """bottleneck + tail of a split: what trains on cached head outputs."""

    def __init__(self, split: SplitModel):
        super().__init__()
        self.split = split

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.split.tail(self.split.bottleneck(a))


@torch.no_grad()
def head_outputs(split: SplitModel, dataset, batch_size: int, device) -> TensorDataset:
    """The frozen head's output for every image of ``dataset`` (eval mode), with its label."""
    split.eval().to(device)
    acts, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        acts.append(split.head(x.to(device)).cpu())
        labels.append(torch.as_tensor(y))
    return TensorDataset(torch.cat(acts), torch.cat(labels))


def _freeze_all_but(split: SplitModel, trainable: nn.Module) -> None:
    for p in split.parameters():
        p.requires_grad_(False)
    for p in trainable.parameters():
        p.requires_grad_(True)


def _train_only(module: nn.Module):
    """Train mode for ``module`` alone: the frozen backbone's BatchNorm keeps its statistics."""

    def mode(m: SplitModel):
        m.eval()
        module.train()

    return mode


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    layer: str,
    out_dir: str | Path,
    cfg: RetrainSettings | dict,
    seed: int,
    data_seed: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes ``model.pt``, ``metrics.json`` and ``predictions.parquet`` into ``out_dir``.

    ``seed`` drives the bottleneck's initialisation and the batch order (one job per seed of
    ``retrain.seeds``); ``data_seed`` (default: ``seed``) picks the stratified subsets, so that
    every seed of a split is trained and scored on the same images."""
    data_seed = seed if data_seed is None else data_seed
    c = settings("retrain", cfg)
    out_dir, dataset_dir = Path(out_dir), Path(dataset_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(seed, threads)
    dev = pick_device(device)
    model, meta = models.load_model(model_path)
    inp = settings("input", meta["input"])
    classes = read_classes(dataset_dir)
    torch.manual_seed(seed)  # the bottleneck's initialisation
    split = build_split(model, layer, c, inp)
    sets = split_sets(dataset_dir, inp, c, seed=data_seed)
    ce = cross_entropy(c, sets["train"], dev)
    # the head is frozen and deterministic: without augmentation its outputs are computed once
    # and every epoch trains on them (when they fit in memory)
    activation = cost(split, inp.shape())["activation_bytes"]
    cached = (
        c.augment == "none"
        and activation * (len(sets["train"]) + len(sets["val"])) <= CACHE_LIMIT_BYTES
    )
    trained: nn.Module = split
    train_set, val_set = sets["train"], sets["val"]
    if cached:
        t_cache = time.perf_counter()
        train_set = head_outputs(split, train_set, c.eval_batch_size, dev)
        val_set = head_outputs(split, val_set, c.eval_batch_size, dev)
        trained = AfterHead(split)
        print(
            f"head outputs cached ({len(train_set)} + {len(val_set)} images, "
            f"{time.perf_counter() - t_cache:.1f} s)",
            file=log,
            flush=True,
        )

    def loss_fn(m: nn.Module, x, y):
        if cached:
            a = x
        else:
            with torch.no_grad():  # the head is frozen: no graph needed
                a = split.head(x)
        r = split.bottleneck(a)
        logits = split.tail(r)
        loss = ce(logits, y)
        if c.recon_weight:
            loss = loss + c.recon_weight * nn.functional.mse_loss(r, a)
        return loss, logits

    ident = {
        "model": file_identity(model_path),
        "layer": layer,
        "cfg": c.to_dict(),
        "seed": seed,
        "data_seed": data_seed,
        "cached": cached,
        "version": __version__,
    }
    fingerprint = run_fingerprint(ident)
    history: list[dict] = []
    t0 = time.perf_counter()
    common = {
        "device": dev,
        "val_set": val_set,
        "num_workers": c.num_workers,
        "loss_fn": loss_fn,
        "log": log,
    }
    if any(True for _ in split.bottleneck.parameters()) and c.epochs > 0:
        _freeze_all_but(split, split.bottleneck)
        history += fit(
            trained,
            train_set,
            c,
            seed=seed,
            checkpoint=out_dir / "checkpoint.pt",
            fingerprint=fingerprint,
            train_mode=_train_only(split.bottleneck),
            **common,
        )
    if c.classifier_epochs > 0:
        head_name, _ = models.classifier_head(model)
        clf = model.get_submodule(head_name)
        _freeze_all_but(split, clf)
        stage2 = dataclasses.replace(c, epochs=c.classifier_epochs, lr=c.classifier_lr)
        for row in fit(
            trained,
            train_set,
            stage2,
            seed=seed + 1,
            checkpoint=out_dir / "checkpoint-classifier.pt",
            fingerprint=fingerprint + ":classifier",
            train_mode=_train_only(clf),
            **common,
        ):
            history.append({**row, "stage": "classifier"})
    for p in split.parameters():
        p.requires_grad_(False)

    split.cpu()
    metrics: dict = {
        "layer": layer,
        "seed": seed,
        "head_outputs_cached": cached,
        "bottleneck": c.bottleneck,
        "train_seconds": time.perf_counter() - t0,
        "epochs": len(history),
        "history": history,
        "isplit_version": __version__,
        **cost(split, inp.shape()),
    }
    scored = {"val": sets["val"], "test": sets["test"]}
    scores, predictions = score(
        split, scored, classes, batch_size=c.eval_batch_size, device=dev, log=log, what=f"{layer}: "
    )
    metrics.update(scores)
    split.cpu()
    save_meta = {
        "model": meta["model"],
        "num_classes": len(classes),
        "classes": classes,
        "input": inp.to_dict(),
        "layer": layer,
        "bottleneck": c.bottleneck_spec(),
        "isplit_version": __version__,
    }
    save_split(out_dir / "model.pt", split, save_meta)
    write_table(predictions, out_dir / "predictions.parquet")
    write_json(out_dir / "metrics.json", metrics)
    for ck in ("checkpoint.pt", "checkpoint-classifier.pt"):
        (out_dir / ck).unlink(missing_ok=True)
    return metrics
