"""Gathering the retrained splits: one row per split with its accuracies as means over seeds
with bootstrap intervals, its costs, and the per-image outcomes the intervals come from.

Each retraining job (split × seed) wrote ``metrics.json`` (costs, history) and
``predictions.parquet`` (every val and test image's prediction). The images are aligned by
``sample_id`` across splits and seeds (and with the fine-tuned model's predictions, which stand
for LC and RC), so every statistic can be recomputed on the same bootstrap replicates.

``splits.parquet`` columns: ``layer, layer_index, label, cui, log10_cui, reasons``; for each
``metric`` in (``top1``, ``balanced_accuracy``) the test mean ``<metric>`` with ``<metric>_lo``
and ``<metric>_hi`` (95 % interval over images and seeds) and the same for validation
(``val_<metric>…``); ``macro_f1`` (test, mean over seeds); ``acc:<class>`` and
``val_acc:<class>`` (test and validation recall of each class, mean over seeds); ``n_seeds``;
the costs of :data:`COST_COLUMNS` (from the first seed: the architecture does not depend on
it); ``train_seconds`` (mean).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.evaluation import stats

METRICS = ("top1", "balanced_accuracy")

COST_COLUMNS = (
    "bytes",
    "bytes_float32",
    "activation_bytes",
    "activation_shape",
    "code_shape",
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
)


@dataclass(frozen=True)
class Gathered:
    splits: pd.DataFrame  # one row per split, in probe order
    outcomes: dict[str, stats.Correctness]  # "val" / "test" → splits × seeds × images
    finetuned: dict[str, stats.Correctness]  # the fine-tuned model (one split, one seed)
    classes: list[str]


def _outcomes(tables: list[list[pd.DataFrame]], split: str, k: int) -> stats.Correctness:
    """Correctness of ``tables[split_index][seed_index]`` (prediction tables) on ``split``,
    images aligned by sample id (the first table's order)."""
    first = tables[0][0]
    ref = first[first["split"] == split].reset_index(drop=True)
    order = pd.Index(ref["sample_id"])
    if not order.is_unique:
        raise ValueError(f"sample ids repeat in the {split} predictions")
    n_seeds = max(len(t) for t in tables)
    out = np.full((len(tables), n_seeds, len(ref)), np.nan)
    for i, per_seed in enumerate(tables):
        for s, t in enumerate(per_seed):
            t = t[t["split"] == split].set_index("sample_id")
            if set(t.index) != set(order):
                raise ValueError(f"the {split} images differ between retraining jobs")
            t = t.loc[order]
            out[i, s] = (t["pred"].to_numpy() == t["label"].to_numpy()).astype(float)
    return stats.Correctness(out, ref["label"].to_numpy(np.int64), k)


def _with_intervals(c: stats.Correctness, prefix: str, n_boot: int, seed: int) -> dict:
    """``{prefix + metric: mean, … _lo, … _hi}`` arrays over the splits of ``c``."""
    out = {}
    fns = {"top1": stats.accuracy, "balanced_accuracy": stats.balanced_accuracy}
    for metric, fn in fns.items():
        boot = stats.bootstrap(c, fn, n=n_boot, seed=seed)
        out[prefix + metric] = fn(c)
        lo_hi = np.array([stats.interval(boot[:, j]) for j in range(boot.shape[1])])
        out[prefix + metric + "_lo"], out[prefix + metric + "_hi"] = lo_hi[:, 0], lo_hi[:, 1]
    return out


def gather(
    candidates: pd.DataFrame,
    runs: list[tuple[dict, pd.DataFrame]],
    finetune_metrics: dict,
    finetune_predictions: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Gathered:
    """``runs``: (metrics.json, predictions table) of every retraining job."""
    classes = list(finetune_metrics["classes"])
    by_layer: dict[str, list[tuple[dict, pd.DataFrame]]] = {}
    for m, p in runs:
        by_layer.setdefault(m["layer"], []).append((m, p))
    unknown = set(by_layer) - set(candidates["layer"])
    if unknown:
        raise ValueError(f"evaluated splits not among the candidates: {sorted(unknown)}")
    cand = candidates[candidates["layer"].isin(by_layer)].sort_values("layer_index")
    layers = list(cand["layer"])
    tables = [
        [p for _, p in sorted(by_layer[x], key=lambda mp: mp[0].get("seed", 0))] for x in layers
    ]
    outcomes = {s: _outcomes(tables, s, len(classes)) for s in ("val", "test")}
    finetuned = {s: _outcomes([[finetune_predictions]], s, len(classes)) for s in ("val", "test")}
    for s in ("val", "test"):
        same = set(finetuned[s].labels.tolist()) == set(outcomes[s].labels.tolist())
        if finetuned[s].n_images != outcomes[s].n_images or not same:
            raise ValueError(f"the fine-tuned model was scored on other {s} images than the splits")

    rows = cand[["layer", "layer_index", "label", "cui", "log10_cui", "reasons"]].copy()
    rows = rows.reset_index(drop=True)
    rows["n_seeds"] = outcomes["test"].n_seeds
    rows = rows.assign(**_with_intervals(outcomes["test"], "", n_boot, seed))
    rows = rows.assign(**_with_intervals(outcomes["val"], "val_", n_boot, seed + 1))
    firsts, f1, seconds, recalls = [], [], [], []
    for x in layers:
        ms = [m for m, _ in sorted(by_layer[x], key=lambda mp: mp[0].get("seed", 0))]
        firsts.append({k: ms[0][k] for k in COST_COLUMNS if k in ms[0]})
        f1.append(np.mean([m["test"].get("macro_f1", np.nan) for m in ms]))
        seconds.append(np.mean([m.get("train_seconds", np.nan) for m in ms]))
        recalls.append(
            {
                f"{prefix}acc:{c}": np.mean([m[split]["per_class"][c] for m in ms])
                for prefix, split in (("", "test"), ("val_", "val"))
                for c in classes
            }
        )
    rows["macro_f1"] = f1
    rows["train_seconds"] = seconds
    rows = pd.concat([rows, pd.DataFrame(firsts), pd.DataFrame(recalls)], axis=1)
    for col in ("activation_shape", "code_shape"):
        if col in rows:
            rows[col] = [json.dumps(v) for v in rows[col]]
    return Gathered(rows, outcomes, finetuned, classes)


def read_runs(metrics_paths: list[str | Path]) -> list[tuple[dict, pd.DataFrame]]:
    """(metrics.json, the predictions.parquet beside it) of each retraining job."""
    out = []
    for path in map(Path, metrics_paths):
        m = json.loads(path.read_text())
        out.append((m, pd.read_parquet(path.with_name("predictions.parquet"))))
    return out
