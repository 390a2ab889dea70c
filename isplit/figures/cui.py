"""The predicted side: I-SPLIT's CUI curve and its candidates (PNG + PDF each).

:func:`cui_figures` draws I-SPLIT's figure 1 and the per-class view from ``curve.parquet`` and
``candidates_all.tsv`` alone (docs/methods.md explains the rules behind the flags):

* ``cui_curve``: the CUI curve in log10 (mean over all images) with the I-SPLIT candidates (local
  maxima, red stars), the predicted best split (large gold star), and on a second, logarithmic y
  axis the activation size of one image (float32 bytes at the configured input size; the public
  code labels this axis "MB" but plots bytes) with the CDE candidates (size drops, open squares).
  Points outside the allowed range (``exclude_first`` / ``exclude_last``) are shaded. A
  public-code curve shows its input point at x = 0 with the input image's size.
* ``cui_per_class``: one small panel per class (≤ 12 classes) with the class curve, the global
  curve in grey and the class's best split starred; above 12 classes a heatmap of log10 CUI
  (classes × probe points) with each class's best split marked.

The sizes are the ``bytes`` column of the candidate table and the curve metadata's
``input_bytes``, both recorded when the curve was measured, so no network is loaded here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit.figures import style
from isplit.io.tables import read_metadata

MAX_PANELS = 12
KINDS = ("allowed", "isplit_max", "isplit_best", "cde")


def cui_figures(
    *,
    curve_path: str | Path,
    candidates_path: str | Path,
    cui_curve: Sequence[str | Path],
    cui_per_class: Sequence[str | Path],
) -> list[Path]:
    """Draw each figure into its paths (the format from each path's suffix, .png or .pdf);
    return the paths written.

    ``candidates_path`` is ``candidates_all.tsv`` (every probe point with its flags)."""
    cui_curve, cui_per_class = style.figure_paths(cui_curve), style.figure_paths(cui_per_class)
    curve = pd.read_parquet(curve_path)
    meta = read_metadata(curve_path)
    cands = style.read_flags(candidates_path)
    title = style.run_title(meta, keys=("variant", "target", "split"))
    input_bytes = float(meta.get("input_bytes", math.nan))
    paths = _curve_figure(curve, cands, input_bytes, title, cui_curve)
    paths += _per_class_figure(curve, cands, title, cui_per_class)
    return paths


def _curve_figure(curve, cands, input_bytes, title, paths) -> list[Path]:
    g = curve[curve["group"] == "all"].sort_values("layer_index", kind="stable")
    g = g.reset_index(drop=True)
    li = g["layer_index"].to_numpy()
    x = np.arange(len(g))
    y = g["log10_mean"].to_numpy(np.float64)
    # the input point (index < 0) is no candidate: all its flags False, so it is shaded
    flags = cands.set_index("layer_index")[list(KINDS)].reindex(li, fill_value=False)
    flags = {k: flags[k].to_numpy(bool) for k in KINDS}
    size = np.array(cands.set_index("layer_index")["bytes"].reindex(li), dtype=np.float64)
    size[li < 0] = input_bytes

    fig = Figure(figsize=(max(8.0, 0.42 * len(g) + 3.0), 6.5), layout="constrained")
    ax = fig.add_subplot()
    for xi in x[~flags["allowed"]]:
        ax.axvspan(xi - 0.5, xi + 0.5, color="0.9", zorder=0, lw=0)
    fin = np.isfinite(y)
    ax.plot(
        x[fin],
        y[fin],
        color="tab:orange",
        lw=2.5,
        marker="o",
        ms=4,
        zorder=2,
        label="CUI, mean over all images",
    )
    style.ISPLIT_MAX.scatter(
        ax,
        x[flags["isplit_max"] & fin],
        y[flags["isplit_max"] & fin],
        label="I-SPLIT candidates (local maxima)",
    )
    if flags["isplit_best"].any():
        b = int(np.flatnonzero(flags["isplit_best"])[0])
        style.PICK.scatter(
            ax, [x[b]], [y[b]], scale=1.25, label=f"predicted best split: {g['label'][b]}"
        )
    ax.set_ylabel(style.CUI_AXIS)
    ax.set_xlabel("probe point (split after this layer)")
    style.probe_ticks(ax, g["label"].tolist())
    ax.grid(axis="y", alpha=0.3)

    ax2 = ax.twinx()
    ax2.plot(
        x,
        size,
        color="black",
        ls=":",
        lw=1.5,
        marker=".",
        zorder=1,
        label="activation size (1 image)",
    )
    style.CDE.scatter(
        ax2,
        x[flags["cde"]],
        size[flags["cde"]],
        scale=0.4,
        zorder=3,
        label="CDE candidates (size drops)",
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("activation size (bytes, float32)")

    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if not flags["allowed"].all():
        from matplotlib.patches import Patch

        h2.append(Patch(color="0.9"))
        l2.append("excluded from candidacy")
    style.legend_below(fig, h1 + h2, l1 + l2)
    ax.set_title(f"I-SPLIT CUI curve and activation size — {title}", fontsize=10)
    return style.save_figure(fig, paths)


def _per_class_figure(curve, cands, title, paths) -> list[Path]:
    cur = curve[curve["layer_index"] >= 0]
    g = cur[cur["group"] == "all"].sort_values("layer_index", kind="stable")
    layer_index = g["layer_index"].tolist()
    labels = g["label"].tolist()
    per = cur[cur["group"] != "all"].sort_values(["class", "layer_index"], kind="stable")
    groups = list(dict.fromkeys(per["group"]))
    if not groups:
        return style.message_figure("no per-class curves", paths)
    mats, counts = {}, {}
    for name, sub in per.groupby("group", sort=False):
        v = sub.set_index("layer_index")["log10_mean"].reindex(layer_index)
        mats[name] = v.to_numpy(np.float64)
        counts[name] = int(sub["n"].iloc[0])
    pos = {li: i for i, li in enumerate(layer_index)}
    best = {
        name: pos[li]
        for li, names in zip(cands["layer_index"], cands["class_best"], strict=True)
        for name in names
        if li in pos
    }
    for name in groups:  # a class the table does not name (no allowed point): its own argmax
        if name not in best and np.isfinite(mats[name]).any():
            best[name] = int(np.argmax(np.where(np.isfinite(mats[name]), mats[name], -np.inf)))
    if len(groups) <= MAX_PANELS:
        glob = g["log10_mean"].to_numpy(np.float64)
        return _small_multiples(groups, mats, counts, best, glob, labels, title, paths)
    return _heatmap(groups, mats, best, labels, title, paths)


def _small_multiples(groups, mats, counts, best, glob, labels, title, paths) -> list[Path]:
    ncols = min(4, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    width = max(3.2, 0.22 * len(labels) + 1.0)
    fig = Figure(figsize=(width * ncols, 2.9 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    x = np.arange(len(labels))
    for i, ax in enumerate(axes.flat):
        if i >= len(groups):
            ax.set_visible(False)
            continue
        name = groups[i]
        v = mats[name]
        ax.plot(x, glob, color="0.6", lw=1.2, label="all images")
        ax.plot(
            x, v, color="tab:blue", lw=1.8, marker="o", ms=2.5, label="this class (gap: CUI = 0)"
        )
        head = f"{name} (n={counts[name]})"
        if name in best:
            b = best[name]
            style.ISPLIT_MAX.scatter(ax, [x[b]], [v[b]], scale=0.9, label="class best split")
            head += f": best {labels[b]}"
        ax.set_title(head, fontsize=9)
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("CUI (log10)")
        if i // ncols == nrows - 1 or i + ncols >= len(groups):  # the lowest panel of a column
            ax.tick_params(axis="x", labelbottom=True)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=90, fontsize=6)
            ax.set_xlabel("probe point")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Per-class CUI curves (true label) — {title}", fontsize=10)
    return style.save_figure(fig, paths)


def _heatmap(groups, mats, best, labels, title, paths) -> list[Path]:
    mat = np.vstack([mats[name] for name in groups])
    mat = np.where(np.isfinite(mat), mat, np.nan)  # -inf (CUI = 0) blank, not the darkest
    k, n = mat.shape
    fig = Figure(figsize=(max(7.0, 0.35 * n + 3.0), min(40.0, max(4.0, 0.12 * k + 2.0))))
    ax = fig.add_subplot()
    im = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax).set_label("CUI (log10)")
    marked = [i for i, name in enumerate(groups) if name in best]
    ax.scatter(
        [best[groups[i]] for i in marked],
        marked,
        marker="*",
        s=max(8.0, min(60.0, 3000.0 / k)),
        color="red",
        edgecolor="white",
        lw=0.4,
        label="class best split",
    )
    style.probe_ticks(ax, labels)
    style.sparse_yticks(ax, groups, 60)
    ax.set_ylabel("class (true label)")
    ax.set_xlabel("probe point (split after this layer)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18))
    ax.set_title(f"Per-class CUI (log10) — {title}", fontsize=10)
    return style.save_figure(fig, paths)
