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
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isplit.latency.compute import LC, RC
from isplit.latency.recommend import markdown_table
from isplit.plots import save_figure

STEM = "latency_accuracy"
__all__ = ["latency_figure", "markdown_table", "pick_setting"]


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
    out_dir: str | Path,
    protocol: str | None = None,
    loss: float | None = None,
) -> list[Path]:
    """Draw ``latency_accuracy.{png,pdf}`` into ``out_dir`` and return the two paths."""
    lat = pd.read_parquet(latency_path)
    rec = json.loads(Path(recommendation_path).read_text())
    splits = pd.read_parquet(splits_path)
    labels = dict(zip(splits["layer"].astype(str), splits["label"].astype(str), strict=True))
    labels.update({LC: LC, RC: RC})
    acc = {k: (np.nan if v is None else v) for k, v in rec["accuracy"].items()}
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
    for i, (profile, proto, lv, d) in enumerate(shown):
        ax = axes[i // cols][i % cols]
        d["accuracy"] = d["layer"].map(acc).astype(float)
        g = _group(rec, profile, proto, lv) or {"feasible": [], "pareto": []}
        feasible = set(g.get("feasible", []))
        ok = d["layer"].isin(feasible)
        ends = d["layer"].isin([LC, RC])
        ax.scatter(
            d.loc[ok & ~ends, "latency_p95_s"],
            d.loc[ok & ~ends, "accuracy"],
            s=28,
            color="tab:blue",
            label="split (meets QoS)",
            zorder=3,
        )
        ax.scatter(
            d.loc[~ok & ~ends, "latency_p95_s"],
            d.loc[~ok & ~ends, "accuracy"],
            s=28,
            facecolors="none",
            edgecolors="tab:blue",
            label="split (fails QoS)",
            zorder=3,
        )
        chosen = g.get("recommended")
        miss = g.get("nearest_miss")
        named = {x["layer"] for x in (chosen, miss) if x}
        for end, marker, name in ((LC, "s", "LC: all on device"), (RC, "D", "RC: raw frame sent")):
            e = d[d["layer"] == end]
            if e.empty or not np.isfinite(e["latency_p95_s"]).all():
                continue
            filled = bool(e["layer"].isin(feasible).iloc[0])
            ax.scatter(
                e["latency_p95_s"],
                e["accuracy"],
                marker=marker,
                s=46,
                zorder=4,
                facecolors="tab:green" if filled else "none",
                edgecolors="tab:green",
                label=name,
            )
            if end not in named:  # the chosen point / nearest miss get their own label
                ax.annotate(
                    end,
                    (float(e["latency_p95_s"].iloc[0]), float(e["accuracy"].iloc[0])),
                    xytext=(6, -4),
                    textcoords="offset points",
                    fontsize=8,
                    color="tab:green",
                )
        front = pd.DataFrame(g.get("pareto", []))
        if not front.empty:
            front = front.sort_values("latency_p95_s")
            ax.step(
                front["latency_p95_s"],
                front["accuracy"],
                where="post",
                color="tab:orange",
                lw=1.4,
                zorder=2,
            )
            ax.scatter(
                front["latency_p95_s"],
                front["accuracy"],
                s=90,
                facecolors="none",
                edgecolors="tab:orange",
                linewidths=1.4,
                zorder=6,  # on top of the star, so a one-point front stays visible
            )
        if chosen and chosen.get("latency_p95_s") is not None:
            ax.scatter(
                [chosen["latency_p95_s"]],
                [chosen["accuracy"]],
                marker="*",
                s=260,
                color="gold",
                edgecolors="black",
                linewidths=0.8,
                zorder=5,
                label="recommended",
            )
            ax.annotate(
                labels.get(chosen["layer"], chosen["layer"]),
                (chosen["latency_p95_s"], chosen["accuracy"]),
                xytext=(8, 6),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
            )
        if miss and miss.get("latency_p95_s") is not None and miss.get("accuracy") is not None:
            ax.scatter(
                [miss["latency_p95_s"]],
                [miss["accuracy"]],
                marker="X",
                s=120,
                color="tab:red",
                zorder=5,
                label="nearest miss",
            )
            ax.annotate(
                labels.get(miss["layer"], miss["layer"]),
                (miss["latency_p95_s"], miss["accuracy"]),
                xytext=(8, 6),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                color="tab:red",
            )
        if cons.get("max_p95_s") is not None:
            ax.axvline(cons["max_p95_s"], color="grey", ls="--", lw=1, label="QoS limits")
        if cons.get("min_accuracy") is not None:
            ax.axhline(cons["min_accuracy"], color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            ax.set_xlim(lo / 1.5, hi * 1.5)
        bw = float(d["bandwidth_bps"].iloc[0]) if len(d) else float("nan")
        dl = float(d["delay_s"].iloc[0]) if len(d) else float("nan")
        ax.set_title(
            f"{profile}: {_rate(bw)}, {dl * 1e3:g} ms one-way\n"
            f"{proto.upper()}, {lv * 100:g} % loss",
            fontsize=10,
        )
        ax.grid(True, which="major", alpha=0.3)
        ax.grid(True, which="minor", axis="x", alpha=0.1)
        if i // cols == rows - 1 or i + cols >= n:
            ax.set_xlabel("p95 frame latency (s, log)")
        if i % cols == 0:
            ax.set_ylabel(_acc_label(cons.get("classes")))
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    _legend(fig, used={lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1]})
    return save_figure(fig, Path(out_dir), STEM)


def _legend(fig: Figure, used: set[str]) -> None:
    """One legend for all panels, with neutral proxy markers (a panel's own handle would carry
    that panel's filled/hollow state)."""
    from matplotlib.lines import Line2D

    def mk(marker, face, edge, size=7, ls="none", **kw):
        return Line2D(
            [],
            [],
            marker=marker,
            ls=ls,
            markerfacecolor=face,
            markeredgecolor=edge,
            markersize=size,
            **kw,
        )

    items = [
        (mk("o", "tab:blue", "tab:blue"), "split, meets QoS (filled)"),
        (mk("o", "none", "tab:blue"), "split, fails QoS (hollow)"),
        (mk("s", "none", "tab:green"), "LC: whole model on device"),
        (mk("D", "none", "tab:green"), "RC: raw frame to server"),
        (mk("o", "none", "tab:orange", 10, "-", color="tab:orange"), "Pareto front"),
    ]
    if "recommended" in used:
        items.append((mk("*", "gold", "black", 15), "recommended"))
    if "nearest miss" in used:
        items.append((mk("X", "tab:red", "tab:red", 10), "nearest miss (none feasible)"))
    if "QoS limits" in used:
        items.append((Line2D([], [], color="grey", ls="--", lw=1), "QoS limits"))
    fig.legend(
        [h for h, _ in items],
        [lab for _, lab in items],
        loc="outside lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
    )


def _acc_label(classes) -> str:
    if not classes:
        return "test top-1 accuracy"
    if len(classes) <= 3:
        return f"mean test accuracy of {', '.join(map(str, classes))}"
    return f"mean test accuracy of {len(classes)} classes"


def _rate(bps: float) -> str:
    for unit, f in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= f:
            return f"{bps / f:g} {unit}"
    return f"{bps:g} b/s"
