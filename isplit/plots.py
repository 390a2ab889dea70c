"""Figures (PNG + PDF each), drawn on :class:`matplotlib.figure.Figure` objects.

Figures are built without ``pyplot``, so there is no global figure state and no GUI backend:
``Figure.savefig`` renders with Agg (PNG) and the PDF backend whatever ``MPLBACKEND`` says.

:func:`cui_figures` draws I-SPLIT's figure 1 and the per-class view:

* ``cui_curve.{png,pdf}``: the CUI curve in log10 (mean over all images) with the I-SPLIT
  candidates (local maxima, red stars), the predicted best split (large gold star), and on a
  second, logarithmic y axis the activation size of one image (float32 bytes at the configured
  input size; the public code labels this axis "MB" but plots bytes) with the CDE candidates
  (size drops, open squares). Points outside the allowed range (``exclude_first`` /
  ``exclude_last``) are shaded. A public-code curve shows its input point at x = 0 with the
  input image's size.
* ``cui_per_class.{png,pdf}``: one small panel per class (≤ 12 classes) with the class curve,
  the global curve in grey and the class's best split starred; above 12 classes a heatmap of
  log10 CUI (classes × probe points) with each class's best split marked.

:func:`split_figures` draws the measured side (test top-1 after bottleneck retraining, from
``splits.parquet`` and ``quality.json``):

* ``accuracy_by_split.{png,pdf}``: accuracy per evaluated split over all probe points with the
  CUI curve on a second y axis, the candidate kinds in the symbols above, the measured best
  ringed and the fine-tuned model's accuracy without a split (if known) dashed.
* ``cui_vs_accuracy.{png,pdf}``: log10 CUI vs accuracy, one labelled point per split, with
  Spearman ρ / Pearson r of CUI and of the CDE size baseline.
* ``accuracy_vs_bytes.{png,pdf}``: accuracy vs bytes sent per image (log) with the Pareto
  front (:func:`pareto_front`) as a step line.
* ``per_class_accuracy.{png,pdf}``: heatmap classes × splits, each class's own predicted best
  split boxed, the global predicted best column dashed.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit import candidates as cand
from isplit import models
from isplit.atomic import replacing
from isplit.importance import read_metadata

MAX_PANELS = 12


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """``stem``.png and .pdf, whole or not at all, without dates (same input, same bytes)."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(out_dir) / f"{stem}.{ext}"
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", metadata=_fixed_metadata(ext))
        paths.append(path)
    return paths


def _fixed_metadata(ext: str) -> dict:
    """No creation date in the files, so the same inputs give the same bytes."""
    if ext == "pdf":
        return {"CreationDate": None, "ModDate": None}
    return {"Software": None}


def _flags(candidates_path: Path) -> pd.DataFrame:
    """Per probe point flags: from ``candidates_all.tsv`` when present, else parsed from the
    ``reasons`` of ``candidates.tsv`` (then only the selected points are known)."""
    all_path = cand.all_points_path(candidates_path)
    if all_path.is_file():
        t = pd.read_csv(all_path, sep="\t", keep_default_na=False)
        for col in ("allowed", "isplit_max", "isplit_best", "cde", "selected"):
            t[col] = t[col].astype(str) == "True"
        return t
    t = pd.read_csv(candidates_path, sep="\t", keep_default_na=False)
    reasons = t["reasons"].astype(str).str.split(";")
    t["isplit_max"] = reasons.map(lambda r: "isplit-max" in r)
    t["isplit_best"] = reasons.map(lambda r: "isplit-best" in r)
    t["cde"] = reasons.map(lambda r: "cde" in r)
    t["class_best"] = reasons.map(
        lambda r: ";".join(x.split(":", 1)[1] for x in r if x.startswith("class-best:"))
    )
    t["allowed"] = True
    t["selected"] = True
    return t


def cui_figures(
    *,
    curve_path: str | Path,
    candidates_path: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
) -> list[Path]:
    """Write ``cui_curve`` and ``cui_per_class`` (PNG + PDF) into ``out_dir``; return paths."""
    curve_path, candidates_path, out_dir = Path(curve_path), Path(candidates_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = pd.read_parquet(curve_path)
    meta = read_metadata(curve_path)
    model, model_meta = models.load_model(model_path)
    variant = meta.get("variant", "paper")
    image_size = int(model_meta["input"]["image_size"])
    sizes, input_size = cand.activation_sizes(model, variant, image_size)
    flags = _flags(candidates_path)
    parts = [f"{model_meta['model']}", f"{image_size} px", f"variant {variant}"]
    parts += [f"{k} {meta[k]}" for k in ("target", "split") if meta.get(k)]
    title = ", ".join(parts)
    paths = _curve_figure(curve, flags, sizes, input_size, title, out_dir)
    paths += _per_class_figure(curve, flags, title, out_dir)
    return paths


def _ticks(ax, labels) -> None:
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)


def _curve_figure(curve, flags, sizes, input_size, title, out_dir) -> list[Path]:
    g = curve[curve["group"] == "all"].sort_values("layer_index", kind="stable")
    g = g.reset_index(drop=True)
    x = np.arange(len(g))
    y = g["log10_mean"].to_numpy(np.float64)
    by_index = flags.set_index("layer_index")
    size = np.array(
        [
            input_size if li < 0 else sizes[name]
            for li, name in zip(g["layer_index"], g["layer"], strict=True)
        ],
        dtype=np.float64,
    )

    def pick(col):
        return np.array(
            [li in by_index.index and bool(by_index.loc[li, col]) for li in g["layer_index"]]
        )

    is_max, is_best, is_cde = pick("isplit_max"), pick("isplit_best"), pick("cde")
    allowed = np.array(
        [li in by_index.index and bool(by_index.loc[li, "allowed"]) for li in g["layer_index"]]
    )

    fig = Figure(figsize=(max(8.0, 0.42 * len(g) + 3.0), 6.5), layout="constrained")
    ax = fig.add_subplot()
    for xi in x[~allowed]:
        ax.axvspan(xi - 0.5, xi + 0.5, color="0.9", zorder=0, lw=0)
    finite = np.isfinite(y)
    ax.plot(
        x[finite],
        y[finite],
        color="tab:orange",
        lw=2.5,
        marker="o",
        ms=4,
        zorder=2,
        label="CUI, mean over all images",
    )
    ax.scatter(
        x[is_max & finite],
        y[is_max & finite],
        marker="*",
        s=220,
        color="tab:red",
        zorder=4,
        label="I-SPLIT candidates (local maxima)",
    )
    if is_best.any():
        b = int(np.flatnonzero(is_best)[0])
        ax.scatter(
            [x[b]],
            [y[b]],
            marker="*",
            s=650,
            facecolor="gold",
            edgecolor="black",
            lw=1.2,
            zorder=5,
            label=f"predicted best split: {g['label'][b]}",
        )
    ax.set_ylabel("CUI (log10 of mean layer Grad-CAM, a.u.)")
    ax.set_xlabel("probe point (split after this layer)")
    _ticks(ax, g["label"].tolist())
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
    ax2.scatter(
        x[is_cde],
        size[is_cde],
        marker="s",
        s=70,
        facecolors="none",
        edgecolors="black",
        lw=1.3,
        zorder=3,
        label="CDE candidates (size drops)",
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("activation size (bytes, float32)")

    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if (~allowed).any():
        from matplotlib.patches import Patch

        h2.append(Patch(color="0.9"))
        l2.append("excluded from candidacy")
    fig.legend(
        h1 + h2,
        l1 + l2,
        fontsize=8,
        loc="outside lower center",
        ncol=3,
        frameon=False,
        markerscale=0.6,
    )
    ax.set_title(f"I-SPLIT CUI curve and activation size — {title}", fontsize=10)
    return save_figure(fig, out_dir, "cui_curve")


def _class_best_positions(flags: pd.DataFrame, layer_index: list[int]) -> dict[str, int]:
    """class name → position (in ``layer_index``) of its best split."""
    pos = {li: i for i, li in enumerate(layer_index)}
    out = {}
    for li, names in zip(flags["layer_index"], flags["class_best"].astype(str), strict=True):
        for name in filter(None, names.split(";")):
            if li in pos:
                out[name] = pos[li]
    return out


def _per_class_figure(curve, flags, title, out_dir) -> list[Path]:
    cur = curve[curve["layer_index"] >= 0]
    g = cur[cur["group"] == "all"].sort_values("layer_index", kind="stable")
    layer_index = g["layer_index"].tolist()
    labels = g["label"].tolist()
    per = cur[cur["group"] != "all"].sort_values(["class", "layer_index"], kind="stable")
    groups = list(dict.fromkeys(per["group"]))
    best = _class_best_positions(flags, layer_index)
    mats = {
        name: sub.set_index("layer_index")["log10_mean"].reindex(layer_index).to_numpy(float)
        for name, sub in per.groupby("group", sort=False)
    }
    counts = {name: int(sub["n"].iloc[0]) for name, sub in per.groupby("group", sort=False)}
    for name in groups:  # a class not in the flags table: its own argmax
        if name not in best:
            v = mats[name]
            if np.isfinite(v).any():
                best[name] = int(np.nanargmax(np.where(np.isfinite(v), v, np.nan)))
    if not groups:
        fig = Figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no per-class curves", ha="center", va="center")
        return save_figure(fig, out_dir, "cui_per_class")
    if len(groups) <= MAX_PANELS:
        return _small_multiples(groups, mats, counts, best, g, labels, title, out_dir)
    return _heatmap(groups, mats, best, labels, title, out_dir)


def _small_multiples(groups, mats, counts, best, g, labels, title, out_dir) -> list[Path]:
    ncols = min(4, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    width = max(3.2, 0.22 * len(labels) + 1.0)
    fig = Figure(figsize=(width * ncols, 2.9 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    x = np.arange(len(labels))
    glob = g["log10_mean"].to_numpy(float)
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
        if name in best:
            b = best[name]
            ax.scatter(
                [x[b]],
                [v[b]],
                marker="*",
                s=200,
                color="tab:red",
                zorder=4,
                label="class best split",
            )
            ax.set_title(f"{name} (n={counts[name]}): best {labels[b]}", fontsize=9)
        else:
            ax.set_title(f"{name} (n={counts[name]})", fontsize=9)
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("CUI (log10)")
        if i // ncols == nrows - 1 or i + ncols >= len(groups):
            ax.tick_params(axis="x", labelbottom=True)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=90, fontsize=6)
            ax.set_xlabel("probe point")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Per-class CUI curves (true label) — {title}", fontsize=10)
    return save_figure(fig, out_dir, "cui_per_class")


def _heatmap(groups, mats, best, labels, title, out_dir) -> list[Path]:
    mat = np.vstack([mats[name] for name in groups])
    mat = np.where(np.isfinite(mat), mat, np.nan)
    k, n = mat.shape
    fig = Figure(figsize=(max(7.0, 0.35 * n + 3.0), min(40.0, max(4.0, 0.12 * k + 2.0))))
    ax = fig.add_subplot()
    im = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap="viridis")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("CUI (log10)")
    bx = [best[name] for name in groups if name in best]
    by = [i for i, name in enumerate(groups) if name in best]
    ax.scatter(
        bx,
        by,
        marker="*",
        s=max(8.0, min(60.0, 3000.0 / k)),
        color="red",
        edgecolor="white",
        lw=0.4,
        label="class best split",
    )
    _ticks(ax, labels)
    step = max(1, math.ceil(k / 60))
    ax.set_yticks(range(0, k, step))
    ax.set_yticklabels([groups[i] for i in range(0, k, step)], fontsize=6)
    ax.set_ylabel("class (true label)")
    ax.set_xlabel("probe point (split after this layer)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18))
    ax.set_title(f"Per-class CUI (log10) — {title}", fontsize=10)
    return save_figure(fig, out_dir, "cui_per_class")


# --------------------------------------------------------------------------------------------
# Split evaluation figures: measured accuracy after bottleneck retraining per split point.
# --------------------------------------------------------------------------------------------

CUI_LABEL = "CUI (log10 of mean layer Grad-CAM, a.u.)"
ACC_LABEL = "test top-1 accuracy after bottleneck retraining (%)"
MAX_CLASS_TICKS = 40  # above this many classes the heatmap labels every k-th row only


def pareto_front(nbytes, acc) -> np.ndarray:
    """Indices of the Pareto-optimal points (fewer bytes, higher accuracy), by bytes ascending.

    A point is on the front when no other point sends at most as many bytes with at least its
    accuracy (one of them strictly). Of points with equal bytes only the most accurate one can
    be on it; of exact duplicates only the first (lowest index). Points with a non-finite value
    are ignored.
    """
    b = np.asarray(nbytes, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1:
        raise ValueError(f"bytes and accuracy must be 1-d of one length, got {b.shape}, {a.shape}")
    ok = np.flatnonzero(np.isfinite(b) & np.isfinite(a))
    # bytes ascending, then accuracy descending, then index ascending
    order = ok[np.lexsort((ok, -a[ok], b[ok]))]
    front, best = [], -np.inf
    for i in order:
        if a[i] > best:
            front.append(int(i))
            best = a[i]
    return np.asarray(front, dtype=np.int64)


def _tokens(reasons) -> set[str]:
    return set(filter(None, str(reasons).split(";"))) if isinstance(reasons, str) else set()


def _fmt_stat(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}".replace("-", "\u2212")


def _fmt_p(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.2g}" if v >= 1e-3 else f"{v:.0e}"


def _human_bytes(v: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return f"{v:g} B"


def _pct_axis(axis) -> None:
    """Fractions shown as percent, with as many decimals as the visible range needs."""
    from matplotlib.ticker import PercentFormatter

    lo, hi = axis.get_view_interval()
    span = 100 * abs(hi - lo)
    decimals = 0 if span >= 8 else 1 if span >= 0.8 else 2
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


def _short_label(label: str) -> str:
    """Point labels in scatter plots: ``layer3_bottleneck_5`` → ``layer3.5``."""
    return re.sub(r"^(layer\d+)_(?:bottleneck|basicblock)_(\d+)$", r"\1.\2", str(label))


def _line_obstacles(ax, step_px: float = 4.0, half: float = 2.0) -> list:
    """Small display-space boxes along every line of ``ax`` (steps and axhlines included),
    for label placement to avoid."""
    from matplotlib.cbook import STEP_LOOKUP_MAP
    from matplotlib.transforms import Bbox

    out = []
    for line in ax.get_lines():
        xd = np.asarray(line.get_xdata(), dtype=float)
        yd = np.asarray(line.get_ydata(), dtype=float)
        ds = line.get_drawstyle()
        if ds in STEP_LOOKUP_MAP and ds != "default":
            xd, yd = STEP_LOOKUP_MAP[ds](xd, yd)
        if len(xd) == 0:
            continue
        pts = line.get_transform().transform(np.column_stack([xd, yd]))
        pts = pts[np.isfinite(pts).all(axis=1)]
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            k = max(1, int(np.hypot(*(b - a)) / step_px))
            for t in np.linspace(0.0, 1.0, k + 1):
                px, py = a + t * (b - a)
                out.append(Bbox.from_extents(px - half, py - half, px + half, py + half))
    return out


def _kind_markers(ax, x, y, kinds: list[set[str]], legend: bool = True) -> None:
    """Mark evaluated points by candidate kind, in cui_curve's symbols: open square = CDE
    size drop, red star = I-SPLIT local maximum, large gold star = predicted best split."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def has(tok):
        return np.array([tok in k for k in kinds], dtype=bool)

    cde, mx, best = has("cde"), has("isplit-max"), has("isplit-best")
    if cde.any():
        ax.scatter(
            x[cde],
            y[cde],
            marker="s",
            s=170,
            facecolors="none",
            edgecolors="black",
            lw=1.3,
            zorder=5,
            label="CDE candidate (size drop)" if legend else None,
        )
    if mx.any():
        ax.scatter(
            x[mx],
            y[mx],
            marker="*",
            s=220,
            color="tab:red",
            zorder=6,
            label="I-SPLIT candidate (CUI local maximum)" if legend else None,
        )
    if best.any():
        ax.scatter(
            x[best],
            y[best],
            marker="*",
            s=520,
            facecolor="gold",
            edgecolor="black",
            lw=1.1,
            zorder=7,
            label="I-SPLIT predicted best split" if legend else None,
        )


def _mark_measured_best(ax, x, y, label: str, value: float) -> None:
    ax.scatter(
        [x],
        [y],
        marker="o",
        s=380,
        facecolors="none",
        edgecolors="tab:green",
        lw=2.0,
        zorder=8,
        label=f"measured best: {label} ({100 * value:.1f}%)",
    )


def _agg_renderer(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # settles the constrained layout before we measure
    return canvas.get_renderer()


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _segments_cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def _place_labels(fig: Figure, ax, x, y, labels, *, fontsize=7, bold=None) -> None:
    """Label points without overlapping each other, the points, the lines in ``ax`` or the axes
    frame: try a ring of offsets around each point (nearest first) and keep the first free
    one, else the least bad; a label moved away from its point gets a thin leader line, and
    leader lines may not cross."""
    from matplotlib.transforms import Bbox

    renderer = _agg_renderer(fig)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pts = ax.transData.transform(np.column_stack([x, y]))
    px_per_pt = fig.dpi / 72.0
    r = 7.0 * px_per_pt  # marker radius in pixels
    occupied = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in pts]
    occupied += _line_obstacles(ax)
    frame = ax.get_window_extent(renderer)
    offsets = []
    for dist in (6, 13, 22, 34):
        for ang in (45, -45, 135, -135, 90, -90, 0, 180, 22, -22, 158, -158):
            t = math.radians(ang)
            offsets.append((dist * math.cos(t), dist * math.sin(t)))
    bold = np.zeros(len(labels), dtype=bool) if bold is None else np.asarray(bold, dtype=bool)
    sizes = []
    for lab, b in zip(labels, bold, strict=True):
        t = ax.text(0, 0, lab, fontsize=fontsize, fontweight="bold" if b else "normal")
        e = t.get_window_extent(renderer)
        sizes.append((e.width, e.height))
        t.remove()
    leaders: list[tuple] = []
    for i in np.argsort(-pts[:, 1], kind="stable"):  # top to bottom
        w, h = sizes[i]
        best, best_cost = None, math.inf
        for dx, dy in offsets:
            ha = "left" if dx > 0.5 else "right" if dx < -0.5 else "center"
            va = "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center"
            ax_, ay_ = pts[i, 0] + dx * px_per_pt, pts[i, 1] + dy * px_per_pt
            x0 = ax_ if ha == "left" else ax_ - w if ha == "right" else ax_ - w / 2
            y0 = ay_ if va == "bottom" else ay_ - h if va == "top" else ay_ - h / 2
            bb = Bbox.from_bounds(x0, y0, w, h)
            cost = sum(_overlap(bb, o) for o in occupied)
            cost += 1e3 * (
                max(0, frame.x0 - bb.x0)
                + max(0, bb.x1 - frame.x1)
                + max(0, frame.y0 - bb.y0)
                + max(0, bb.y1 - frame.y1)
            )
            seg = (tuple(pts[i]), (ax_, ay_))
            if math.hypot(dx, dy) > 10:
                cost += 5e3 * sum(_segments_cross(*seg, *other) for other in leaders)
            cost += 1e-3 * math.hypot(dx, dy)  # ties: the nearer
            if cost < best_cost:
                best, best_cost = (bb, dx, dy, ha, va, seg), cost
            if cost < 1:
                break
        bb, dx, dy, ha, va, seg = best
        leader = math.hypot(dx, dy) > 10
        ann = ax.annotate(
            labels[i],
            (x[i], y[i]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=fontsize,
            fontweight="bold" if bold[i] else "normal",
            zorder=9,
            annotation_clip=False,
            arrowprops=(
                {"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkB": r * 0.5}
                if leader
                else None
            ),
        )
        ann.set_in_layout(False)
        occupied.append(bb)
        if leader:
            leaders.append(seg)


def _read_split_inputs(splits_path, curve_path, candidates_path, quality_path):
    import json

    splits = pd.read_parquet(splits_path).sort_values("layer_index", kind="stable")
    splits = splits.reset_index(drop=True)
    if not len(splits):
        raise ValueError(f"{splits_path}: no evaluated splits to plot")
    curve = pd.read_parquet(curve_path)
    cands = pd.read_csv(candidates_path, sep="\t", keep_default_na=False)
    q = json.loads(Path(quality_path).read_text())
    meta = read_metadata(curve_path)
    parts = [str(meta["model"])] if meta.get("model") else []
    if meta.get("input", {}).get("image_size"):
        parts.append(f"{meta['input']['image_size']} px")
    parts += [f"{k} {meta[k]}" for k in ("variant", "target") if meta.get(k)]
    return splits, curve, cands, q, ", ".join(parts)


def split_figures(
    *,
    splits_path: str | Path,
    curve_path: str | Path,
    candidates_path: str | Path,
    quality_path: str | Path,
    out_dir: str | Path,
) -> list[Path]:
    """Write ``accuracy_by_split``, ``cui_vs_accuracy``, ``accuracy_vs_bytes`` and
    ``per_class_accuracy`` (PNG + PDF each) into ``out_dir``; return the paths.

    Inputs are the pipeline's ``splits.parquet`` (one row per evaluated split),
    ``curve.parquet`` (the CUI curve), ``candidates.tsv`` and ``quality.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits, curve, cands, q, title = _read_split_inputs(
        splits_path, curve_path, candidates_path, quality_path
    )
    paths = _accuracy_by_split(splits, curve, cands, q, title, out_dir)
    paths += _cui_vs_accuracy(splits, q, title, out_dir)
    paths += _accuracy_vs_bytes(splits, q, title, out_dir)
    paths += _per_class_accuracy(splits, q, title, out_dir)
    return paths


def _with_title(title: str) -> str:
    return f" — {title}" if title else ""


def _predicted_line(q: dict) -> str:
    pb, mb = q.get("predicted_best"), q.get("measured_best")
    if pb:
        return (
            f"I-SPLIT predicted best {pb['label']}: {100 * pb['top1']:.1f}%, rank {pb['rank']} "
            f"of {pb['of']}, {100 * pb['accuracy_lost']:.1f} points below the measured best "
            f"{mb['label']}"
        )
    if mb:
        return f"measured best {mb['label']} ({100 * mb['top1']:.1f}%); I-SPLIT best not evaluated"
    return ""


def _accuracy_by_split(splits, curve, cands, q, title, out_dir) -> list[Path]:
    g = curve[(curve["group"] == "all") & (curve["layer_index"] >= 0)]
    g = g.sort_values("layer_index", kind="stable").drop_duplicates("layer_index")
    # x axis: every probe point of the curve, plus any evaluated split the curve lacks
    labels = dict(zip(g["layer_index"].astype(int), g["label"].astype(str), strict=True))
    for li, lab in zip(splits["layer_index"].astype(int), splits["label"].astype(str), strict=True):
        labels.setdefault(li, lab)
    order = sorted(labels)
    pos = {li: i for i, li in enumerate(order)}

    fig = Figure(figsize=(max(8.0, 0.45 * len(order) + 3.0), 6.5), layout="constrained")
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    ax.set_zorder(ax2.get_zorder() + 1)  # accuracy (left axis) drawn over the CUI curve
    ax.patch.set_visible(False)

    cx = np.array([pos[li] for li in g["layer_index"].astype(int)], dtype=float)
    cy = g["log10_mean"].to_numpy(np.float64)
    fin = np.isfinite(cy)
    ax2.plot(
        cx[fin],
        cy[fin],
        color="tab:orange",
        lw=2.0,
        alpha=0.75,
        marker="o",
        ms=3,
        zorder=1,
        label="CUI curve (right axis, all probe points)",
    )
    ax2.set_ylabel(CUI_LABEL, color="tab:orange")
    ax2.tick_params(axis="y", colors="tab:orange")

    sx = np.array([pos[li] for li in splits["layer_index"].astype(int)], dtype=float)
    sy = splits["top1"].to_numpy(np.float64)
    ax.plot(
        sx,
        sy,
        color="tab:blue",
        lw=1.8,
        marker="o",
        ms=6,
        zorder=4,
        label="test top-1 after bottleneck retraining (evaluated splits)",
    )
    _kind_markers(ax, sx, sy, [_tokens(r) for r in splits.get("reasons", [""] * len(splits))])
    bi = int(np.nanargmax(sy)) if np.isfinite(sy).any() else None
    if bi is not None:
        _mark_measured_best(ax, sx[bi], sy[bi], splits["label"].iloc[bi], sy[bi])
    ft = q.get("finetuned_top1")
    if ft is not None and math.isfinite(float(ft)):
        ax.axhline(
            float(ft),
            color="0.3",
            ls="--",
            lw=1.3,
            zorder=3,
            label=f"fine-tuned model, no split ({100 * float(ft):.1f}%)",
        )
    lo = np.nanmin(sy) if np.isfinite(sy).any() else 0.0
    hi = np.nanmax(sy) if np.isfinite(sy).any() else 1.0
    if ft is not None and math.isfinite(float(ft)):
        lo, hi = min(lo, float(ft)), max(hi, float(ft))
    pad = max(0.03, 0.12 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1.0 else hi + pad)
    _pct_axis(ax.yaxis)
    ax.set_ylabel(ACC_LABEL, color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.set_xlabel("probe point in network order (split after this layer)")
    _ticks(ax, [labels[li] for li in order])
    # evaluated probe points in bold
    evaluated = set(pos[li] for li in splits["layer_index"].astype(int))
    for i, t in enumerate(ax.get_xticklabels()):
        if i in evaluated:
            t.set_fontweight("bold")
    ax.grid(axis="y", alpha=0.3)

    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(
        h1 + h2,
        l1 + l2,
        fontsize=8,
        loc="outside lower center",
        ncol=3,
        frameon=False,
        markerscale=0.6,
    )
    n = len(splits)
    head = (
        f"Accuracy per split point ({n} of {len(order)} probe points evaluated, in bold)"
        f"{_with_title(title)}"
    )
    sub = _predicted_line(q)
    ax.set_title(head + (f"\n{sub}" if sub else ""), fontsize=10)
    return save_figure(fig, out_dir, "accuracy_by_split")


def _corr_text(c: dict | None, name: str, sym_p: bool = True) -> str:
    c = c or {}
    rho = f"Spearman ρ = {_fmt_stat(c.get('spearman'))}"
    r = f"Pearson r = {_fmt_stat(c.get('pearson'))}"
    if sym_p:
        if c.get("spearman") is not None:
            rho += f" (p = {_fmt_p(c.get('spearman_p'))})"
        if c.get("pearson") is not None:
            r += f" (p = {_fmt_p(c.get('pearson_p'))})"
    return f"{name}: {rho}, {r}, n = {c.get('n', 'n/a')}"


def _cui_vs_accuracy(splits, q, title, out_dir) -> list[Path]:
    x = splits["log10_cui"].to_numpy(np.float64)
    y = splits["top1"].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    fig = Figure(figsize=(8.0, 6.6), layout="constrained")
    ax = fig.add_subplot()
    xs, ys = x[ok], y[ok]
    kinds = [_tokens(r) for r in splits.get("reasons", pd.Series([""] * len(splits)))[ok]]
    labels = np.array([_short_label(v) for v in splits["label"].astype(str)])[ok]
    ax.scatter(xs, ys, s=36, color="tab:blue", zorder=4, label="evaluated split")
    _kind_markers(ax, xs, ys, kinds)
    if len(xs):
        bi = int(np.argmax(ys))
        _mark_measured_best(ax, xs[bi], ys[bi], labels[bi], ys[bi])
    if len(xs) >= 3 and np.ptp(xs) > 0:
        k, c0 = np.polyfit(xs, ys, 1)
        gx = np.array([xs.min(), xs.max()])
        ax.plot(gx, k * gx + c0, color="0.4", ls=":", lw=1.2, zorder=2, label="least-squares line")
    # room for labels: pad the limits
    if len(xs):
        xr = np.ptp(xs) if np.ptp(xs) > 0 else 2.0
        yr = max(np.ptp(ys), 0.2 if np.ptp(ys) == 0 else 0.02)
        ax.set_xlim(xs.min() - 0.12 * xr, xs.max() + 0.12 * xr)
        ax.set_ylim(ys.min() - 0.12 * yr, ys.max() + 0.15 * yr)
    else:
        ax.text(
            0.5,
            0.5,
            "no split with a finite CUI and accuracy",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    _pct_axis(ax.yaxis)
    ax.set_xlabel(CUI_LABEL)
    ax.set_ylabel(ACC_LABEL)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncol=3, frameon=False, markerscale=0.6)
    dropped = int((~ok).sum())
    lines = [
        f"CUI vs accuracy over {int(ok.sum())} evaluated splits{_with_title(title)}",
        _corr_text(q.get("cui_vs_accuracy"), "I-SPLIT CUI"),
        _corr_text(q.get("cde_size_vs_accuracy"), "baseline, CDE layer size (log10 bytes)"),
    ]
    if dropped:
        lines.append(f"{dropped} split(s) with CUI = 0 or no accuracy not shown")
    ax.set_title("\n".join(lines), fontsize=9.5)
    if len(xs):
        _place_labels(fig, ax, xs, ys, list(labels))
    return save_figure(fig, out_dir, "cui_vs_accuracy")


def _accuracy_vs_bytes(splits, q, title, out_dir) -> list[Path]:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    b = splits["bytes"].to_numpy(np.float64)
    a = splits["top1"].to_numpy(np.float64)
    ok = np.isfinite(b) & np.isfinite(a) & (b > 0)
    idx = np.flatnonzero(ok)
    front = idx[pareto_front(b[ok], a[ok])]
    on = np.zeros(len(b), dtype=bool)
    on[front] = True
    labels = np.array([_short_label(v) for v in splits["label"].astype(str)])

    fig = Figure(figsize=(8.5, 6.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.scatter(
        b[ok & ~on],
        a[ok & ~on],
        s=36,
        color="0.55",
        zorder=3,
        label="evaluated split (dominated)",
    )
    ax.scatter(
        b[on],
        a[on],
        s=70,
        color="tab:red",
        edgecolor="black",
        lw=0.6,
        zorder=5,
        label="Pareto-optimal split",
    )
    if len(front):
        fx, fy = b[front], a[front]
        # best accuracy reachable with at most x bytes: flat until the next front point
        hi_x = b[ok].max() * 1.6
        ax.step(
            np.append(fx, hi_x),
            np.append(fy, fy[-1]),
            where="post",
            color="tab:red",
            lw=1.5,
            zorder=4,
            label="Pareto front (best accuracy for at most x bytes)",
        )
    ft = q.get("finetuned_top1")
    if ft is not None and math.isfinite(float(ft)):
        ax.axhline(
            float(ft),
            color="0.3",
            ls="--",
            lw=1.2,
            zorder=2,
            label=f"fine-tuned model, no split ({100 * float(ft):.1f}%)",
        )
    if ok.any():
        lo, hi = b[ok].min(), b[ok].max()
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ya, yb = a[ok].min(), a[ok].max()
        if ft is not None and math.isfinite(float(ft)):
            ya, yb = min(ya, float(ft)), max(yb, float(ft))
        yr = max(yb - ya, 0.2 if yb == ya else 0.02)
        ax.set_ylim(ya - 0.12 * yr, yb + 0.15 * yr)
    fmt = FuncFormatter(lambda v, _pos: _human_bytes(v))
    ax.xaxis.set_major_formatter(fmt)
    if ok.any() and np.log10(b[ok].max() * 1.6) - np.log10(b[ok].min() / 1.6) < 3.0:
        # up to 3 decades the decades alone leave too few labels: add 2× and 5×
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="x", which="both", labelsize=9)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    _pct_axis(ax.yaxis)
    ax.set_xlabel("bytes transmitted per image (log scale; bottleneck code as sent)")
    ax.set_ylabel(ACC_LABEL)
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.12, which="minor", axis="x")
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False, markerscale=0.8)
    ax.set_title(
        f"Accuracy vs transmitted bytes{_with_title(title)}\n"
        f"Pareto front: {len(front)} of {int(ok.sum())} evaluated splits",
        fontsize=10,
    )
    if ok.any():
        _place_labels(fig, ax, b[ok], a[ok], list(labels[ok]), bold=on[ok])
    return save_figure(fig, out_dir, "accuracy_vs_bytes")


def _per_class_accuracy(splits, q, title, out_dir) -> list[Path]:
    from matplotlib.patches import Rectangle

    acc_cols = [c for c in splits.columns if c.startswith("acc:")]
    classes = [c.split(":", 1)[1] for c in acc_cols]
    labels = splits["label"].astype(str).tolist()
    col_of = {layer: j for j, layer in enumerate(splits["layer"].astype(str))}
    if not acc_cols:
        fig = Figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no per-class accuracies in splits.parquet", ha="center", va="center")
        return save_figure(fig, out_dir, "per_class_accuracy")
    mat = splits[acc_cols].to_numpy(np.float64).T  # classes × splits
    k, n = mat.shape
    own = {}
    for e in q.get("per_class") or []:
        layer = e.get("own_best_layer")
        if layer is not None and str(layer) in col_of:
            own[str(e["class"])] = col_of[str(layer)]
    rows = [i for i, c in enumerate(classes) if c in own]
    cols = [own[classes[i]] for i in rows]
    n_own = sum(1 for e in q.get("per_class") or [] if e.get("own_best_layer") is not None)
    missing = n_own - len(rows)
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
    cb.set_label("per-class test accuracy (fraction correct)")
    if annotate:
        for i in range(k):
            for j in range(n):
                v = mat[i, j]
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="black" if v > 0.6 else "white",
                    )
    lw = 1.2 if many else 2.0
    inset = 0.06 if many else 0.1  # inside the cell, clear of the gold column's outline
    for i, j in zip(rows, cols, strict=True):
        ax.add_patch(
            Rectangle(
                (j - 0.5 + inset, i - 0.5 + inset),
                1 - 2 * inset,
                1 - 2 * inset,
                fill=False,
                edgecolor="red",
                lw=lw,
                zorder=5,
            )
        )
    handles = []
    if rows:
        handles.append(
            Rectangle((0, 0), 1, 1, fill=False, edgecolor="red", lw=2, label="class's own best")
        )
    pb = q.get("predicted_best")
    if pb and str(pb["layer"]) in col_of:
        from matplotlib.lines import Line2D

        j = col_of[str(pb["layer"])]
        col_style = {"edgecolor": "black", "lw": 2.2, "ls": (0, (4, 2))}
        ax.add_patch(Rectangle((j - 0.5, -0.5), 1, k, fill=False, zorder=4, **col_style))
        ax.plot(  # just above the top edge: x in data, y in axes coordinates
            [j],
            [1.0],
            transform=ax.get_xaxis_transform(),
            marker="v",
            ms=11,
            markerfacecolor="gold",
            markeredgecolor="black",
            markeredgewidth=0.8,
            ls="none",
            zorder=6,
            clip_on=False,
        )
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                lw=2.2,
                ls=(0, (4, 2)),
                marker="v",
                markerfacecolor="gold",
                markersize=9,
                label="I-SPLIT predicted best split (global)",
            )
        )
    _ticks(ax, labels)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlabel("evaluated split point (network order)")
    step = max(1, math.ceil(k / MAX_CLASS_TICKS))
    ax.set_yticks(range(0, k, step))
    ax.set_yticklabels([classes[i] for i in range(0, k, step)], fontsize=7 if k <= 20 else 6)
    ax.set_ylabel("class" + (f" (every {step}th labelled)" if step > 1 else ""))
    if handles:
        fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    gains = [e.get("gain") for e in q.get("per_class") or [] if e.get("gain") is not None]
    parts = [
        f"{k} classes × {n} evaluated splits; red box: each class's own predicted best split "
        "(its class CUI argmax)"
    ]
    notes = []
    if gains:
        better = sum(1 for g in gains if g > 0)
        notes.append(
            f"own best beats the global best for {better} of {len(gains)} classes, "
            f"mean gain {100 * float(np.mean(gains)):+.1f} points"
        )
    if missing > 0:
        notes.append(f"{missing} of {n_own} classes' own best split not evaluated")
    if annotate:
        notes.append("cell values in %")
    if notes:
        parts.append("; ".join(notes))
    chars = int(width * 12)  # about what fits across the figure at this font size
    lines = textwrap.wrap(
        f"Per-class test accuracy after bottleneck retraining{_with_title(title)}", chars
    )
    for part in parts:
        lines += textwrap.wrap(part, chars)
    ax.set_title("\n".join(lines), fontsize=9.5)
    return save_figure(fig, out_dir, "per_class_accuracy")
