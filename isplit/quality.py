"""Gather the evaluated splits and measure how well CUI predicted their accuracy.

This is the paper's claim put to a number: over the evaluated split points, the rank (Spearman)
and linear (Pearson) correlation between the CUI curve and the accuracy after retraining, the same
for the CDE layer-size curve as the baseline, where the I-SPLIT predicted best split ranks among
the measured accuracies and how much accuracy it loses against the measured best, and per class,
the accuracy of each class at its own predicted best split against the global one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.atomic import replacing, write_json, write_text

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
    pred = candidates[candidates["reasons"].str.contains("isplit-best", regex=False)]
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
        own = candidates[candidates["reasons"].str.contains(f"class-best:{c}", regex=False)]
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


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_markdown(
    exp: str,
    splits: pd.DataFrame,
    q: dict,
    finetune: dict | None,
    recommendations: str | None = None,
    deploy: list[str] | None = None,
) -> str:
    lines = [f"# {exp}", ""]
    if finetune:
        lines += [
            f"Fine-tuned {finetune['model']} on {finetune['dataset']}: test top-1 "
            f"{finetune['test']['top1']:.4f} (no split).",
            "",
        ]
    c, d = q["cui_vs_accuracy"], q["cde_size_vs_accuracy"]
    lines += [
        f"Over {q['n_points']} evaluated split points (test top-1 after bottleneck retraining):",
        "",
        "| predictor | Spearman ρ | Pearson r | n |",
        "|---|---|---|---|",
        f"| CUI (I-SPLIT) | {_fmt(c['spearman'])} | {_fmt(c['pearson'])} | {c['n']} |",
        f"| layer size (CDE) | {_fmt(d['spearman'])} | {_fmt(d['pearson'])} | {d['n']} |",
        "",
    ]
    pb, mb = q["predicted_best"], q["measured_best"]
    if pb:
        lines += [
            f"I-SPLIT's predicted best split `{pb['label']}` ranks {pb['rank']} of "
            f"{pb['of']} (top-1 {pb['top1']:.4f}); the measured best is `{mb['label']}` "
            f"(top-1 {mb['top1']:.4f}), {pb['accuracy_lost']:.4f} higher.",
            "",
        ]
    lines += [
        "| # | split point | CUI (log10) | top-1 | bytes sent | activation bytes | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in splits.iterrows():
        lines.append(
            f"| {int(r['layer_index'])} | `{r['label']}` | {_fmt(r['log10_cui'], 2)} | "
            f"{_fmt(r['top1'], 4)} | {int(r['bytes']):,} | {int(r['activation_bytes']):,} | "
            f"{r['reasons']} |"
        )
    if recommendations:
        lines += ["", "## Recommended split per network (Split-Et-Impera)", "", recommendations]
    if deploy:
        lines += [
            "",
            "## Deployment",
            "",
            f"{len(deploy)} splits exported for a device/server pair (`device.pt2`: head + "
            "encoder, `server.pt2`: decoder + tail, `manifest.json`; run them with "
            "`python -m isplit serve` / `device`):",
            "",
        ]
        lines += [f"- `{d}`" for d in deploy]
    return "\n".join(lines) + "\n"


def run(
    *,
    candidates_path: str | Path,
    metrics_paths: list[str | Path],
    finetune_metrics: str | Path | None,
    classes: list[str],
    splits_out: str | Path,
    quality_out: str | Path,
    exp: str = "",
) -> dict:
    """Writes ``splits.parquet`` and ``quality.json``."""
    candidates = pd.read_csv(candidates_path, sep="\t", keep_default_na=False)
    metrics = [json.loads(Path(p).read_text()) for p in metrics_paths]
    splits = gather(candidates, metrics)
    q = quality(splits, candidates, classes)
    ft = json.loads(Path(finetune_metrics).read_text()) if finetune_metrics else None
    q["finetuned_top1"] = ft["test"]["top1"] if ft else None
    with replacing(splits_out) as tmp:
        splits.to_parquet(tmp, index=False)
    write_json(quality_out, q)
    return q


def write_summary(
    *,
    exp: str,
    splits_path: str | Path,
    quality_path: str | Path,
    finetune_metrics: str | Path | None,
    recommendation_path: str | Path | None,
    out_path: str | Path,
    deploy: list[str] | None = None,
) -> None:
    """``summary.md``: the evaluated points, the quality numbers and the recommendations."""
    splits = pd.read_parquet(splits_path)
    q = json.loads(Path(quality_path).read_text())
    ft = json.loads(Path(finetune_metrics).read_text()) if finetune_metrics else None
    rec = None
    if recommendation_path:
        from isplit.latency.recommend import markdown_table

        rec = markdown_table(recommendation_path)
    write_text(out_path, summary_markdown(exp, splits, q, ft, rec, deploy))
