"""Retrain the bottleneck at one split point, then evaluate the split model.

The protocol is ours (the public code ships no training code; docs/method.md): the
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

from isplit import __version__
from isplit.config import RetrainSettings, settings
from isplit.data.loader import read_classes, split_sets
from isplit.io.files import write_json
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism
from isplit.nets.split import SplitModel, build_split, cost, save_split
from isplit.train.loop import file_identity, fit, run_fingerprint, score


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
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes ``model.pt`` and ``metrics.json`` into ``out_dir``."""
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
    sets = split_sets(dataset_dir, inp, c, seed=seed)
    ce = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)

    def loss_fn(m: SplitModel, x, y):
        with torch.no_grad():  # the head is frozen: no graph needed
            a = m.head(x)
        r = m.bottleneck(a)
        logits = m.tail(r)
        loss = ce(logits, y)
        if c.recon_weight:
            loss = loss + c.recon_weight * nn.functional.mse_loss(r, a)
        return loss, logits

    ident = {
        "model": file_identity(model_path),
        "layer": layer,
        "cfg": c.to_dict(),
        "seed": seed,
        "version": __version__,
    }
    fingerprint = run_fingerprint(ident)
    history: list[dict] = []
    t0 = time.perf_counter()
    common = {
        "device": dev,
        "val_set": sets["val"],
        "num_workers": c.num_workers,
        "loss_fn": loss_fn,
        "log": log,
    }
    if any(True for _ in split.bottleneck.parameters()) and c.epochs > 0:
        _freeze_all_but(split, split.bottleneck)
        history += fit(
            split,
            sets["train"],
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
            split,
            sets["train"],
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
        "bottleneck": c.bottleneck,
        "train_seconds": time.perf_counter() - t0,
        "epochs": len(history),
        "history": history,
        "isplit_version": __version__,
        **cost(split, inp.shape()),
    }
    scored = {"val": sets["val"], "test": sets["test"]}
    metrics.update(
        score(
            split,
            scored,
            classes,
            batch_size=c.eval_batch_size,
            device=dev,
            log=log,
            what=f"{layer}: ",
        )
    )
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
    write_json(out_dir / "metrics.json", metrics)
    for ck in ("checkpoint.pt", "checkpoint-classifier.pt"):
        (out_dir / ck).unlink(missing_ok=True)
    return metrics
