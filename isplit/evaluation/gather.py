"""Gathering the retrained splits: one row per split with its accuracies as means over seeds
with bootstrap intervals, its costs, and the per-image outcomes the intervals come from.

Each retraining job (one split, every seed) wrote ``metrics.json`` (costs; each seed's history
and scores under ``runs``) and ``predictions.parquet`` (every val and test image's prediction,
column ``seed``). The images are aligned by ``sample_id`` across splits and seeds (and with the
fine-tuned model's predictions, which stand for LC and RC), and the seeds by their number, so
every statistic can be recomputed on the same bootstrap replicates. A split that lacks one of
the configured seeds is an error naming its job's file.

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

from isplit.evaluation import resample, stats

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
    seeds: list[int]  # the retraining seeds, in the order of the outcomes' seed axis
    val_ids: list[str] | None = None  # the validation images' sample ids, in outcome order


def _outcomes(
    tables: list[pd.DataFrame], split: str, k: int, seeds: list[int], order=None
) -> tuple[stats.Correctness, pd.Index]:
    """Correctness of every prediction table (one per split, rows of every seed) on ``split``,
    and the sample ids: images aligned by sample id (``order``, else the first table's),
    seeds in the order of ``seeds``."""
    first = tables[0]
    ref = first[(first["split"] == split) & (first["seed"] == seeds[0])].set_index("sample_id")
    if not ref.index.is_unique:
        raise ValueError(f"sample ids repeat in the {split} predictions")
    order = pd.Index(ref.index if order is None else order)
    if set(order) != set(ref.index):
        raise ValueError(f"the {split} images differ between retraining jobs")
    ref = ref.loc[order].reset_index()
    out = np.full((len(tables), len(seeds), len(ref)), np.nan)
    for i, table in enumerate(tables):
        for s, seed in enumerate(seeds):
            t = table[(table["split"] == split) & (table["seed"] == seed)]
            t = t.set_index("sample_id")
            if set(t.index) != set(order):
                raise ValueError(f"the {split} images differ between retraining jobs")
            t = t.loc[order]
            out[i, s] = (t["pred"].to_numpy() == t["label"].to_numpy()).astype(float)
    return stats.Correctness(out, ref["label"].to_numpy(np.int64), k), order


def _with_intervals(c: stats.Correctness, prefix: str, n_boot: int, seed: int) -> dict:
    """``{prefix + metric: mean, … _lo, … _hi}`` arrays over the splits of ``c``: percentile
    intervals over images (within class) and seeds."""
    d = resample.draw(c.labels, c.labels, c.correct.shape[1], n_boot, seed)
    out = {}
    for metric in METRICS:
        boot = resample.metric_rows(c, d.test, d.seeds, metric)
        out[prefix + metric] = resample.point(c, metric)
        out[prefix + metric + "_lo"] = np.quantile(boot, 0.025, axis=0)
        out[prefix + metric + "_hi"] = np.quantile(boot, 0.975, axis=0)
    return out


def gather(
    candidates: pd.DataFrame,
    runs: list[Run],
    finetune_metrics: dict,
    finetune_predictions: pd.DataFrame,
    *,
    seeds: list[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Gathered:
    """``runs``: every retraining job's files (:func:`read_runs`). ``seeds``: the configured
    retraining seeds (default: the first job's), which every job must hold."""
    classes = list(finetune_metrics["classes"])
    seeds = [int(x) for x in (seeds if seeds is not None else runs[0].metrics["seeds"])]
    by_layer: dict[str, Run] = {}
    for r in runs:
        layer = r.metrics["layer"]
        if layer in by_layer:
            raise ValueError(f"{r.path}: split {layer!r} also comes from {by_layer[layer].path}")
        have = sorted(set(r.predictions["seed"].tolist()))
        if have != sorted(seeds) or sorted(x["seed"] for x in r.metrics["runs"]) != sorted(seeds):
            raise ValueError(
                f"{r.path}: the retraining job of split {layer!r} holds seeds {have}, "
                f"the experiment asks for {sorted(seeds)}; rerun that job"
            )
        by_layer[layer] = r
    unknown = set(by_layer) - set(candidates["layer"])
    if unknown:
        raise ValueError(f"evaluated splits not among the candidates: {sorted(unknown)}")
    cand = candidates[candidates["layer"].isin(by_layer)].sort_values("layer_index")
    layers = list(cand["layer"])
    tables = [by_layer[x].predictions for x in layers]
    scored = {s: _outcomes(tables, s, len(classes), seeds) for s in ("val", "test")}
    outcomes = {s: c for s, (c, _) in scored.items()}
    ft = finetune_predictions.assign(seed=0)
    finetuned = {}
    for s in ("val", "test"):
        try:
            finetuned[s] = _outcomes([ft], s, len(classes), [0], scored[s][1])[0]
        except ValueError:
            raise ValueError(
                f"the fine-tuned model was scored on other {s} images than the splits"
            ) from None

    rows = cand[["layer", "layer_index", "label", "cui", "log10_cui", "reasons"]].copy()
    rows = rows.reset_index(drop=True)
    rows["n_seeds"] = outcomes["test"].n_seeds
    rows = rows.assign(**_with_intervals(outcomes["test"], "", n_boot, seed))
    rows = rows.assign(**_with_intervals(outcomes["val"], "val_", n_boot, seed + 1))
    costs, f1, seconds, recalls = [], [], [], []
    for x in layers:
        m = by_layer[x].metrics
        costs.append({k: m[k] for k in COST_COLUMNS if k in m})
        f1.append(np.mean([r["test"]["macro_f1"] for r in m["runs"]]))
        seconds.append(np.mean([r["train_seconds"] for r in m["runs"]]))
        recalls.append(
            {
                f"{prefix}acc:{c}": np.mean([r[split]["per_class"][c] for r in m["runs"]])
                for prefix, split in (("", "test"), ("val_", "val"))
                for c in classes
            }
        )
    rows["macro_f1"] = f1
    rows["train_seconds"] = seconds
    rows = pd.concat([rows, pd.DataFrame(costs), pd.DataFrame(recalls)], axis=1)
    for col in ("activation_shape", "code_shape"):
        if col in rows:
            rows[col] = [json.dumps(v) for v in rows[col]]
    return Gathered(rows, outcomes, finetuned, classes, seeds, list(scored["val"][1]))


@dataclass(frozen=True)
class Run:
    """One retraining job's files: its ``metrics.json`` and the predictions beside it."""

    path: Path
    metrics: dict
    predictions: pd.DataFrame


def read_runs(metrics_paths: list[str | Path]) -> list[Run]:
    """(metrics.json, the predictions.parquet beside it) of each retraining job."""
    out = []
    for path in map(Path, metrics_paths):
        m = json.loads(path.read_text())
        out.append(Run(path, m, pd.read_parquet(path.with_name("predictions.parquet"))))
    return out
