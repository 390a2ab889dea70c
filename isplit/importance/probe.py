"""A stronger zero-retraining predictor: a linear probe at every probe point.

How much of the class is still linearly readable from a layer's activation is a direct, cheap
estimate of what a split there can keep. For every probe point, the activation of a stratified
subset of training images is averaged over space (C features per image), standardised, and a
multinomial logistic regression (L2, LBFGS) is fitted on it; its accuracy on the validation
images is the predictor's value. One forward pass over the images serves every probe point, no
retraining of the network, no test data: it can rank all probe points before any split is
trained, exactly as CUI claims to.

``probe.parquet``: one row per probe point with ``layer, layer_index, label, channels,
n_train, n_val, val_top1, val_balanced_accuracy``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from isplit.config import settings
from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.evaluation.metrics import classification_metrics
from isplit.importance.taps import resolve_layers, tap_model
from isplit.io.files import write_table
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism


@torch.no_grad()
def pooled_features(
    model: nn.Module, points, loader, device
) -> tuple[list[np.ndarray], np.ndarray]:
    """Activation of every probe point averaged over its positions (one array per point,
    images × channels) and the labels, in one forward pass per batch."""
    feats: dict[int, list] = {i: [] for i in range(len(points))}
    handles, labels, tapped = [], [], None
    model.eval().to(device)
    try:
        for x, y in loader:
            x = x.to(device)
            if tapped is None:  # traced for the loader's image size
                tapped, taps, axes = tap_model(model, resolve_layers(model, points), x)
                for i, p in enumerate(points):
                    handles.append(
                        taps[p.name].register_forward_hook(_pool_hook(feats[i], axes[p.name]))
                    )
            tapped.eval()(x)
            labels.append(y)
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(feats[i]).numpy() for i in range(len(points))], torch.cat(labels).numpy()


def _pool_hook(sink: list, channel_axis: int):
    def hook(module, inputs, out):
        a = out.movedim(channel_axis % (out.ndim - 1) + 1, 1) if out.ndim > 2 else out
        sink.append((a.flatten(2).mean(2) if a.ndim > 2 else a).float().cpu())

    return hook


def fit_probe(
    x: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = 1e-3, iters: int = 200
) -> tuple[nn.Linear, np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised features; returns (layer, mean, std)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.from_numpy((x - mean) / std).float()
    ys = torch.from_numpy(y).long()
    lin = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(xs), ys) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin, mean, std


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    out_path: str | Path,
    cfg: dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> pd.DataFrame:
    """Fit a probe per probe point on ``importance.probe_train_images`` training images and
    score it on the importance stage's validation images; write ``probe.parquet``."""
    c = settings("importance", cfg)
    set_determinism(seed, threads)
    dev = pick_device(device)
    model, meta = models.load_model(model_path)
    inp = settings("input", meta["input"])
    points = models.probe_points(model, c.variant, inp.image_size)
    plain = transform_from_config(inp)
    train = ManifestDataset(dataset_dir, "train", plain, subset=c.probe_train_images, seed=seed)
    val = ManifestDataset(dataset_dir, c.split, plain, subset=c.max_images, seed=seed)
    t0 = time.perf_counter()
    loader = dict(batch_size=c.batch_size, shuffle=False, num_workers=c.num_workers)
    x_train, y_train = pooled_features(model, points, DataLoader(train, **loader), dev)
    x_val, y_val = pooled_features(model, points, DataLoader(val, **loader), dev)
    k = len(meta["classes"])
    rows = []
    for p, xt, xv in zip(points, x_train, x_val, strict=True):
        lin, mean, std = fit_probe(xt, y_train, k)
        with torch.no_grad():
            pred = lin(torch.from_numpy((xv - mean) / std).float()).argmax(1).numpy()
        m = classification_metrics(y_val, pred, k)
        rows.append(
            {
                "layer": p.name,
                "layer_index": p.index,
                "label": p.label,
                "channels": int(xt.shape[1]),
                "n_train": len(y_train),
                "n_val": len(y_val),
                "val_top1": m["top1"],
                "val_balanced_accuracy": m["balanced_accuracy"],
            }
        )
        print(f"probe {p.label}: val top-1 {m['top1']:.4f}", file=log, flush=True)
    table = pd.DataFrame(rows)
    write_table(table, out_path)
    print(f"linear probes: {len(points)} points in {time.perf_counter() - t0:.1f} s", file=log)
    return table
