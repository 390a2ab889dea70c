"""``summary.md``: one page per experiment with the evaluated points, how well the predictors
did, the recommended split per network and the exported deployments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from isplit.evaluation.predictors import NAMES as PREDICTOR_NAMES
from isplit.io.files import write_text
from isplit.recommend.recommend_text import markdown_table


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(s: dict | None, digits=3) -> str:
    """``value [lo, hi]`` of a quality.json summary."""
    if not s:
        return "–"
    ci = s.get("ci")
    if not ci or ci[0] is None:
        return _fmt(s.get("value"), digits)
    return f"{_fmt(s['value'], digits)} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def summary_markdown(
    exp: str,
    splits: pd.DataFrame,
    q: dict,
    finetune: dict | None,
    recommendations: str | None = None,
    deploy: list[str] | None = None,
    baseline: dict | None = None,
    camera: pd.DataFrame | None = None,
) -> str:
    m = q["metric"]
    name = {"top1": "top-1", "balanced_accuracy": "balanced accuracy"}[m]
    lines = [f"# {exp}", ""]
    if finetune:
        lines += [
            f"Fine-tuned {finetune['model']} on {finetune['dataset']} (no split): test {name} "
            f"{_ci(q['finetuned']['test'])}, validation {_ci(q['finetuned']['val'])} "
            f"(n = {q['n_images']['test']} and {q['n_images']['val']} images; 95 % bootstrap "
            "intervals).",
            "",
        ]
    if baseline:
        b = baseline["test"]
        diff = (baseline.get("finetuned_minus_baseline") or {}).get(m)
        paired = (
            f" The fine-tuned model minus the baseline on the same {diff['n']} test images: "
            f"{_ci(diff)} (paired bootstrap)."
            if diff
            else ""
        )
        lines += [
            f"Simple baseline, {baseline['model']} (penalty chosen on validation): test "
            f"{name} {_fmt(b[m])} [{_fmt(b[m + '_ci'][0])}, {_fmt(b[m + '_ci'][1])}].{paired}",
            "",
        ]
    if camera is not None and len(camera):
        lines += [
            "What a camera sends without a split (remote computing; the fine-tuned model on "
            "what the server decodes):",
            "",
            f"| option | bytes per frame (mean, p95) | test {name} [95 % CI] | val {name} |",
            "|---|---|---|---|",
        ]
        for _, r in camera.iterrows():
            lines.append(
                f"| {r['option']} | {r['bytes_mean']:,.0f}, {r['bytes_p95']:,.0f} | "
                f"{_fmt(r[m])} [{_fmt(r[m + '_lo'])}, {_fmt(r[m + '_hi'])}] | "
                f"{_fmt(r['val_' + m])} |"
            )
        lines.append("")
    best = q["measured_best"]
    lo, hi = min(q["n_seeds"]), max(q["n_seeds"])
    seeds = f"{lo} seed{'s' * (lo > 1)}" if lo == hi else f"{lo}–{hi} seeds"
    lines += [
        f"Over {q['n_points']} retrained split points ({name} after bottleneck retraining, "
        f"{seeds} each; every choice on validation, "
        f"reported on test). The measured best is `{best['label']}`: test {name} "
        f"{_ci(best['test'])}.",
        "",
        "| predictor | ρ with test accuracy | regret of its argmax | its choice |",
        "|---|---|---|---|",
    ]
    for key, e in q["predictors"].items():
        lines.append(
            f"| {PREDICTOR_NAMES.get(key, key)} | {_ci(e['rho'])} | "
            f"{_ci(e.get('regret'))} | {e.get('choice') or '–'} |"
        )
    part, within = q["partial_cui_given_size_depth"], q["within_size_cui"]
    verdict = "holds" if q["cui_adds_to_size"] else "does not hold"
    lines += [
        "",
        "ρ: correlation of the predictor's ranks with the splits' test accuracy; intervals by "
        "test inversion (docs/methods.md). Regret: test accuracy lost against the split best on "
        "validation, the whole procedure resampled.",
        "",
        f"CUI given activation size and depth: partial {_ci(part)}; among splits of equal "
        f"activation size, beyond depth: {_ci(within)} ({within['pairs']} pairs). Criterion "
        f"(stated before the run): {q['criterion']} — it **{verdict}** here.",
        "",
        f"| # | split point | CUI (log10) | val {name} | test {name} [95 % CI] | bytes sent "
        "| activation bytes | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in splits.iterrows():
        lines.append(
            f"| {int(r['layer_index'])} | `{r['label']}` | {_fmt(r['log10_cui'], 2)} | "
            f"{_fmt(r['val_' + m], 4)} | {_fmt(r[m], 4)} [{_fmt(r[m + '_lo'], 4)}, "
            f"{_fmt(r[m + '_hi'], 4)}] | {int(r['bytes']):,} | {int(r['activation_bytes']):,} | "
            f"{r['reasons']} |"
        )
    beyond = [e["class"] for e in q["per_class"] if e.get("measured", {}).get("beyond_ci")]
    lines += [
        "",
        "Per class, its own best split (chosen on validation) beats the global best on that "
        f"class's test recall beyond the 95 % interval for: {', '.join(beyond) or 'no class'}.",
    ]
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
    baseline_path: str | Path | None = None,
    camera_path: str | Path | None = None,
) -> None:
    """``summary.md``: the evaluated points, the quality numbers and the recommendations."""
    splits = pd.read_parquet(splits_path)
    q = json.loads(Path(quality_path).read_text())
    ft = json.loads(Path(finetune_metrics).read_text()) if finetune_metrics else None
    rec = markdown_table(recommendation_path) if recommendation_path else None
    baseline = json.loads(Path(baseline_path).read_text()) if baseline_path else None
    camera = pd.read_parquet(camera_path) if camera_path else None
    write_text(out_path, summary_markdown(exp, splits, q, ft, rec, deploy, baseline, camera))
