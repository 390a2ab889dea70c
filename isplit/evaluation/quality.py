"""How well zero-retraining predictors foretell a split's accuracy, with intervals.

I-SPLIT's claim is that the CUI curve predicts the accuracy a split reaches after retraining.
A reviewer's first question is whether it predicts more than simpler quantities do, so CUI is
compared with the simplest baselines on the same retrained splits (docs/methods.md §3.3):

==============  ===================================================  ==================
predictor       value (higher = predicted better)                    hypothesis
==============  ===================================================  ==================
``cui_mean``    log10 CUI, channel mean (I-SPLIT, the public code)    I-SPLIT
``cui_sum``     log10 CUI with the channel sum (mean × C)            Grad-CAM's own sum
``size``        −log10 activation bytes                              CDE: smaller is better
``depth``       share of the model's FLOPs on the device             later is better
``probe``       validation accuracy of a linear probe on the         a direct, cheap
                pooled activation (``probe.parquet``, optional)       estimate
``random``      a uniformly random ranking                           chance
==============  ===================================================  ==================

For each: Spearman's ρ with the test accuracy after retraining, with a bootstrap interval over
images and seeds; and the **regret** of its argmax: the test accuracy lost against the split the
measurements pick — chosen on validation, reported on test; nothing here is ever chosen on test
data. Because CUI is close to the inverse of the activation size in ReLU networks (the sum of
∂y/∂A·A over a layer is about y at every layer, so a mean over the layer's elements scales as
1/size), CUI's own contribution is measured as the **partial** Spearman of CUI given size and
depth, and as Kendall's τ inside groups of probe points of equal activation size, where size
cannot rank. The criterion, fixed before any run: CUI adds to size and depth if both the
partial ρ and the within-group τ are positive with intervals excluding 0.

Per class: is a class's own best split better for that class than the global best, beyond the
interval? Both as measured (each chosen on validation) and as I-SPLIT predicts (the class's CUI
maximum against the global CUI maximum), reported as the test recall gained with its interval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.evaluation import stats
from isplit.evaluation.gather import Gathered, gather, read_runs
from isplit.io.files import write_json, write_table
from isplit.io.tables import read_candidates

PREDICTORS = ("cui_mean", "cui_sum", "size", "depth", "probe")
CRITERION = (
    "CUI adds to activation size and depth if the partial Spearman of CUI given size and depth "
    "and Kendall's tau within groups of equal activation size are both positive with 95 % "
    "intervals excluding 0"
)


def predictor_values(
    splits: pd.DataFrame, probe: pd.DataFrame | None = None, metric: str = "top1"
) -> dict:
    """Each predictor's value per split (higher = predicted better), NaN where unknown."""
    channels = np.array([json.loads(s)[0] for s in splits["activation_shape"]], dtype=float)
    device = splits["head_flops"] + splits["encoder_flops"]
    total = splits["head_flops"] + splits["tail_flops"]
    out = {
        "cui_mean": splits["log10_cui"].to_numpy(float),
        "cui_sum": (splits["log10_cui"] + np.log10(channels)).to_numpy(float),
        "size": -np.log10(splits["activation_bytes"].to_numpy(float)),
        "depth": (device / total).to_numpy(float),
    }
    if probe is not None:
        col = probe.set_index("layer")[f"val_{metric}"]
        out["probe"] = splits["layer"].map(col).to_numpy(float)
    return out


def _metric_fn(metric: str):
    return {"top1": stats.accuracy, "balanced_accuracy": stats.balanced_accuracy}[metric]


def _first_argmax(v: np.ndarray) -> int | None:
    ok = np.isfinite(v)
    return int(np.argmax(np.where(ok, v, -np.inf))) if ok.any() else None


def _summary(point: float, boot) -> dict:
    lo, hi = stats.interval(boot)
    return {"value": _num(point), "ci": [_num(lo), _num(hi)]}


def _num(v):
    return None if v is None or not math.isfinite(float(v)) else float(v)


def quality(g: Gathered, metric: str, *, probe=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """The ``quality.json`` document (see the module docstring)."""
    fn = _metric_fn(metric)
    test, val, splits = g.outcomes["test"], g.outcomes["val"], g.splits
    acc_test, acc_val = fn(test), fn(val)
    boot_test = stats.bootstrap(test, fn, n=n_boot, seed=seed)  # (B, splits)
    best = int(np.argmax(acc_val))  # the measured best: chosen on validation
    preds = predictor_values(splits, probe, metric)
    sizes = splits["activation_bytes"].to_numpy(float)
    depth = preds["depth"]

    predictors = {}
    for name, v in preds.items():
        choice = _first_argmax(v)
        rho_boot = [stats.spearman(v, b) for b in boot_test]
        entry = {
            "spearman": _summary(stats.spearman(v, acc_test), rho_boot),
            "choice": None if choice is None else splits["layer"].iloc[choice],
            "choice_label": None if choice is None else splits["label"].iloc[choice],
        }
        if choice is not None:
            entry["regret"] = _summary(
                acc_test[best] - acc_test[choice], boot_test[:, best] - boot_test[:, choice]
            )
        predictors[name] = entry
    # a random ranking: its argmax is a uniformly random split
    predictors["random"] = {
        "spearman": {"value": 0.0, "ci": None, "note": "0 in expectation"},
        "choice": None,
        "regret": _summary(
            acc_test[best] - acc_test.mean(), boot_test[:, best] - boot_test.mean(axis=1)
        ),
    }
    cui = preds["cui_mean"]
    partial = [stats.partial_spearman(cui, b, [-sizes, depth]) for b in boot_test]
    within = [stats.kendall_within_groups(cui, b, sizes) for b in boot_test]
    partial_s = _summary(stats.partial_spearman(cui, acc_test, [-sizes, depth]), partial)
    within_s = _summary(stats.kendall_within_groups(cui, acc_test, sizes), within)
    within_s["pairs"] = stats.group_pairs(sizes)

    def positive(s):
        return s["ci"] is not None and s["ci"][0] is not None and s["ci"][0] > 0

    out = {
        "metric": metric,
        "selection": "validation (every choice); test reported",
        "n_points": int(len(splits)),
        "n_seeds": [int(x) for x in splits["n_seeds"]],
        "n_images": {"val": val.n_images, "test": test.n_images},
        "n_bootstrap": n_boot,
        "measured_best": {
            "layer": splits["layer"].iloc[best],
            "label": splits["label"].iloc[best],
            "val": _num(acc_val[best]),
            "test": _summary(acc_test[best], boot_test[:, best]),
        },
        "predictors": predictors,
        "partial_spearman_cui_given_size_depth": partial_s,
        "kendall_cui_within_equal_size": within_s,
        "criterion": CRITERION,
        "cui_adds_to_size": bool(positive(partial_s) and positive(within_s)),
        "per_class": per_class(g, best),
        "finetuned": {
            s: _summary(fn(g.finetuned[s])[0], stats.bootstrap(g.finetuned[s], fn, n=n_boot)[:, 0])
            for s in ("val", "test")
        },
    }
    return out


def _class_recall(c: stats.Correctness, k: int, images=None, seeds=None) -> np.ndarray:
    labels = c.labels if images is None else c.labels[images]
    x = c.correct if seeds is None else c.correct[:, seeds]
    x = x if images is None else x[:, :, images]
    sel = labels == k
    return np.nanmean(x[:, :, sel], axis=(1, 2)) if sel.any() else np.full(x.shape[0], np.nan)


def per_class(g: Gathered, best: int, n_boot: int = 1000, seed: int = 3) -> list[dict]:
    """For each class: its own best split against the global best, measured (both chosen on
    validation) and predicted (its CUI maximum against the global CUI maximum), as the gain in
    test recall of that class, with an interval."""
    test, val, splits = g.outcomes["test"], g.outcomes["val"], g.splits
    layers = list(splits["layer"])
    global_pred = _first_argmax(splits["log10_cui"].to_numpy(float))
    out = []
    for k, name in enumerate(g.classes):
        own = int(np.nanargmax(_class_recall(val, k))) if (val.labels == k).any() else None
        boot = stats.bootstrap(
            test, lambda c, i, s, k=k: _class_recall(c, k, i, s), n=n_boot, seed=seed
        )
        point = _class_recall(test, k)
        entry = {"class": name, "n_test": int((test.labels == k).sum())}
        if own is not None:
            gain = _summary(point[own] - point[best], boot[:, own] - boot[:, best])
            entry["measured"] = {
                "own_best": layers[own],
                "global_best": layers[best],
                "gain": gain,
                "beyond_ci": bool(gain["ci"][0] is not None and gain["ci"][0] > 0),
            }
        col = f"cui:{name}"
        if col in splits and global_pred is not None:
            pred_own = _first_argmax(splits[col].to_numpy(float))
            if pred_own is not None:
                gain = _summary(
                    point[pred_own] - point[global_pred], boot[:, pred_own] - boot[:, global_pred]
                )
                entry["predicted"] = {
                    "own_best": layers[pred_own],
                    "global_best": layers[global_pred],
                    "gain": gain,
                    "beyond_ci": bool(gain["ci"][0] is not None and gain["ci"][0] > 0),
                }
        out.append(entry)
    return out


def run(
    *,
    candidates_path: str | Path,
    metrics_paths: list[str | Path],
    finetune_metrics: str | Path,
    curve_path: str | Path | None = None,
    probe_path: str | Path | None = None,
    metric: str = "top1",
    n_boot: int = 1000,
    seed: int = 0,
    splits_out: str | Path,
    quality_out: str | Path,
) -> dict:
    """Retraining jobs' files → ``splits.parquet`` and ``quality.json``. The fine-tuned
    model's ``predictions.parquet`` sits beside its ``metrics.json``; ``curve_path`` adds each
    class's CUI (``cui:<class>`` columns) for the per-class prediction."""
    finetune_metrics = Path(finetune_metrics)
    ft = json.loads(finetune_metrics.read_text())
    ft_pred = pd.read_parquet(finetune_metrics.with_name("predictions.parquet"))
    g = gather(
        read_candidates(candidates_path),
        read_runs(metrics_paths),
        ft,
        ft_pred,
        n_boot=n_boot,
        seed=seed,
    )
    if curve_path is not None:
        curve = pd.read_parquet(curve_path)
        for name in g.classes:
            part = curve[curve["group"] == name].set_index("layer")["log10_mean"]
            g.splits[f"cui:{name}"] = g.splits["layer"].map(part)
    probe = pd.read_parquet(probe_path) if probe_path else None
    q = quality(g, metric, probe=probe, n_boot=n_boot, seed=seed)
    write_table(g.splits, splits_out)
    write_json(quality_out, q, allow_nan=False)
    return q
