"""What the figures share: saving, the candidate-kind symbols, axis formatting, label placement.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``: no
global figure state, no GUI backend; ``Figure.savefig`` renders PNG with Agg and PDF with the
PDF backend whatever ``MPLBACKEND`` says. Nothing here imports torch: every figure is drawn from
the tables the stages wrote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from isplit.io.files import replacing
from isplit.io.tables import FLAG_COLUMNS, read_candidates

DPI = 150
CUI_AXIS = "CUI (log10 of mean layer Grad-CAM, a.u.)"


def finite(v) -> bool:
    return v is not None and math.isfinite(float(v))


def stat_text(v) -> str:
    return f"{v:.2f}".replace("-", "\u2212") if finite(v) else "n/a"


def ci_text(s: dict | None) -> str:
    """``value [lo, hi]`` of a quality.json statistic, ``n/a`` where it has no value."""
    s = s or {}
    ci = s.get("ci") or [None, None]
    if not finite(s.get("value")):
        return "n/a"
    if not (finite(ci[0]) and finite(ci[1])):
        return stat_text(s["value"])
    return f"{stat_text(s['value'])} [{stat_text(ci[0])}, {stat_text(ci[1])}]"


def point_with_interval(ax, entry: dict | None, y: float, *, scale: float = 1.0, **kw) -> None:
    """A statistic's value as a marker at height ``y`` and its interval as a line, both times
    ``scale``; nothing where it has no value. ``kw``: ``color``, ``marker``, ``label``."""
    s = entry or {}
    v, ci = s.get("value"), s.get("ci") or [None, None]
    if not finite(v):
        return
    color = kw.get("color", "tab:blue")
    ax.plot([scale * v], [y], kw.get("marker", "o"), color=color, zorder=3, label=kw.get("label"))
    if finite(ci[0]) and finite(ci[1]):
        ax.plot([scale * ci[0], scale * ci[1]], [y, y], color=color, lw=kw.get("lw", 2))


def read_flags(path: str | Path):
    """``candidates_all.tsv`` with typed flags; a table without them (``candidates.tsv``, the
    selected points only) is refused, since every probe point needs its flags here."""
    cands = read_candidates(path)
    missing = [c for c in (*FLAG_COLUMNS, "class_best") if c not in cands.columns]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} column: pass candidates_all.tsv")
    return cands


# what each format's file would otherwise record that changes from run to run
_METADATA = {".png": {"Software": None}, ".pdf": {"CreationDate": None, "ModDate": None}}


def figure_paths(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` of one figure, checked: at least one, each ending in .png or .pdf (the format
    it is drawn in); raises ValueError naming the first wrong one."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("a figure needs at least one path to write")
    for path in paths:
        if path.suffix.lower() not in _METADATA:
            raise ValueError(f"{path}: a figure is written as .png or .pdf")
    return paths


def save_figure(fig: Figure, paths: Sequence[str | Path]) -> list[Path]:
    """``fig`` into each of ``paths``, in the format its suffix names, each file whole or not
    at all; the same figure gives the same bytes (no dates or software versions in the files)."""
    paths = figure_paths(paths)
    for path in paths:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight", metadata=_METADATA[path.suffix.lower()])
    return paths


def message_figure(text: str, paths: Sequence[str | Path]) -> list[Path]:
    """A figure that says why there is nothing to draw: the workflow still expects the file."""
    fig = Figure(figsize=(6, 2))
    fig.text(0.5, 0.5, text, ha="center", va="center")
    return save_figure(fig, paths)


@dataclass(frozen=True)
class Mark:
    """One symbol, drawn with :meth:`scatter` and shown in hand-made legends with
    :meth:`handle`, so a legend entry cannot drift from the points it stands for."""

    marker: str
    face: str
    edge: str
    area: float  # scatter size, points²
    lw: float = 1.0
    zorder: float = 5

    def scatter(self, ax, x, y, *, scale: float = 1.0, **kw):
        """``ax.scatter`` in this symbol; ``kw`` overrides (a smaller ``scale``, a ``zorder``)."""
        opts = {"marker": self.marker, "facecolors": self.face, "edgecolors": self.edge}
        opts |= {"s": self.area * scale, "linewidths": self.lw, "zorder": self.zorder}
        return ax.scatter(x, y, **(opts | kw))

    def handle(self, *, scale: float = 1.0, **kw):
        """A legend proxy (no data) in this symbol, as large as :meth:`scatter` draws it."""
        from matplotlib.lines import Line2D

        opts = {"marker": self.marker, "markerfacecolor": self.face, "ls": "none"}
        opts |= {"markeredgecolor": self.edge, "markeredgewidth": self.lw}
        return Line2D([], [], markersize=math.sqrt(self.area * scale), **(opts | kw))


# The candidate kinds keep one symbol in every figure (cui_curve, accuracy_by_split,
# cui_vs_accuracy), so a reader learns them once.
CDE = Mark("s", "none", "black", 170, lw=1.3, zorder=5)
ISPLIT_MAX = Mark("*", "tab:red", "tab:red", 220, zorder=6)
# the split a method picks: I-SPLIT's predicted best, or the QoS recommendation
PICK = Mark("*", "gold", "black", 520, lw=1.1, zorder=7)
MEASURED_BEST = Mark("o", "none", "tab:green", 380, lw=2.0, zorder=8)
# the options without a split: LC (the whole model on the device), RC (the camera frame sent)
LC_MARK = Mark("s", "none", "tab:green", 46, zorder=4)
RC_MARK = Mark("D", "none", "tab:green", 46, zorder=4)

KIND_LABELS = {
    "cde": "CDE candidate (size drop)",
    "isplit_max": "I-SPLIT candidate (CUI local maximum)",
    "isplit_best": "I-SPLIT predicted best split",
}
KIND_MARKS = {"cde": CDE, "isplit_max": ISPLIT_MAX, "isplit_best": PICK}


def mark_kinds(ax, x, y, flags: dict[str, np.ndarray]) -> None:
    """Mark the points of each candidate kind (``flags``: kind → boolean mask over x, y)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    for kind, mark in KIND_MARKS.items():
        m = np.asarray(flags[kind], dtype=bool)
        if m.any():
            mark.scatter(ax, x[m], y[m], label=KIND_LABELS[kind])


def legend_below(fig: Figure, handles=None, labels=None, *, ncol: int = 3, **kw) -> None:
    """One legend under the axes, outside them (needs the constrained layout)."""
    kw = {"fontsize": 8, "frameon": False, "markerscale": 0.6, **kw}
    given = {"handles": handles, "labels": labels}
    kw |= {k: v for k, v in given.items() if v is not None}
    fig.legend(loc="outside lower center", ncol=ncol, **kw)


def run_title(meta: dict, keys=("variant", "target")) -> str:
    """The run a figure shows, from the curve's metadata: model, input size and ``keys``."""
    parts = [str(meta["model"])] if meta.get("model") else []
    if (meta.get("input") or {}).get("image_size"):
        parts.append(f"{meta['input']['image_size']} px")
    parts += [f"{k} {meta[k]}" for k in keys if meta.get(k)]
    return ", ".join(parts)


def probe_ticks(ax, labels) -> None:
    """One slanted tick label per probe point, x = 0 … n−1."""
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)


def sparse_yticks(ax, names, most: int, fontsize: float = 6) -> int:
    """Label every k-th row of a heatmap so at most ``most`` labels show; returns k."""
    step = max(1, math.ceil(len(names) / most))
    ax.set_yticks(range(0, len(names), step))
    ax.set_yticklabels([names[i] for i in range(0, len(names), step)], fontsize=fontsize)
    return step


def pct_axis(axis) -> None:
    """Fractions shown as percent, with as many decimals as the visible range needs."""
    from matplotlib.ticker import PercentFormatter

    lo, hi = axis.get_view_interval()
    span = 100 * abs(hi - lo)
    decimals = 0 if span >= 8 else 1 if span >= 0.8 else 2
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


def si(v: float, unit: str) -> str:
    """``v`` with a decimal prefix: ``si(1.5e6, "B")`` → ``1.5 MB``."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:g} {prefix}{unit}"
    return f"{v:g} {unit}"


def place_labels(fig: Figure, ax, x, y, labels, *, fontsize=7, bold=None, colors=None) -> None:
    """Label points without overlapping each other, the points, the lines in ``ax`` or the axes
    frame: try a ring of offsets around each point (nearest first) and keep the first free
    one, else the least bad; a label moved away from its point gets a thin leader line, and
    leader lines may not cross."""
    from matplotlib.transforms import Bbox

    renderer = _agg_renderer(fig)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pts = ax.transData.transform(np.column_stack([x, y]))
    px_per_pt = fig.dpi / 72.0
    r = 7.0 * px_per_pt  # room around each labelled point, whatever its own marker's size
    occupied = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in pts]
    occupied += _marker_boxes(ax, px_per_pt) + _line_obstacles(ax)
    frame = ax.get_window_extent(renderer)
    # nearest first, diagonals before sides: a label off the diagonal clears the point's
    # horizontal and vertical neighbours, which lie on the same split or the same accuracy.
    # The first ring (10 pt: 7.07 pt along each axis on the diagonal) is the nearest that
    # clears the room reserved around the point, and needs no leader line.
    offsets = []
    for dist in (10, 14, 22, 34):
        for ang in (45, -45, 135, -135, 90, -90, 0, 180, 22, -22, 158, -158):
            t = math.radians(ang)
            offsets.append((dist * math.cos(t), dist * math.sin(t)))
    bold = np.zeros(len(labels), dtype=bool) if bold is None else np.asarray(bold, dtype=bool)
    colors = ["black"] * len(labels) if colors is None else list(colors)
    sizes = []
    for lab, b in zip(labels, bold, strict=True):
        t = ax.text(0, 0, lab, fontsize=fontsize, fontweight="bold" if b else "normal")
        e = t.get_window_extent(renderer)
        sizes.append((e.width, e.height))
        t.remove()
    leaders: list[tuple] = []
    for i in np.argsort(-pts[:, 1], kind="stable"):  # top to bottom: a fixed, stable order
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
            if math.hypot(dx, dy) > 11:
                cost += 5e3 * sum(_segments_cross(*seg, *other) for other in leaders)
            cost += 1e-3 * math.hypot(dx, dy)  # ties: the nearer
            if cost < best_cost:
                best, best_cost = (bb, dx, dy, ha, va, seg), cost
            if cost < 1:
                break
        bb, dx, dy, ha, va, seg = best
        leader = math.hypot(dx, dy) > 11
        ann = ax.annotate(
            labels[i],
            (x[i], y[i]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=fontsize,
            fontweight="bold" if bold[i] else "normal",
            color=colors[i],
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


def _marker_boxes(ax, px_per_pt: float) -> list:
    """Display-space boxes around every scatter marker of ``ax`` (the large stars, squares and
    rings included), for label placement to avoid."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    out = []
    for c in ax.collections:
        if not isinstance(c, PathCollection) or not len(c.get_offsets()):
            continue
        # masked offsets (NaN data) become NaN here and are skipped below
        pts = c.get_offset_transform().transform(np.ma.filled(c.get_offsets(), np.nan))
        sizes = np.resize(c.get_sizes(), len(pts))
        widths = np.resize(c.get_linewidths(), len(pts))
        # a marker of size s (points²) spans sqrt(s) points, plus half its outline
        half = (np.sqrt(sizes) + widths) / 2 * px_per_pt
        for (px, py), h in zip(pts, half, strict=True):
            if np.isfinite([px, py]).all():
                out.append(Bbox.from_extents(px - h, py - h, px + h, py + h))
    return out


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
