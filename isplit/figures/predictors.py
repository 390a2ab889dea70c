"""The predictors figure: every zero-retraining predictor of post-split accuracy, with the
ρ and regret intervals of ``quality.json`` (:mod:`isplit.evaluation.quality`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from isplit.figures import style

PREDICTOR_LABELS = {
    "cui_mean": "CUI (channel mean)",
    "cui_sum": "CUI (channel sum)",
    "size": "−log10 size (CDE)",
    "depth": "depth (device FLOPs)",
    "probe": "linear probe",
    "knn": "k-NN",
    "logme": "LogME",
    "code": "probe on 8-bit code",
    "random": "random",
}


def predictors_figure(q: dict, title: str, paths) -> list[Path]:
    """ρ and regret of every predictor, with their 95 % intervals."""
    names = [k for k in PREDICTOR_LABELS if k in q.get("predictors", {})]
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(names))[::-1]
    for ax, key, xlabel, scale in (
        (left, "rho", "ρ: predictor's rank vs test accuracy after retraining", 1.0),
        (right, "regret", "regret of the predictor's choice (points of test accuracy)", 100.0),
    ):
        for yi, name in zip(y, names, strict=True):
            style.point_with_interval(ax, q["predictors"][name].get(key), yi, scale=scale)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    left.set_yticks(y)
    left.set_yticklabels([PREDICTOR_LABELS[n] for n in names])
    verdict = "holds" if q.get("cui_adds_to_size") else "does not hold"
    part = q.get("partial_cui_given_size_depth")
    fig.suptitle(
        f"Zero-retraining predictors of post-split accuracy (95 % intervals){title}\n"
        f"partial ρ of CUI given size and depth: {style.ci_text(part)}; criterion "
        f"'CUI adds to size': {verdict}",
        fontsize=9.5,
    )
    return style.save_figure(fig, paths)
