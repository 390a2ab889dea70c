"""Stronger zero-retraining predictors than CUI, at every probe point: a linear probe, k-NN,
LogME, and a linear probe on the activation as a fixed-size 8-bit code would carry it.

How much of the class is still readable from a layer's activation is a direct, cheap estimate
of what a split there can keep. For every probe point, the activation of a stratified subset of
training images is averaged over space (C features per image) and standardised; on it, a
multinomial logistic regression (L2, LBFGS) and k-nearest neighbours are scored on the
validation images, and LogME (:mod:`isplit.importance.scores`) on the training images. The
``code`` probe sees the activation pooled to the positions of the ``budget`` bottleneck's code
for ``code_bytes`` and reduced to its channels and 8 bits (:func:`scores.code_features`). One
forward pass over the images serves every probe point, no retraining of the network, no test
data: they rank all probe points before any split is trained, exactly as CUI claims to.

``probe.parquet``: one row per probe point with ``layer, layer_index, label, channels, n_train,
n_val``, and ``val_top1, val_balanced_accuracy`` (linear probe), ``knn_val_…``, ``code_val_…``,
``logme``. ``probe_outcomes.parquet``: every validation image's prediction by each predictor
(``layer, predictor, sample_id, label, pred``), so that the evaluation can rescore them on
resampled validation sets.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader

from isplit.config import settings
from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.evaluation.metrics import classification_metrics
from isplit.importance import scores
from isplit.importance.taps import resolve_layers, tap_model
from isplit.io.files import write_table
from isplit.nets import models
from isplit.nets.bottlenecks import QUANT_HEADER_BYTES, budget_code_shape
from isplit.nets.runtime import pick_device, set_determinism


@torch.no_grad()
def pooled_features(
    model: nn.Module, points, loader, device, code_bytes: int | None = None
) -> tuple[list[np.ndarray], np.ndarray, list]:
    """Activation of every probe point averaged over its positions (one array per point,
    images × channels) and the labels, in one forward pass per batch. With ``code_bytes``,
    also each (C, H, W) activation average-pooled to the positions of the ``budget`` code of
    that size (images × channels × positions, with the code's channel count), else None."""
    feats: dict[int, list] = {i: [] for i in range(len(points))}
    codes: dict[int, dict] = {i: {"rows": [], "shape": None} for i in range(len(points))}
    handles, labels, tapped = [], [], None
    model.eval().to(device)
    try:
        for x, y in loader:
            x = x.to(device)
            if tapped is None:  # traced for the loader's image size
                tapped, taps, axes = tap_model(model, resolve_layers(model, points), x)
                for i, p in enumerate(points):
                    hook = _pool_hook(feats[i], codes[i], axes[p.name], code_bytes)
                    handles.append(taps[p.name].register_forward_hook(hook))
            tapped.eval()(x)
            labels.append(y)
    finally:
        for h in handles:
            h.remove()
    pooled = [torch.cat(feats[i]).numpy() for i in range(len(points))]
    coded = [
        (torch.cat(c["rows"]).numpy(), c["shape"][0]) if c["rows"] else None
        for c in (codes[i] for i in range(len(points)))
    ]
    return pooled, torch.cat(labels).numpy(), coded


def _pool_hook(sink: list, code: dict, channel_axis: int, code_bytes: int | None):
    def hook(module, inputs, out):
        a = out.movedim(channel_axis % (out.ndim - 1) + 1, 1) if out.ndim > 2 else out
        sink.append((a.flatten(2).mean(2) if a.ndim > 2 else a).float().cpu())
        if code_bytes is None or a.ndim != 4:
            return
        if code["shape"] is None:
            code["shape"] = budget_code_shape(tuple(a.shape[1:]), code_bytes)
        _, sh, sw = code["shape"]
        code["rows"].append(nn.functional.adaptive_avg_pool2d(a, (sh, sw)).flatten(2).float().cpu())

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


def _linear_probe(x_train, y_train, x_val, k) -> np.ndarray:
    lin, mean, std = fit_probe(x_train, y_train, k)
    with torch.no_grad():
        return lin(torch.from_numpy((x_val - mean) / std).float()).argmax(1).numpy()


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    out_path: str | Path,
    outcomes_path: str | Path,
    cfg: dict,
    seed: int,
    code_bytes: int = 1024,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> pd.DataFrame:
    """Score every predictor at every probe point (see the module docstring) on
    ``importance.probe_train_images`` training images and the importance stage's validation
    images; write ``probe.parquet`` and ``probe_outcomes.parquet``."""
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
    x_train, y_train, c_train = pooled_features(
        model, points, DataLoader(train, **loader), dev, code_bytes
    )
    x_val, y_val, c_val = pooled_features(model, points, DataLoader(val, **loader), dev, code_bytes)
    k = len(meta["classes"])
    values = int(code_bytes) - QUANT_HEADER_BYTES
    val_ids = val.frame["sample_id"].astype(str).to_numpy()
    rows, outcomes = [], []
    # the fits are small (hundreds of images): extra threads only wait on each other, and on a
    # shared machine a waiting thread spins
    torch.set_num_threads(1)
    limits = threadpool_limits(1)
    for i, (p, xt, xv) in enumerate(zip(points, x_train, x_val, strict=True)):
        preds = {
            "probe": _linear_probe(xt, y_train, xv, k),
            "knn": scores.knn_predict(xt, y_train, xv),
        }
        if c_train[i] is not None:
            (train_code, channels), (val_code, _) = c_train[i], c_val[i]
            ct, cv = scores.code_features(train_code, [val_code], channels, values)
            preds["code"] = _linear_probe(ct, y_train, cv, k)
        row = {
            "layer": p.name,
            "layer_index": p.index,
            "label": p.label,
            "channels": int(xt.shape[1]),
            "n_train": len(y_train),
            "n_val": len(y_val),
            "logme": scores.logme(scores.standardise(xt)[0], y_train),
        }
        for name, pred in preds.items():
            m = classification_metrics(y_val, pred, k)
            prefix = "" if name == "probe" else f"{name}_"
            row[f"{prefix}val_top1"] = m["top1"]
            row[f"{prefix}val_balanced_accuracy"] = m["balanced_accuracy"]
            outcomes.append(
                pd.DataFrame(
                    {
                        "layer": p.name,
                        "predictor": name,
                        "sample_id": val_ids,
                        "label": y_val.astype(np.int64),
                        "pred": pred.astype(np.int64),
                    }
                )  # fmt: skip
            )
        rows.append(row)
        print(
            f"probes {p.label}: val top-1 linear {row['val_top1']:.4f}, "
            f"k-NN {row['knn_val_top1']:.4f}, LogME {row['logme']:.4f}",
            file=log,
            flush=True,
        )
    limits.unregister()
    table = pd.DataFrame(rows)
    write_table(table, out_path)
    write_table(pd.concat(outcomes, ignore_index=True), outcomes_path)
    print(f"probes: {len(points)} points in {time.perf_counter() - t0:.1f} s", file=log)
    return table
