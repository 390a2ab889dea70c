"""The oracle study's figure across network × dataset pairs: how each predictor ranks the
retrained splits, and what CUI says beyond activation size and depth (partial and within-size
statistics, each pair and pooled). Drawn from the pairs' ``quality.json`` files
(:mod:`isplit.evaluation.quality`) by ``scripts/study_results.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from isplit.figures import style
from isplit.figures.predictors import PREDICTOR_LABELS

SHOWN = ("cui_mean", "size", "depth", "logme")
MARKERS = {"cui_mean": "o", "size": "s", "depth": "^", "logme": "D"}
LABELS = {"partial": "partial ρ given size and depth", "within_size": "within equal sizes"}


def study_figure(
    pairs: dict[str, dict], statistics: dict[str, str], pooled: dict[str, dict], paths
) -> list[Path]:
    """``pairs``: pair name → quality.json; ``statistics``: the kinds of "CUI beyond size and
    depth" (partial, within_size) → their quality.json key; ``pooled``: kind → ``{value, ci}``
    across the pairs."""
    names = list(pairs)
    fig = Figure(figsize=(10.5, 0.9 + 0.75 * (len(names) + 1)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(names) + 1)[::-1].astype(float)
    colors = dict(zip(SHOWN, ("tab:blue", "tab:gray", "tab:orange", "tab:green"), strict=True))
    for j, key in enumerate(SHOWN):
        for i, name in enumerate(names):
            entry = pairs[name]["predictors"].get(key, {}).get("rho")
            label = PREDICTOR_LABELS[key] if i == 0 else None
            style.point_with_interval(left, entry, y[i] + 0.3 - 0.2 * j, color=colors[key],
                                      marker=MARKERS[key], label=label, lw=1.8)  # fmt: skip
    left.set_xlabel("ρ: predictor's rank vs test accuracy after retraining", fontsize=9)
    left.legend(fontsize=8, loc="upper left")
    for j, (kind, key) in enumerate(statistics.items()):
        color = ("tab:blue", "tab:purple")[j]
        for i, name in enumerate(names):
            style.point_with_interval(right, pairs[name].get(key), y[i] + 0.12 - 0.24 * j,
                                      color=color, label=LABELS[kind] if i == 0 else None,
                                      lw=1.8)  # fmt: skip
        style.point_with_interval(right, pooled.get(kind), y[-1] + 0.12 - 0.24 * j, color=color,
                                  marker="D", lw=1.8)  # fmt: skip
    right.set_xlabel("CUI beyond size and depth (0: nothing beyond)", fontsize=9)
    right.legend(fontsize=8, loc="upper right")
    for ax in (left, right):
        ax.axvline(0, color="0.5", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
    right.set_xlim(-1.05, 1.05)
    left.set_xlim(min(-0.05, left.get_xlim()[0]), 1.05)
    left.set_yticks(y)
    left.set_yticklabels([*names, "pooled"], fontsize=8.5)
    fig.suptitle(
        "Oracle study: every split point retrained, 5 seeds; 95 % intervals (test inversion)",
        fontsize=9.5,
    )
    return style.save_figure(fig, paths)
