"""Gather the evaluated splits and measure how well CUI predicted their accuracy.

This is the paper's claim put to a number: over the evaluated split points, the rank (Spearman)
and linear (Pearson) correlation between the CUI curve and the accuracy after retraining, the same
for the CDE layer-size curve as the baseline, where the I-SPLIT predicted best split ranks among
the measured accuracies and how much accuracy it loses against the measured best, and per class,
the accuracy of each class at its own predicted best split against the global one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.io.files import write_json, write_table
from isplit.io.tables import read_candidates

COST_COLUMNS = (
    "bytes",
    "bytes_float32",
    "activation_bytes",
    "head_params",
    "tail_params",
    "encoder_params",
    "decoder_params",
    "head_flops",
    "encoder_flops",
    "decoder_flops",
    "tail_flops",
    "head_layers",
    "encoder_layers",
    "decoder_layers",
    "tail_layers",
    "train_seconds",
)


def gather(candidates: pd.DataFrame, metrics: list[dict]) -> pd.DataFrame:
    """One row per evaluated split: the candidate's CUI and reasons, its measured accuracy
    (``top1`` on test, ``val_top1``), per-class test accuracy (``acc:<class>``) and costs."""
    rows = []
    for m in metrics:
        row = {"layer": m["layer"], "top1": m["test"]["top1"], "val_top1": m["val"]["top1"]}
        row.update({k: m[k] for k in COST_COLUMNS if k in m})
        row.update({f"acc:{c}": a for c, a in m["test"]["per_class"].items()})
        rows.append(row)
    measured = pd.DataFrame(rows)
    keep = [
        c
        for c in ("layer", "layer_index", "label", "cui", "log10_cui", "reasons")
        if c in candidates.columns
    ]
    cand = candidates[keep].rename(columns={"bytes": "cde_bytes"})
    out = cand.merge(measured, on="layer", how="inner", validate="one_to_one")
    missing = set(measured["layer"]) - set(out["layer"])
    if missing:
        raise ValueError(f"evaluated splits not among the candidates: {sorted(missing)}")
    return out.sort_values("layer_index").reset_index(drop=True)


def _corr(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {
        "n": int(len(x)),
        "spearman": None,
        "spearman_p": None,
        "pearson": None,
        "pearson_p": None,
    }
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        s = stats.spearmanr(x, y)
        p = stats.pearsonr(x, y)
        out.update(
            spearman=float(s.statistic),
            spearman_p=float(s.pvalue),
            pearson=float(p.statistic),
            pearson_p=float(p.pvalue),
        )
    return out


def _rank_of(acc: pd.Series, layer_acc: float) -> int:
    """1 = the best measured accuracy (ties share the better rank)."""
    return int((acc > layer_acc).sum()) + 1


def quality(splits: pd.DataFrame, candidates: pd.DataFrame, classes: list[str]) -> dict:
    acc = splits["top1"].to_numpy(float)
    out: dict = {
        "n_points": int(len(splits)),
        "accuracy": "test top-1 after bottleneck retraining",
        # log10 is monotone, so Spearman is the same on CUI or log10 CUI; Pearson uses log10,
        # the scale the curve is read on
        "cui_vs_accuracy": _corr(splits["log10_cui"].to_numpy(float), acc),
        "cde_size_vs_accuracy": _corr(np.log10(splits["activation_bytes"].to_numpy(float)), acc),
    }
    best_i = int(np.argmax(acc))
    out["measured_best"] = {
        "layer": splits["layer"].iloc[best_i],
        "label": splits["label"].iloc[best_i],
        "top1": float(acc[best_i]),
    }
    pred = candidates[candidates["isplit_best"]]
    if len(pred) and pred["layer"].iloc[0] in set(splits["layer"]):
        layer = pred["layer"].iloc[0]
        row = splits[splits["layer"] == layer].iloc[0]
        out["predicted_best"] = {
            "layer": layer,
            "label": row["label"],
            "top1": float(row["top1"]),
            "rank": _rank_of(splits["top1"], row["top1"]),
            "of": int(len(splits)),
            "accuracy_lost": float(acc[best_i] - row["top1"]),
        }
    else:
        out["predicted_best"] = None
    per_class = []
    global_layer = out["predicted_best"]["layer"] if out["predicted_best"] else None
    for c in classes:
        own = candidates[[c in cb for cb in candidates["class_best"]]]
        entry = {
            "class": c,
            "own_best_layer": None,
            "top1_at_own_best": None,
            "top1_at_global_best": None,
            "gain": None,
        }
        col = f"acc:{c}"
        if len(own) and col in splits:
            layer = own["layer"].iloc[0]
            entry["own_best_layer"] = layer
            hit = splits[splits["layer"] == layer]
            if len(hit):
                entry["top1_at_own_best"] = float(hit[col].iloc[0])
            if global_layer is not None:
                entry["top1_at_global_best"] = float(
                    splits.loc[splits["layer"] == global_layer, col].iloc[0]
                )
            if entry["top1_at_own_best"] is not None and entry["top1_at_global_best"] is not None:
                entry["gain"] = entry["top1_at_own_best"] - entry["top1_at_global_best"]
        per_class.append(entry)
    out["per_class"] = per_class
    return out


def run(
    *,
    candidates_path: str | Path,
    metrics_paths: list[str | Path],
    finetune_metrics: str | Path,
    splits_out: str | Path,
    quality_out: str | Path,
) -> dict:
    """``candidates_all.tsv`` + each split's ``metrics.json`` → ``splits.parquet`` and
    ``quality.json``. The classes come from the fine-tuning metrics."""
    candidates = read_candidates(candidates_path)
    metrics = [json.loads(Path(p).read_text()) for p in metrics_paths]
    ft = json.loads(Path(finetune_metrics).read_text())
    splits = gather(candidates, metrics)
    q = quality(splits, candidates, list(ft["classes"]))
    q["finetuned_top1"] = ft["test"]["top1"]
    write_table(splits, splits_out)
    write_json(quality_out, q)
    return q
