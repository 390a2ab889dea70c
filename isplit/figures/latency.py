"""Accuracy against p95 latency, one panel per network profile (PNG + PDF).

Why one panel per profile: the point of SEI's simulation is that the best split depends on the
link, so the figure puts the links side by side with the same accuracy axis. Each panel shows one
protocol and one loss level (the title says which; by default TCP at 1 % loss when that level was
simulated, else the lowest simulated loss — TCP because it delivers every frame, so every
candidate has a p95), all candidates (filled: meet the QoS constraints, hollow: do not), the
Pareto front (accuracy up, latency down) as a step line, LC and RC labelled, the configured
latency / accuracy limits dashed, and the recommended split as a gold star (or, when nothing is
feasible, the nearest miss as a red cross).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit.figures import style
from isplit.figures.style import LC_MARK, RC_MARK, Mark
from isplit.latency.compute import LC
from isplit.recommend.candidates import CAMERA_PREFIX, is_endpoint

__all__ = ["latency_figure", "pick_setting", "plotted_accuracy"]

# Hollow as defined: a panel fills a split or an end in its edge colour when it meets the QoS
# constraints, and the legend shows both states.
SPLIT = Mark("o", "none", "tab:blue", 28, zorder=3)
# drawn over the recommended star, so a one-point front stays visible
FRONT = Mark("o", "none", "tab:orange", 90, lw=1.4, zorder=6)
NEAREST_MISS = Mark("X", "tab:red", "tab:red", 120)
PICK_SCALE = 0.5  # style.PICK, smaller in these small panels


def pick_setting(lat: pd.DataFrame, profile: str, protocol=None, loss=None) -> tuple[str, float]:
    """The protocol and loss level a profile's panel shows (see the module docstring)."""
    sub = lat[lat["profile"] == profile]
    protos = list(dict.fromkeys(sub["protocol"]))
    proto = protocol or ("tcp" if "tcp" in protos else protos[0])
    losses = sorted(set(sub.loc[sub["protocol"] == proto, "loss"].astype(float)))
    if loss is None:
        loss = 0.01 if any(math.isclose(x, 0.01) for x in losses) else losses[0]
    match = [x for x in losses if math.isclose(x, float(loss))]
    if not match:
        raise ValueError(f"profile {profile!r} has no {proto} results at loss {loss}: {losses}")
    return proto, match[0]


def _group(rec: dict, profile: str, protocol: str, loss: float) -> dict | None:
    for g in rec["groups"]:
        if (g["profile"], g["protocol"]) == (profile, protocol) and math.isclose(g["loss"], loss):
            return g
    return None


def latency_figure(
    *,
    latency_path: str | Path,
    recommendation_path: str | Path,
    splits_path: str | Path,
    latency_accuracy: Sequence[str | Path],
    protocol: str | None = None,
    loss: float | None = None,
) -> list[Path]:
    """Draw ``latency_accuracy`` into its paths (the format from each path's suffix, .png or
    .pdf) and return them."""
    latency_accuracy = style.figure_paths(latency_accuracy)
    lat = pd.read_parquet(latency_path)
    rec = json.loads(Path(recommendation_path).read_text())
    splits = pd.read_parquet(splits_path)
    labels = dict(zip(splits["layer"].astype(str), splits["label"].astype(str), strict=True))
    cons = rec["constraints"]
    profiles = list(dict.fromkeys(lat["profile"]))
    n = len(profiles)
    cols = min(n, 2) if n <= 4 else 3
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    shown = []
    for profile in profiles:
        proto, lv = pick_setting(lat, profile, protocol, loss)
        d = lat[(lat["profile"] == profile) & (lat["protocol"] == proto)]
        shown.append((profile, proto, lv, d[np.isclose(d["loss"].astype(float), lv)].copy()))
    # one x range for all panels (comparable), as tight as the shown points allow
    finite = pd.concat([d["latency_p95_s"] for *_, d in shown]).astype(float)
    finite = finite[np.isfinite(finite)]
    if cons.get("max_p95_s") is not None:
        finite = pd.concat([finite, pd.Series([float(cons["max_p95_s"])])])
    to_label = []
    for i, (profile, proto, lv, d) in enumerate(shown):
        ax = axes[i // cols][i % cols]
        d["accuracy"] = plotted_accuracy(d, rec)
        to_label.append((ax, _panel(ax, d, _group(rec, profile, proto, lv) or {}, labels, cons)))
        if len(finite):
            ax.set_xlim(float(finite.min()) / 1.5, float(finite.max()) * 1.5)
        bw = float(d["bandwidth_bps"].iloc[0]) if len(d) else float("nan")
        dl = float(d["delay_s"].iloc[0]) if len(d) else float("nan")
        ax.set_title(
            f"{profile}: {style.si(bw, 'b/s')}, {dl * 1e3:g} ms one-way\n"
            f"{proto.upper()}, {lv * 100:g} % loss",
            fontsize=10,
        )
        if i // cols == rows - 1 or i + cols >= n:
            ax.set_xlabel("p95 frame latency (s, log)")
        if i % cols == 0:
            ax.set_ylabel(_acc_label(cons.get("classes"), rec.get("metric", "top1")))
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    _legend(fig, used={lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1]})
    # the shared y range is known only now; freeze it, then place the labels in its coordinates
    for ax, spec in to_label:
        ax.set_ylim(ax.get_ylim())
        style.place_labels(fig, ax, fontsize=7, **spec)
    return style.save_figure(fig, latency_accuracy)


def plotted_accuracy(d: pd.DataFrame, rec: dict) -> pd.Series:
    """What the recommendation ranks a point by (:func:`isplit.recommend.recommend.points_table`):
    its validation accuracy from ``recommendation.json`` (the mean recall of ``qos.classes``
    when set, which ``latency.parquet``'s metric columns are not) over all frames sent, a lost
    frame counting as wrong."""
    val = d["layer"].map(rec["accuracy"]).astype(float)
    return val * (1.0 - d["frame_loss"].astype(float))


def _panel(ax, d: pd.DataFrame, g: dict, labels: dict, cons: dict) -> dict:
    """One profile's points ``d`` with its recommendation group ``g``; returns what its labels
    need (placed once every panel's limits are final)."""
    feasible = set(g.get("feasible", []))
    ok = d["layer"].isin(feasible)
    ends = d["layer"].map(is_endpoint)
    for sel, face in ((ok & ~ends, "tab:blue"), (~ok & ~ends, "none")):
        SPLIT.scatter(ax, d.loc[sel, "latency_p95_s"], d.loc[sel, "accuracy"], facecolors=face)
    chosen, miss = g.get("recommended"), g.get("nearest_miss")
    for end in d.loc[ends, "layer"]:
        mark = LC_MARK if end == LC else RC_MARK
        e = d[d["layer"] == end]
        if e.empty or not np.isfinite(e["latency_p95_s"]).all():
            continue
        x, y = float(e["latency_p95_s"].iloc[0]), float(e["accuracy"].iloc[0])
        mark.scatter(ax, [x], [y], facecolors=mark.edge if end in feasible else "none")
    front = pd.DataFrame(g.get("pareto", []))
    if not front.empty:
        front = front.sort_values("latency_p95_s")
        fx, fy = front["latency_p95_s"], front["accuracy"]
        ax.step(fx, fy, where="post", color=FRONT.edge, lw=FRONT.lw, zorder=2)
        FRONT.scatter(ax, fx, fy)
    for point, mark, scale, name in (
        (chosen, style.PICK, PICK_SCALE, "recommended"),
        (miss, NEAREST_MISS, 1.0, "nearest miss"),
    ):
        if not point or point.get("latency_p95_s") is None or point.get("accuracy") is None:
            continue
        xy = (point["latency_p95_s"], point["accuracy"])
        mark.scatter(ax, *xy, scale=scale, zorder=5, label=name)  # under the front's rings
    if cons.get("max_p95_s") is not None:
        ax.axvline(cons["max_p95_s"], color="grey", ls="--", lw=1, label="QoS limits")
    if cons.get("min_accuracy") is not None:
        ax.axhline(cons["min_accuracy"], color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    # every point named, clear of the markers and lines drawn above
    shown = d[np.isfinite(d["latency_p95_s"].astype(float)) & np.isfinite(d["accuracy"])]
    picked = {x["layer"]: c for x, c in ((miss, "tab:red"), (chosen, "black")) if x}
    names = [
        x.removeprefix(CAMERA_PREFIX) if is_endpoint(x) else labels.get(x, x)
        for x in shown["layer"]
    ]
    colors = [
        picked.get(x, (LC_MARK if x == LC else RC_MARK).edge if is_endpoint(x) else "0.25")
        for x in shown["layer"]
    ]
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    return {
        "x": shown["latency_p95_s"].astype(float),
        "y": shown["accuracy"].astype(float),
        "labels": names,
        "bold": [x in picked for x in shown["layer"]],
        "colors": colors,
    }


def _legend(fig: Figure, used: set[str]) -> None:
    """One legend for all panels, with neutral proxy markers (a panel's own handle would carry
    that panel's filled/hollow state)."""
    from matplotlib.lines import Line2D

    items = [
        (SPLIT.handle(markerfacecolor=SPLIT.edge), "split, meets QoS (filled)"),
        (SPLIT.handle(), "split, fails QoS (hollow)"),
        (LC_MARK.handle(), "LC: whole model on device"),
        (RC_MARK.handle(), "RC: the camera frame to the server (raw, JPEG)"),
        (FRONT.handle(ls="-", color=FRONT.edge), "Pareto front"),
    ]
    if "recommended" in used:
        items.append((style.PICK.handle(scale=PICK_SCALE), "recommended"))
    if "nearest miss" in used:
        items.append((NEAREST_MISS.handle(), "nearest miss (none feasible)"))
    if "QoS limits" in used:
        items.append((Line2D([], [], color="grey", ls="--", lw=1), "QoS limits"))
    handles, labels = zip(*items, strict=True)
    style.legend_below(fig, handles, labels, ncol=4, markerscale=1.0)


def _acc_label(classes, metric: str = "top1") -> str:
    what = {"top1": "top-1 accuracy", "balanced_accuracy": "balanced accuracy"}[metric]
    if not classes:
        return f"validation {what}, lost frames wrong"
    if len(classes) <= 3:
        return f"mean validation recall of {', '.join(map(str, classes))}"
    return f"mean validation recall of {len(classes)} classes"
