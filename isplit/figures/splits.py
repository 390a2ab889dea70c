"""The measured side: accuracy of every evaluated split after bottleneck retraining (PNG + PDF).

:func:`split_figures` reads ``splits.parquet`` (one row per evaluated split), ``curve.parquet``,
``candidates_all.tsv`` (the candidate kinds, as typed flags) and ``quality.json``, and draws:

* ``accuracy_by_split``: accuracy per evaluated split over all probe points with the CUI curve on
  a second y axis, the candidate kinds in the symbols of ``cui_curve``, the measured best ringed
  and the fine-tuned model's accuracy without a split (if known) dashed.
* ``cui_vs_accuracy``: log10 CUI vs accuracy, one labelled point per split, with Spearman ρ
  (and its interval) of CUI and of the CDE size baseline.
* ``accuracy_vs_bytes``: accuracy vs bytes sent per image (log) with the Pareto front
  (:func:`isplit.evaluation.pareto.pareto_front`) as a step line.
* ``per_class_accuracy`` (drawn by :mod:`isplit.figures.per_class`): heatmap classes × splits,
  each class's own predicted best split boxed, the global predicted best column dashed.
* ``predictors``: every zero-retraining predictor's Spearman ρ with the accuracy after
  retraining and the regret of its choice, with 95 % intervals.

Accuracies are the experiment's ``metric`` (top-1 or balanced accuracy) on test, means over the
retraining seeds, drawn with their 95 % bootstrap intervals (images and seeds); the measured
best is the split chosen on validation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit.evaluation.pareto import pareto_front
from isplit.figures import per_class, style
from isplit.figures.predictors import predictors_figure
from isplit.io.tables import read_metadata
from isplit.latency.compute import LC, LC_RESULT_BYTES
from isplit.recommend.candidates import CAMERA_PREFIX

METRIC_NAMES = {"top1": "top-1 accuracy", "balanced_accuracy": "balanced accuracy"}


def split_figures(
    *,
    splits_path: str | Path,
    curve_path: str | Path,
    candidates_path: str | Path,
    quality_path: str | Path,
    accuracy_by_split: Sequence[str | Path],
    cui_vs_accuracy: Sequence[str | Path],
    accuracy_vs_bytes: Sequence[str | Path],
    per_class_accuracy: Sequence[str | Path],
    predictors: Sequence[str | Path],
    camera_path: str | Path | None = None,
) -> list[Path]:
    """Draw each figure into its paths (the format from each path's suffix, .png or .pdf);
    return the paths written.

    ``candidates_path`` is ``candidates_all.tsv`` (every probe point with its flags);
    ``camera_path`` (``camera.parquet``) adds the camera's own options (raw frame, JPEG) beside
    LC to the accuracy-vs-bytes figure."""
    out = {
        "accuracy_by_split": accuracy_by_split,
        "cui_vs_accuracy": cui_vs_accuracy,
        "accuracy_vs_bytes": accuracy_vs_bytes,
        "per_class_accuracy": per_class_accuracy,
        "predictors": predictors,
    }
    out = {stem: style.figure_paths(p) for stem, p in out.items()}  # all, before drawing any
    splits = pd.read_parquet(splits_path).sort_values("layer_index", kind="stable")
    splits = splits.reset_index(drop=True)
    if not len(splits):
        raise ValueError(f"{splits_path}: no evaluated splits to plot")
    curve = pd.read_parquet(curve_path)
    q = json.loads(Path(quality_path).read_text())
    title = style.run_title(read_metadata(curve_path))
    title = f" — {title}" if title else ""
    kinds = _kinds(splits, style.read_flags(candidates_path))
    paths = _accuracy_by_split(splits, curve, kinds, q, title, out["accuracy_by_split"])
    paths += _cui_vs_accuracy(splits, kinds, q, title, out["cui_vs_accuracy"])
    camera = pd.read_parquet(camera_path) if camera_path else None
    ends = _no_split_options(q, camera)
    paths += _accuracy_vs_bytes(splits, ends, q, title, out["accuracy_vs_bytes"])
    paths += per_class.per_class_figure(splits, q, title, out["per_class_accuracy"])
    paths += predictors_figure(q, title, out["predictors"])
    return paths


def _metric(q: dict) -> tuple[str, str]:
    """(column of splits.parquet, axis label) of the experiment's accuracy metric."""
    m = q.get("metric", "top1")
    return m, f"test {METRIC_NAMES[m]} after bottleneck retraining (%)"


def _error_bars(ax, x, splits, m, **kw) -> None:
    """95 % intervals (images and seeds) of ``splits[m]`` at ``x``."""
    y = splits[m].to_numpy(np.float64)
    lo, hi = splits[m + "_lo"].to_numpy(np.float64), splits[m + "_hi"].to_numpy(np.float64)
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    err = np.vstack([y - lo, hi - y])[:, ok]
    ax.errorbar(np.asarray(x)[ok], y[ok], yerr=err, fmt="none", ecolor="tab:blue", **kw)


def _kinds(splits: pd.DataFrame, cands: pd.DataFrame) -> dict[str, np.ndarray]:
    """Candidate kind → mask over the rows of ``splits``."""
    flags = cands.set_index("layer")[list(style.KIND_MARKS)]
    flags = flags.reindex(splits["layer"].astype(str), fill_value=False)
    return {k: flags[k].to_numpy(bool) for k in style.KIND_MARKS}


def _short_label(label: str) -> str:
    """Point labels in scatter plots: ``layer3_bottleneck_5`` → ``layer3.5``."""
    return re.sub(r"^(layer\d+)_(?:bottleneck|basicblock)_(\d+)$", r"\1.\2", str(label))


def _corr_text(q: dict, key: str, name: str) -> str:
    e = q.get("predictors", {}).get(key, {})
    return f"{name}: ρ = {style.ci_text(e.get('rho'))}, n = {q.get('n_points', 'n/a')}"


def _predicted_line(q: dict) -> str:
    cui, mb = q.get("predictors", {}).get("cui_mean", {}), q.get("measured_best")
    if not mb:
        return ""
    line = f"measured best (chosen on validation): {mb['label']}"
    if cui.get("choice"):
        regret = cui.get("regret") or {}
        choice = cui.get("choice_label") or cui["choice"]
        loss = style.ci_text(_pct(regret))
        line += f"; I-SPLIT's choice {choice} loses {loss} points of test accuracy"
    return line


def _pct(s: dict) -> dict:
    """A quality.json summary in percentage points."""
    ci = s.get("ci") or [None, None]
    scale = [100 * v if style.finite(v) else v for v in ci]
    return {"value": 100 * s["value"] if style.finite(s.get("value")) else None, "ci": scale}


def _mark_measured_best(ax, x, y, layers, q: dict) -> None:
    best = (q.get("measured_best") or {}).get("layer")
    hits = [i for i, layer in enumerate(layers) if layer == best]
    if hits and np.isfinite(y[hits[0]]):
        i = hits[0]
        lab = f"measured best, chosen on validation: {q['measured_best']['label']}"
        style.MEASURED_BEST.scatter(ax, [x[i]], [y[i]], label=lab)


def _finetuned(ax, q: dict, lw: float) -> float | None:
    """The fine-tuned model's accuracy without a split, dashed across ``ax`` (if known)."""
    ft = ((q.get("finetuned") or {}).get("test") or {}).get("value")
    if not style.finite(ft):
        return None
    ft = float(ft)
    lab = f"fine-tuned model, no split ({100 * ft:.1f}%)"
    ax.axhline(ft, color="0.3", ls="--", lw=lw, zorder=2, label=lab)
    return ft


def _pad(set_lim, v, *, flat: float, least: float = 0.0, hi: float = 0.15) -> None:
    """Limits around ``v`` with room for the point labels; a range of one value is taken as
    ``flat`` wide, so a single split does not sit on a zero-height axis."""
    r = flat if np.ptp(v) == 0 else max(np.ptp(v), least)
    set_lim(v.min() - 0.12 * r, v.max() + hi * r)


def _accuracy_by_split(splits, curve, kinds, q, title, paths) -> list[Path]:
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
    lab = "CUI curve (right axis, all probe points)"
    ax2.plot(cx[fin], cy[fin], color="tab:orange", lw=2, alpha=0.75, marker="o", ms=3, label=lab)
    ax2.set_ylabel(style.CUI_AXIS, color="tab:orange")
    ax2.tick_params(axis="y", colors="tab:orange")

    m, acc_axis = _metric(q)
    sx = np.array([pos[li] for li in splits["layer_index"].astype(int)], dtype=float)
    sy = splits[m].to_numpy(np.float64)
    lab = f"test {METRIC_NAMES[m]} after bottleneck retraining, 95 % interval (evaluated splits)"
    ax.plot(sx, sy, color="tab:blue", lw=1.8, marker="o", ms=6, zorder=4, label=lab)
    _error_bars(ax, sx, splits, m, elinewidth=1.2, capsize=3, zorder=4)
    style.mark_kinds(ax, sx, sy, kinds)
    _mark_measured_best(ax, sx, sy, splits["layer"].astype(str).tolist(), q)
    ft = _finetuned(ax, q, lw=1.3)
    v = np.concatenate([sy, splits[m + "_lo"], splits[m + "_hi"]]).astype(np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (v.min(), v.max()) if len(v) else (0.0, 1.0)
    if ft is not None:
        lo, hi = min(lo, ft), max(hi, ft)
    pad = max(0.03, 0.12 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1.0 else hi + pad)
    style.pct_axis(ax.yaxis)
    ax.set_ylabel(acc_axis, color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.set_xlabel("probe point in network order (split after this layer)")
    style.probe_ticks(ax, [labels[li] for li in order])
    evaluated = set(sx.astype(int))
    for i, t in enumerate(ax.get_xticklabels()):
        if i in evaluated:
            t.set_fontweight("bold")
    ax.grid(axis="y", alpha=0.3)

    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    style.legend_below(fig, h1 + h2, l1 + l2)
    head = (
        f"Accuracy per split point ({len(splits)} of {len(order)} probe points evaluated, "
        f"in bold){title}"
    )
    sub = _predicted_line(q)
    ax.set_title(head + (f"\n{sub}" if sub else ""), fontsize=10)
    return style.save_figure(fig, paths)


def _cui_vs_accuracy(splits, kinds, q, title, paths) -> list[Path]:
    m, acc_axis = _metric(q)
    x = splits["log10_cui"].to_numpy(np.float64)
    y = splits[m].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    fig = Figure(figsize=(8.0, 6.6), layout="constrained")
    ax = fig.add_subplot()
    xs, ys = x[ok], y[ok]
    labels = [_short_label(v) for v in splits["label"].astype(str)[ok]]
    lab = "evaluated split (95 % interval)"
    ax.scatter(xs, ys, s=36, color="tab:blue", zorder=4, label=lab)
    _error_bars(ax, x, splits, m, elinewidth=0.9, capsize=2, zorder=3, alpha=0.7)
    style.mark_kinds(ax, xs, ys, {k: mask[ok] for k, mask in kinds.items()})
    _mark_measured_best(ax, xs, ys, splits["layer"].astype(str)[ok].tolist(), q)
    if len(xs) >= 3 and np.ptp(xs) > 0:
        k, c0 = np.polyfit(xs, ys, 1)
        gx = np.array([xs.min(), xs.max()])
        ax.plot(gx, k * gx + c0, color="0.4", ls=":", lw=1.2, zorder=2, label="least-squares line")
    if len(xs):
        _pad(ax.set_xlim, xs, flat=2.0, hi=0.12)
        _pad(ax.set_ylim, ys, flat=0.2, least=0.02)
    else:
        msg = "no split with a finite CUI and accuracy"
        ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes)
    style.pct_axis(ax.yaxis)
    ax.set_xlabel(style.CUI_AXIS)
    ax.set_ylabel(acc_axis)
    ax.grid(alpha=0.3)
    style.legend_below(fig)
    lines = [
        f"CUI vs accuracy over {int(ok.sum())} evaluated splits{title}",
        _corr_text(q, "cui_mean", "I-SPLIT CUI"),
        _corr_text(q, "size", "baseline, −log10 activation size (CDE)"),
    ]
    if not ok.all():
        lines.append(f"{int((~ok).sum())} split(s) with CUI = 0 or no accuracy not shown")
    ax.set_title("\n".join(lines), fontsize=9.5)
    if len(xs):
        style.place_labels(fig, ax, xs, ys, labels)
    return style.save_figure(fig, paths)


def _no_split_options(q: dict, camera: pd.DataFrame | None) -> pd.DataFrame:
    """LC and the camera's options as points of the accuracy-vs-bytes plane: name, bytes
    (the frame's mean for a camera option), test accuracy of the experiment's metric and its
    interval (the fine-tuned model on what the server sees)."""
    m = q.get("metric", "top1")
    rows = []
    ft = (q.get("finetuned") or {}).get("test") or {}
    if style.finite(ft.get("value")):
        lo, hi = ft.get("ci") or (np.nan, np.nan)
        rows.append((LC, float(LC_RESULT_BYTES), ft["value"], lo, hi))
    for r in [] if camera is None else camera.to_dict("records"):
        rows.append(
            (CAMERA_PREFIX + str(r["option"]), r["bytes_mean"], r[m], r[m + "_lo"], r[m + "_hi"])
        )
    return pd.DataFrame(rows, columns=["name", "bytes", "acc", "lo", "hi"], dtype=object).astype(
        {"bytes": float, "acc": float, "lo": float, "hi": float}
    )


def _accuracy_vs_bytes(splits, ends: pd.DataFrame, q, title, paths) -> list[Path]:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    m, acc_axis = _metric(q)
    b = splits["bytes"].to_numpy(np.float64)
    a = splits[m].to_numpy(np.float64)
    ok = np.isfinite(b) & np.isfinite(a) & (b > 0)
    # the front is over every option, split or not: a split is worth its bytes only if no
    # option sending fewer bytes is at least as accurate
    eb, ea = ends["bytes"].to_numpy(np.float64), ends["acc"].to_numpy(np.float64)
    all_b, all_a = np.append(b[ok], eb), np.append(a[ok], ea)
    front_all = pareto_front(cost=all_b, value=all_a)
    n_ok = int(ok.sum())
    idx = np.flatnonzero(ok)
    on = np.zeros(len(b), dtype=bool)
    on[idx[[i for i in front_all if i < n_ok]]] = True
    end_on = np.zeros(len(ends), dtype=bool)
    end_on[[i - n_ok for i in front_all if i >= n_ok]] = True

    fig = Figure(figsize=(8.5, 6.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    dominated = ok & ~on
    lab = "evaluated split (dominated)"
    ax.scatter(b[dominated], a[dominated], s=36, color="0.55", zorder=3, label=lab)
    red = {"color": "tab:red", "edgecolor": "black", "lw": 0.6}
    ax.scatter(b[on], a[on], s=70, zorder=5, label="Pareto-optimal split", **red)
    _error_bars(ax, b, splits, m, elinewidth=0.9, capsize=2, zorder=2, alpha=0.6)
    for kind, mark, text in (
        (LC, style.LC_MARK, f"LC: whole model on the device ({LC_RESULT_BYTES} B answer)"),
        (CAMERA_PREFIX, style.RC_MARK, "RC: the camera frame (raw, JPEG; mean bytes)"),
    ):
        sel = ends["name"].str.startswith(kind).to_numpy()
        if not sel.any():
            continue
        e = ends[sel]
        mark.scatter(ax, e["bytes"], e["acc"], facecolors=mark.edge, label=text)
        err = np.vstack([e["acc"] - e["lo"], e["hi"] - e["acc"]])
        ax.errorbar(e["bytes"], e["acc"], yerr=err, fmt="none", ecolor=mark.edge,
                    elinewidth=0.9, capsize=2, zorder=2, alpha=0.6)  # fmt: skip
    if len(front_all):
        order = np.argsort(all_b[front_all])
        fx, fy = all_b[front_all][order], all_a[front_all][order]
        # best accuracy reachable with at most x bytes: flat until the next front point
        hx, hy = np.append(fx, all_b.max() * 1.6), np.append(fy, fy[-1])
        lab = "Pareto front (best accuracy for at most x bytes)"
        ax.step(hx, hy, where="post", color="tab:red", lw=1.5, zorder=4, label=lab)
    ft = _finetuned(ax, q, lw=1.2)
    if len(all_b):
        ax.set_xlim(all_b.min() / 1.6, all_b.max() * 1.6)
        _pad(ax.set_ylim, np.append(all_a, [] if ft is None else [ft]), flat=0.2, least=0.02)
    fmt = FuncFormatter(lambda v, _pos: style.si(v, "B"))
    ax.xaxis.set_major_formatter(fmt)
    if len(all_b) and np.log10(all_b.max() / all_b.min() * 1.6**2) < 3.0:
        # up to 3 decades the decades alone leave too few labels: add 2× and 5×
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="x", which="both", labelsize=9)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    style.pct_axis(ax.yaxis)
    ax.set_xlabel("bytes transmitted per image (log scale; bottleneck code as sent)")
    ax.set_ylabel(acc_axis.replace(" after bottleneck retraining", ""))
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.12, which="minor", axis="x")
    style.legend_below(fig, ncol=2, markerscale=0.8)
    ax.set_title(
        f"Accuracy vs transmitted bytes{title}\n"
        f"Pareto front: {int(on.sum())} of {n_ok} evaluated splits, "
        f"{int(end_on.sum())} of {len(ends)} options without a split",
        fontsize=10,
    )
    if len(all_b):
        labels = [_short_label(v) for v in splits["label"].astype(str)[ok]]
        labels += [n.removeprefix(CAMERA_PREFIX) for n in ends["name"]]
        colors = ["black"] * n_ok + [style.LC_MARK.edge] * len(ends)
        bold = np.append(on[ok], end_on)
        style.place_labels(fig, ax, all_b, all_a, labels, bold=bold, colors=colors)
    return style.save_figure(fig, paths)
