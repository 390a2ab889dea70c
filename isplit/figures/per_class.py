"""The per-class figure: test recall of every class at every evaluated split after bottleneck
retraining (mean over seeds), each class's own predicted best split boxed and the global I-SPLIT
choice outlined, so a reader sees whether the best split depends on the class."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit.figures import style

MAX_CLASS_TICKS = 40  # above this many classes the heatmap labels every k-th row only
# the chosen split's column outline on the per-class heatmap, also its legend entry
PICK_COLUMN = {"color": "black", "lw": 2.2, "ls": (0, (4, 2))}


def per_class_figure(splits: pd.DataFrame, q: dict, title: str, paths) -> list[Path]:
    """Heatmap classes × evaluated splits; ``splits`` holds ``acc:<class>`` columns."""
    from matplotlib.patches import Rectangle

    acc_cols = [c for c in splits.columns if c.startswith("acc:")]
    if not acc_cols:
        msg = "no per-class accuracies in splits.parquet"
        return style.message_figure(msg, paths)
    classes = [c.split(":", 1)[1] for c in acc_cols]
    col_of = {layer: j for j, layer in enumerate(splits["layer"].astype(str))}
    mat = splits[acc_cols].to_numpy(np.float64).T  # classes × splits
    k, n = mat.shape
    per_class = q.get("per_class") or []
    predicted = {str(e["class"]): e["predicted"] for e in per_class if e.get("predicted")}
    own = {
        c: col_of[str(p["own_best"])] for c, p in predicted.items() if str(p["own_best"]) in col_of
    }
    rows = [i for i, c in enumerate(classes) if c in own]
    n_own = len(predicted)
    annotate = k <= 20 and n <= 24
    many = k > MAX_CLASS_TICKS

    height = min(22.0, 0.075 * k + 4.0) if many else 0.32 * k + 3.0
    width = max(9.0 if many else 8.0, 0.5 * n + 3.5)
    fig = Figure(figsize=(width, max(4.5, height)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    if many:  # a full-height bar on a very tall figure is mostly empty: put it on top
        cb = fig.colorbar(im, ax=ax, location="top", fraction=0.02, pad=0.01, shrink=0.6)
    else:
        cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, shrink=min(1.0, max(0.4, 12 / k)))
    cb.set_label("per-class test recall (fraction correct)")
    if annotate:
        for (i, j), v in np.ndenumerate(mat):
            if np.isfinite(v):
                ink = "black" if v > 0.6 else "white"
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6.5, color=ink)
    inset = 0.06 if many else 0.1  # inside the cell, clear of the chosen column's outline
    box = {"fill": False, "edgecolor": "red", "lw": 1.2 if many else 2.0, "zorder": 5}
    for i in rows:
        xy = (own[classes[i]] - 0.5 + inset, i - 0.5 + inset)
        ax.add_patch(Rectangle(xy, 1 - 2 * inset, 1 - 2 * inset, **box))
    handles = [Rectangle((0, 0), 1, 1, **box, label="class's own best")] if rows else []
    pick = (q.get("predictors", {}).get("cui_mean") or {}).get("choice")
    if pick and str(pick) in col_of:
        j = col_of[str(pick)]
        ax.add_patch(Rectangle((j - 0.5, -0.5), 1, k, fill=False, zorder=4, **PICK_COLUMN))
        # just above the top edge: x in data, y in axes coordinates
        tip = ax.get_xaxis_transform()
        style.PICK.scatter(ax, [j], [1.0], transform=tip, marker="v", scale=0.25, clip_on=False)
        label = "I-SPLIT predicted best split (global)"
        handles.append(style.PICK.handle(marker="v", scale=0.16, label=label, **PICK_COLUMN))
    style.probe_ticks(ax, splits["label"].astype(str).tolist())
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlabel("evaluated split point (network order)")
    step = style.sparse_yticks(ax, classes, MAX_CLASS_TICKS, fontsize=7 if k <= 20 else 6)
    ax.set_ylabel("class" + (f" (every {step}th labelled)" if step > 1 else ""))
    if handles:
        style.legend_below(fig, handles=handles, ncol=2, markerscale=1.0)
    notes = []
    beyond = sum(1 for p in predicted.values() if p.get("beyond_ci"))
    if predicted:
        notes.append(
            f"a class's predicted own best beats the global one beyond the 95 % interval for "
            f"{beyond} of {len(predicted)} classes"
        )
    if n_own > len(rows):
        notes.append(f"{n_own - len(rows)} of {n_own} classes' own best split not evaluated")
    if annotate:
        notes.append("cell values in %")
    parts = [
        f"Per-class test recall after bottleneck retraining (mean over seeds){title}",
        f"{k} classes × {n} evaluated splits; red box: each class's own predicted best split "
        "(its class CUI argmax)",
    ]
    if notes:
        parts.append("; ".join(notes))
    chars = int(width * 12)  # about what fits across the figure at this font size
    ax.set_title("\n".join(line for p in parts for line in textwrap.wrap(p, chars)), fontsize=9.5)
    return style.save_figure(fig, paths)
