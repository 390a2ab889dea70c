"""``summary.md``: one page per experiment with the evaluated points, how well the predictors
did, the recommended split per network and the exported deployments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from isplit.io.files import write_text
from isplit.latency.recommend import markdown_table


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
    rec = markdown_table(recommendation_path) if recommendation_path else None
    write_text(out_path, summary_markdown(exp, splits, q, ft, rec, deploy))
