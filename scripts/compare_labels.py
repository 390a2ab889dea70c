#!/usr/bin/env python
"""Point labels: isplit's own placement (``isplit.figures.style.place_labels``) against
adjustText's ``adjust_text``, measured on the figures as they are rendered.

Each scenario is drawn twice, once per method, with the same data, and measured on the figure
as Agg lays it out (text extents from ``get_window_extent``, display pixels):

* ``label×label``: pairs of labels whose text boxes intersect;
* ``label×marker``: (label, marker) pairs that intersect, over every marker of the axes
  (scatter symbols at their drawn size, line markers; error-bar caps left out);
* ``label×line``: labels that a drawn line (Pareto step, fit, limit, curve) runs through;
* ``outside``: labels not wholly inside the axes frame;
* ``ambiguous``: labels without a leader line that lie nearer another labelled point than
  their own;
* ``crossings``: pairs of leader lines that cross;
* ``mean/max dist``: distance from a point to the nearest edge of its label, in points;
* ``ms``: wall time of the placement call (includes the layout pass both methods start with).

Scenarios: accuracy vs bytes and CUI vs accuracy drawn by ``isplit.figures.splits`` itself
(MobileNetV2- and ResNet-50-shaped splits, synthetic accuracies and CUI), a latency vs accuracy
panel with the LC/RC ends, a CUI-like line with every point labelled, and a dense cluster with
points on the axes edges. adjustText gets the obstacles ours gets (the labelled points, every
scatter marker, the lines), grey leader lines like ours, ``expand=EXPAND`` and an iteration cap
(see below). Writes ``<scenario>.png`` (ours left, adjustText right) into ``--out``, prints a
markdown table, then one JSON line with the totals per method. Needs ``pip install adjustText``.
Deterministic for a seed, except the wall times.

    .venv/bin/python scripts/compare_labels.py [--out results/validation/labels] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isplit.evaluation.pareto import pareto_front  # noqa: E402
from isplit.figures import latency, splits, style  # noqa: E402

OURS = style.place_labels
# adjust_text stops when no overlap is left; an iteration cap instead of its default 1 s time
# limit keeps the result independent of the machine's load
ITER_LIM = 1000
EXPAND = (1.3, 1.6)
LEADER = {"arrowstyle": "-", "color": "0.5", "lw": 0.6}  # as ours draws them

# (channels, side) of each probe point's activation at 224 px
MOBILENET_V2 = [(32, 112), (16, 112)] + [(24, 56)] * 2 + [(32, 28)] * 3 + [(64, 14)] * 4
MOBILENET_V2 += [(96, 14)] * 3 + [(160, 7)] * 3 + [(320, 7), (1280, 7)]
RESNET50 = [(64, 56)] + [(256, 56)] * 3 + [(512, 28)] * 4 + [(1024, 14)] * 6 + [(2048, 7)] * 3
RESNET50_LABELS = ["maxpool"] + [
    f"layer{s}_bottleneck_{b}" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for b in range(n)
]
INPUT_BYTES = 3 * 224 * 224


def place_labels_adjusttext(fig: Figure, ax, x, y, labels, *, fontsize=7, bold=None) -> None:
    """``style.place_labels``' contract through adjustText, given the same obstacles as ours
    (the labelled points, every scatter marker, every line) and the same leader lines."""
    from adjustText import adjust_text

    _renderer(fig)  # adjust_text measures the texts: the layout must be settled first
    px_per_pt = fig.dpi / 72.0
    bold = np.zeros(len(labels), dtype=bool) if bold is None else np.asarray(bold, dtype=bool)
    texts = []
    for xi, yi, lab, b in zip(x, y, labels, bold, strict=True):
        t = ax.text(xi, yi, lab, fontsize=fontsize, fontweight="bold" if b else "normal")
        t.set(ha="center", va="center", zorder=9)
        t.set_in_layout(False)  # as ours: labels must not move the constrained layout
        texts.append(t)
    # adjust_text takes extra obstacles as boxes in data coordinates. Lines as ours samples
    # them (a 4 px box every 4 px) cost it up to 50 s a figure; 12 px boxes every 12 px still
    # cover a line without gaps at a third of the boxes
    to_data = ax.transData.inverted()
    lines = style._line_obstacles(ax, step_px=12.0, half=6.0)
    boxes = style._marker_boxes(ax, px_per_pt) + lines
    adjust_text(
        texts,
        x=np.asarray(x, dtype=float),
        y=np.asarray(y, dtype=float),
        objects=[b.transformed(to_data) for b in boxes] or None,
        ax=ax,
        # more room than the default (1.05, 1.2) around each label: with the default the
        # labels end up touching markers and each other in every dense scenario
        expand=EXPAND,
        iter_lim=ITER_LIM,
        min_arrow_len=5 * px_per_pt,
        arrowprops=LEADER,
    )


METHODS = {"ours": OURS, "adjustText": place_labels_adjusttext}


# ---------------------------------------------------------------------------------------------
# scenarios: each draws one figure and calls style.place_labels once (directly or through the
# figure code), with data from its own generator so both methods label the same points


def _splits_table(shapes, labels, rng, *, acc0, span):
    """A ``splits.parquet``-like table, candidate-kind masks and ``quality.json``-like dict."""
    n = len(shapes)
    t = np.linspace(0, 1, n)
    act = np.array([4 * c * s * s for c, s in shapes], dtype=float)
    log_cui = -3 + 1.5 * np.sin(3 * np.pi * t) * t + 0.2 * rng.normal(size=n)
    acc = np.clip(acc0 + span * np.sqrt(t) + 0.02 * rng.normal(size=n), 0, 1)
    layers = [f"features.{i}" for i in range(n)]
    df = pd.DataFrame(
        {
            "layer": layers,
            "layer_index": range(n),
            "label": labels,
            "log10_cui": log_cui,
            "top1": acc,
            "top1_lo": acc - 0.03,
            "top1_hi": acc + 0.02,
            "bytes": [max(1, c // 4) * s * s + 8 for c, s in shapes],
        }
    )
    left, right = np.r_[-np.inf, log_cui[:-1]], np.r_[log_cui[1:], -np.inf]
    kinds = {
        "cde": act < np.r_[4 * INPUT_BYTES, act[:-1]],
        "isplit_max": (log_cui > left) & (log_cui >= right),
        "isplit_best": np.arange(n) == int(np.argmax(log_cui)),
    }
    best = int(np.argmax(acc))
    rho = pd.Series(log_cui).corr(pd.Series(acc), method="spearman")
    q = {
        "metric": "top1",
        "n_points": n,
        "measured_best": {"layer": layers[best], "label": labels[best]},
        "finetuned": {"test": {"value": float(min(1.0, acc.max() + 0.01))}},
        "predictors": {"cui_mean": {"spearman": {"value": rho, "ci": [rho - 0.3, rho + 0.2]}}},
    }
    return df, kinds, q


# the splits figures are drawn by their own (private) functions, so the labels meet exactly the
# markers, lines, limits and layout of the real figures


def mobilenet_bytes(rng):
    df, _, q = _splits_table(MOBILENET_V2, [f"f{i}" for i in range(19)], rng, acc0=0.55, span=0.35)
    splits._accuracy_vs_bytes(df, q, " — mobilenet_v2, 224 px", None)


def mobilenet_cui(rng):
    df, kinds, q = _splits_table(
        MOBILENET_V2, [f"f{i}" for i in range(19)], rng, acc0=0.55, span=0.35
    )
    splits._cui_vs_accuracy(df, kinds, q, " — mobilenet_v2, 224 px", None)


def resnet_bytes(rng):
    # whole stages share one activation shape, so their points stack at one x
    df, _, q = _splits_table(RESNET50, RESNET50_LABELS, rng, acc0=0.62, span=0.2)
    splits._accuracy_vs_bytes(df, q, " — resnet50, 224 px", None)


def resnet_cui(rng):
    df, kinds, q = _splits_table(RESNET50, RESNET50_LABELS, rng, acc0=0.62, span=0.2)
    splits._cui_vs_accuracy(df, kinds, q, " — resnet50, 224 px", None)


def latency_panel(rng):
    """One profile's panel of ``latency_accuracy`` (a slow link, so splits bunch up at low
    latency), its splits and ends all labelled."""
    df, _, _ = _splits_table(MOBILENET_V2, [f"f{i}" for i in range(19)], rng, acc0=0.55, span=0.35)
    nbytes = np.r_[df["bytes"].to_numpy(float), 8, INPUT_BYTES, 18_000]
    compute = np.r_[0.002 * np.arange(1, 20), 0.09, 0.0, 0.004]
    p95 = (0.02 + 8 * nbytes / 5e6 + compute) * np.exp(0.05 * rng.normal(size=len(nbytes)))
    acc = np.r_[df["top1"].to_numpy(), 0.912, 0.912, 0.897]
    names = [*df["label"], "LC", "RC-raw", "RC-jpeg"]
    max_p95, min_acc = 0.08, 0.8
    ok = (p95 <= max_p95) & (acc >= min_acc)

    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    s = slice(0, 19)
    latency.SPLIT.scatter(ax, p95[s][ok[s]], acc[s][ok[s]], facecolors=latency.SPLIT.edge)
    latency.SPLIT.scatter(ax, p95[s][~ok[s]], acc[s][~ok[s]])
    for i, mark in ((19, latency.LC_MARK), (20, latency.RC_MARK), (21, latency.RC_MARK)):
        mark.scatter(ax, [p95[i]], [acc[i]], facecolors=mark.edge if ok[i] else "none")
    front = pareto_front(cost=p95, value=acc)
    ax.step(p95[front], acc[front], where="post", color=latency.FRONT.edge, lw=1.4, zorder=2)
    latency.FRONT.scatter(ax, p95[front], acc[front])
    pick = int(np.flatnonzero(ok)[np.argmax(acc[ok])])
    style.PICK.scatter(ax, [p95[pick]], [acc[pick]], scale=latency.PICK_SCALE, zorder=5)
    ax.axvline(max_p95, color="grey", ls="--", lw=1)
    ax.axhline(min_acc, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(p95.min() / 1.5, p95.max() * 1.5)
    ax.set_ylim(acc.min() - 0.03, acc.max() + 0.03)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title("lte: 5 Mb/s, 20 ms one-way\nTCP, 1 % loss", fontsize=10)
    ax.set_xlabel("p95 frame latency (s, log)")
    ax.set_ylabel("validation top-1 accuracy")
    style.place_labels(fig, ax, p95, acc, names)
    style.save_figure(fig, None, "latency_panel")


def cui_line(rng):
    """A CUI-like curve over the probe points with every point labelled: labels against a
    line they must not sit on, points touching the top and bottom of the axes."""
    n = 22
    t = np.linspace(0, 1, n)
    y = -3 + 1.5 * np.sin(3 * np.pi * t) * t + 0.15 * rng.normal(size=n)
    x = np.arange(n, dtype=float)
    fig = Figure(figsize=(9.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, y, color="tab:orange", lw=2, marker="o", ms=4, zorder=3)
    left, right = np.r_[-np.inf, y[:-1]], np.r_[y[1:], -np.inf]
    flags = {"cde": np.zeros(n, bool), "isplit_max": (y > left) & (y >= right)}
    flags["isplit_best"] = np.arange(n) == int(np.argmax(y))
    style.mark_kinds(ax, x, y, flags)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(y.min() - 0.02 * np.ptp(y), y.max() + 0.02 * np.ptp(y))
    ax.set_ylabel(style.CUI_AXIS)
    ax.set_xlabel("probe point")
    ax.grid(alpha=0.3)
    style.place_labels(fig, ax, x, y, [f"f{i}" for i in range(n)])
    style.save_figure(fig, None, "cui_line")


def dense_cluster(rng):
    """24 points on log x: 14 in one tight cluster, 6 spread, 4 on the axes corners and edges."""
    cx = 10 ** (4.3 + 0.12 * rng.normal(size=14))
    cy = 0.82 + 0.006 * rng.normal(size=14)
    sx = 10 ** rng.uniform(2.5, 5.5, size=6)
    sy = rng.uniform(0.7, 0.9, size=6)
    x = np.r_[cx, sx, 10**2, 10**6, 10**2, 10**6]
    y = np.r_[cy, sy, 0.68, 0.92, 0.92, 0.80]
    names = [f"f{i}" for i in range(14)] + ["layer3.4", "layer2.1", "LC", "RC-jpeg", "f17", "f18"]
    names += ["RC-raw", "layer4.2", "f20", "f21"]
    fig = Figure(figsize=(8.5, 6.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    on = np.zeros(len(x), dtype=bool)
    on[pareto_front(cost=x, value=y)] = True
    ax.scatter(x[~on], y[~on], s=36, color="0.55", zorder=3)
    ax.scatter(x[on], y[on], s=70, color="tab:red", edgecolor="black", lw=0.6, zorder=5)
    ax.step(x[on], y[on], where="post", color="tab:red", lw=1.5, zorder=4)
    # no margin: the corner points sit on the frame, where labels have the least room
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(y.min(), y.max())
    ax.grid(alpha=0.3)
    ax.set_xlabel("bytes (log)")
    ax.set_ylabel("accuracy")
    style.place_labels(fig, ax, x, y, names, bold=on)
    style.save_figure(fig, None, "dense_cluster")


SCENARIOS = {
    "mobilenet_accuracy_vs_bytes": mobilenet_bytes,
    "mobilenet_cui_vs_accuracy": mobilenet_cui,
    "resnet50_accuracy_vs_bytes": resnet_bytes,
    "resnet50_cui_vs_accuracy": resnet_cui,
    "latency_panel": latency_panel,
    "cui_line": cui_line,
    "dense_cluster": dense_cluster,
}


# ---------------------------------------------------------------------------------------------
# drawing with one method, and measuring what it drew


@dataclass
class Placed:
    fig: Figure
    ax: object
    texts: list  # one Text per label, in the order of ``points``
    points: np.ndarray  # data coordinates
    seconds: float


@contextmanager
def _method(place):
    """``style.place_labels`` replaced by ``place`` (the figure code looks it up on the module)
    and ``style.save_figure`` by a collector; yields the placements made."""
    placed: list[Placed] = []

    def recording(fig, ax, x, y, labels, *, fontsize=7, bold=None):
        before = {id(t) for t in ax.texts}
        t0 = time.perf_counter()
        place(fig, ax, x, y, labels, fontsize=fontsize, bold=bold)
        seconds = time.perf_counter() - t0
        new = {t.get_text(): t for t in ax.texts if id(t) not in before and t.get_text()}
        pts = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
        placed.append(Placed(fig, ax, [new[lab] for lab in labels], pts, seconds))

    saved = style.place_labels, style.save_figure
    style.place_labels, style.save_figure = recording, lambda *a, **k: []
    try:
        yield placed
    finally:
        style.place_labels, style.save_figure = saved


def _renderer(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return canvas.get_renderer()


def _area(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _box_distance(p, b) -> float:
    dx = max(b.x0 - p[0], 0.0, p[0] - b.x1)
    dy = max(b.y0 - p[1], 0.0, p[1] - b.y1)
    return math.hypot(dx, dy)


def _markers(ax, px_per_pt: float) -> list:
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    out = []
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            pts = c.get_offset_transform().transform(c.get_offsets())
            half = np.sqrt(np.resize(c.get_sizes(), len(pts))) / 2 * px_per_pt
            for (x, y), h in zip(pts, half, strict=True):
                out.append(Bbox.from_extents(x - h, y - h, x + h, y + h))
    for line in ax.get_lines():
        # "_" and "|" are error-bar caps, which neither method is asked to avoid
        if line.get_marker() in (None, "", " ", "None", "none", "_", "|"):
            continue
        xy = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
        pts = line.get_transform().transform(xy)
        h = line.get_markersize() / 2 * px_per_pt
        out += [Bbox.from_extents(x - h, y - h, x + h, y + h) for x, y in pts]
    return out


def _line_segments(ax) -> np.ndarray:
    """Every drawn segment of the axes' lines, display pixels, as rows x0, y0, x1, y1."""
    from matplotlib.cbook import STEP_LOOKUP_MAP

    segs = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "none", "", " "):
            continue
        xd = np.asarray(line.get_xdata(), dtype=float)
        yd = np.asarray(line.get_ydata(), dtype=float)
        ds = line.get_drawstyle()
        if ds in STEP_LOOKUP_MAP and ds != "default":
            xd, yd = STEP_LOOKUP_MAP[ds](xd, yd)
        pts = line.get_transform().transform(np.column_stack([xd, yd]))
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts) > 1:
            segs.append(np.hstack([pts[:-1], pts[1:]]))
    return np.vstack(segs) if segs else np.empty((0, 4))


def _hits(segs: np.ndarray, b) -> bool:
    """Whether any segment passes through box ``b`` (Liang–Barsky clipping)."""
    x0, y0, dx, dy = segs[:, 0], segs[:, 1], segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1]
    lo, hi = np.zeros(len(segs)), np.ones(len(segs))
    inside = np.ones(len(segs), dtype=bool)
    for p, q in ((-dx, x0 - b.x0), (dx, b.x1 - x0), (-dy, y0 - b.y0), (dy, b.y1 - y0)):
        parallel = p == 0
        inside &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = q / p
        lo = np.where(~parallel & (p < 0), np.maximum(lo, r), lo)
        hi = np.where(~parallel & (p > 0), np.minimum(hi, r), hi)
    return bool((inside & (lo < hi)).any())


def _leader(ax, text):
    """(point end, label end) of the leader line drawn for ``text``, display pixels, or None."""
    patch = getattr(text, "arrow_patch", None)  # ours: an Annotation's own arrow
    if patch is None:  # adjustText: a FancyArrowPatch attached to the text
        patch = next((p for p in ax.patches if getattr(p, "patchA", None) is text), None)
    if patch is None:
        return None
    v = patch.get_transform().transform_path(patch.get_path()).vertices
    return v[-1], v[0]


def _cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    return (
        orient(q1, q2, p1) * orient(q1, q2, p2) < 0 and orient(p1, p2, q1) * orient(p1, p2, q2) < 0
    )


def measure(p: Placed) -> dict:
    from matplotlib.text import Text

    renderer = _renderer(p.fig)
    ax, px_per_pt = p.ax, p.fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in p.texts]  # the text, not its leader
    pts = ax.transData.transform(p.points)
    markers, segs = _markers(ax, px_per_pt), _line_segments(ax)
    leaders = [_leader(ax, t) for t in p.texts]
    n = len(boxes)
    dist = np.array([[_box_distance(pts[j], boxes[i]) for j in range(n)] for i in range(n)])
    own = np.diag(dist).copy()
    np.fill_diagonal(dist, np.inf)
    tol = 0.5  # px: a box on the frame line is inside
    outside = [
        b.x0 < frame.x0 - tol
        or b.x1 > frame.x1 + tol
        or b.y0 < frame.y0 - tol
        or b.y1 > frame.y1 + tol
        for b in boxes
    ]
    drawn = [s for s in leaders if s is not None]
    counts = {
        "label×label": [_area(boxes[i], boxes[j]) > 0 for i in range(n) for j in range(i)],
        "label×marker": [_area(b, m) > 0 for b in boxes for m in markers],
        "label×line": [_hits(segs, b) for b in boxes] if len(segs) else [],
        "outside": outside,
        "ambiguous": [leaders[i] is None and dist[i].min() < own[i] for i in range(n)],
        "leaders": [True] * len(drawn),
        "crossings": [_cross(*a, *b) for i, a in enumerate(drawn) for b in drawn[:i]],
    }
    return {
        "labels": n,
        **{k: int(sum(map(bool, v))) for k, v in counts.items()},
        "mean dist": float(own.mean() / px_per_pt),
        "max dist": float(own.max() / px_per_pt),
        "ms": 1e3 * p.seconds,
    }


def _png(fig: Figure):
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=style.DPI, bbox_inches="tight", metadata={"Software": None})
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def side_by_side(images: dict, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    head = 40
    w = sum(im.width for im in images.values())
    h = max(im.height for im in images.values()) + head
    out = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=26)
    x = 0
    for name, im in images.items():
        out.paste(im, (x, head))
        draw.text((x + 10, 6), name, fill="black", font=font)
        x += im.width
        draw.line([(x - 1, 0), (x - 1, h)], fill="grey", width=2)
    out.save(path, optimize=False)


# ---------------------------------------------------------------------------------------------


COLUMNS = ["labels", "label×label", "label×marker", "label×line", "outside", "ambiguous"]
COLUMNS += ["leaders", "crossings", "mean dist", "max dist", "ms"]


def _row(name, method, m) -> str:
    cells = [name, method] + [
        f"{m[c]:.1f}" if isinstance(m[c], float) else str(m[c]) for c in COLUMNS
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    import adjustText

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results/validation/labels"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, totals = [], {m: [] for m in METHODS}
    titles = {"ours": "ours: isplit place_labels"}
    titles["adjustText"] = f"adjustText {adjustText.__version__} adjust_text"
    for k, (name, draw) in enumerate(SCENARIOS.items()):
        images = {}
        for method, place in METHODS.items():
            with _method(place) as placed:
                draw(np.random.default_rng([args.seed, k]))
            (p,) = placed
            m = measure(p)
            rows.append(_row(name, method, m))
            totals[method].append(m)
            images[titles[method]] = _png(p.fig)
        side_by_side(images, out / f"{name}.png")

    print("| scenario | method | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    print("\n".join(rows))
    summary = {}
    for method, ms in totals.items():
        n = sum(m["labels"] for m in ms)
        s = {c: sum(m[c] for m in ms) for c in COLUMNS if c not in ("mean dist", "max dist")}
        # over all labels, not a mean of the scenario means
        s["mean dist"] = sum(m["mean dist"] * m["labels"] for m in ms) / n
        s["max dist"] = max(m["max dist"] for m in ms)
        summary[method] = s
        print(_row("**total**", method, s))
    print(
        json.dumps(
            {
                "seed": args.seed,
                "adjustText": adjustText.__version__,
                "iter_lim": ITER_LIM,
                "out": str(out),
                "totals": {k: {c: round(v, 2) for c, v in s.items()} for k, s in summary.items()},
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
