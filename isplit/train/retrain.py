"""Retrain the bottleneck at one split point, then evaluate the split model.

The protocol is ours (the public code ships no training code; docs/methods.md): the
fine-tuned backbone is frozen, BatchNorm layers of head and tail stay in eval mode, and only the
bottleneck is trained, with cross-entropy at the output plus an optional ``recon_weight`` × MSE
between the decoded and the original activation. An optional second stage then freezes the
bottleneck and fine-tunes the classifier's final Linear layer (the public code's
``fine_tuning_freeze``).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from isplit import __version__
from isplit.config import RetrainSettings, settings
from isplit.data.loader import read_classes, split_sets
from isplit.io.files import work_dir, write_json, write_table
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


class HeadOutputs(TensorDataset):
    """The frozen head's output for every image of a dataset, with its label; ``frame`` and
    ``labels`` are the dataset's, so scores and class weights see the same images."""

    def __init__(self, acts: torch.Tensor, labels: torch.Tensor, frame):
        super().__init__(acts, labels)
        self.frame, self.labels = frame, labels.numpy()


@torch.no_grad()
def head_outputs(head: nn.Module, dataset, batch_size: int, device) -> HeadOutputs:
    """``head`` (eval mode) on every image of ``dataset``."""
    head.eval().to(device)
    acts, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        acts.append(head(x.to(device)).cpu())
        labels.append(torch.as_tensor(y))
    return HeadOutputs(torch.cat(acts), torch.cat(labels), getattr(dataset, "frame", None))


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
    cfg: RetrainSettings | dict,
    seeds: Sequence[int],
    model_out: str | Path,
    metrics_out: str | Path,
    predictions_out: str | Path,
    data_seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Retrain the bottleneck at ``layer`` once per seed of ``seeds``; writes the first seed's
    ``model_out`` (the split that is exported and deployed), ``metrics_out`` (costs, and each
    seed's history and scores under ``runs``) and ``predictions_out`` (every val and test
    image's prediction, one block per seed, column ``seed``).

    Each seed drives the bottleneck's initialisation and the batch order; ``data_seed`` picks
    the stratified subsets, so every seed is trained and scored on the same images. The data,
    the model and the frozen head's outputs are loaded and computed once for all seeds; each
    seed then trains from a fresh copy of the fine-tuned model, so a seed's result does not
    depend on which other seeds share its job. A finished seed is kept beside the outputs
    until the job ends, so an interrupted job resumes with the next seed (and the unfinished
    seed from its last epoch)."""
    seeds = [int(x) for x in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"retrain seeds must be distinct and at least one, got {seeds}")
    c = settings("retrain", cfg)
    model_out, metrics_out, predictions_out = map(Path, (model_out, metrics_out, predictions_out))
    work = work_dir(metrics_out, "seeds")
    dataset_dir = Path(dataset_dir)
    set_determinism(seeds[0], threads)
    dev = pick_device(device)
    base, meta = models.load_model(model_path)
    inp = settings("input", meta["input"])
    classes = read_classes(dataset_dir)
    sets = split_sets(dataset_dir, inp, c, seed=data_seed)
    shape = inp.shape()
    plain = build_split(base, layer, {**c.bottleneck_spec(), "bottleneck": "none"}, inp)
    activation = cost(plain, shape)["activation_bytes"]
    images = sum(len(sets[k]) for k in ("train", "val", "test"))
    # the head is frozen and deterministic: without augmentation its outputs are computed once
    # and every seed and epoch trains and scores on them (when they fit in memory)
    cached = c.augment == "none" and activation * images <= CACHE_LIMIT_BYTES
    if cached:
        t_cache = time.perf_counter()
        sets = {k: head_outputs(plain.head, v, c.eval_batch_size, dev) for k, v in sets.items()}
        print(
            f"head outputs cached ({images} images, {time.perf_counter() - t_cache:.1f} s)",
            file=log,
            flush=True,
        )
    ident = {
        "model": file_identity(model_path),
        "layer": layer,
        "cfg": c.to_dict(),
        "data_seed": data_seed,
        "cached": cached,
        "version": __version__,
    }
    runs, tables, first = [], [], None
    for seed in seeds:
        done = work / f"seed{seed}.pt"
        fingerprint = run_fingerprint({**ident, "seed": seed})
        kept = torch.load(done, weights_only=True) if done.exists() else None
        if kept is None or kept.get("fingerprint") != fingerprint:
            kept = _one_seed(
                base,
                layer,
                c,
                inp,
                sets,
                classes,
                seed,
                cached,
                dev,
                threads,
                work,
                fingerprint,
                log,
            )
            torch.save(kept, done)
        runs.append(kept["run"])
        tables.append(pd.DataFrame(kept["predictions"]).assign(seed=seed))
        first = first or kept
    split = build_split(base, layer, c, inp)
    split.load_state_dict(first["state_dict"])
    metrics: dict = {
        "layer": layer,
        "seeds": seeds,
        "data_seed": data_seed,
        "head_outputs_cached": cached,
        "bottleneck": c.bottleneck,
        "isplit_version": __version__,
        **cost(split, shape),
        "runs": runs,
    }
    save_meta = {
        "model": meta["model"],
        "num_classes": len(classes),
        "classes": classes,
        "input": inp.to_dict(),
        "layer": layer,
        "seed": seeds[0],
        "bottleneck": c.bottleneck_spec(),
        "isplit_version": __version__,
    }
    save_split(model_out, split, save_meta)
    write_table(pd.concat(tables, ignore_index=True), predictions_out)
    write_json(metrics_out, metrics)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def _one_seed(base, layer, c, inp, sets, classes, seed, cached, dev, threads, work, fp, log):
    """Train and score one seed's bottleneck on a fresh copy of the fine-tuned model."""
    set_determinism(seed, threads)
    model = copy.deepcopy(base)
    torch.manual_seed(seed)  # the bottleneck's initialisation
    split = build_split(model, layer, c, inp)
    ce = cross_entropy(c, sets["train"], dev)
    trained: nn.Module = AfterHead(split) if cached else split

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

    history: list[dict] = []
    t0 = time.perf_counter()
    common = {
        "device": dev,
        "val_set": sets["val"],
        "num_workers": 0 if cached else c.num_workers,
        "loss_fn": loss_fn,
        "log": log,
    }
    if any(True for _ in split.bottleneck.parameters()) and c.epochs > 0:
        _freeze_all_but(split, split.bottleneck)
        history += fit(
            trained,
            sets["train"],
            c,
            seed=seed,
            checkpoint=work / f"checkpoint-seed{seed}.pt",
            fingerprint=fp,
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
            sets["train"],
            stage2,
            seed=seed + 1,
            checkpoint=work / f"checkpoint-classifier-seed{seed}.pt",
            fingerprint=fp + ":classifier",
            train_mode=_train_only(clf),
            **common,
        ):
            history.append({**row, "stage": "classifier"})
    for p in split.parameters():
        p.requires_grad_(False)
    seconds = time.perf_counter() - t0
    scored = {"val": sets["val"], "test": sets["test"]}
    scores, predictions = score(
        trained,
        scored,
        classes,
        batch_size=c.eval_batch_size,
        device=dev,
        log=log,
        what=f"{layer} seed {seed}: ",
    )
    split.cpu()
    run = {"seed": seed, "train_seconds": seconds, "epochs": len(history), "history": history}
    return {
        "fingerprint": fp,
        "run": {**run, **scores},
        "predictions": predictions.to_dict("list"),
        "state_dict": split.state_dict(),
    }
