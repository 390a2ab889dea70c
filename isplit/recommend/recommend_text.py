"""The recommendation for people: one markdown row per network, and the formatting of times,
accuracies and constraint violations that the JSON's messages use too."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

CONSTRAINTS = {
    "max_p95_s": ("latency_p95_s", "max", "relative"),
    "min_accuracy": ("accuracy", "min", "absolute"),
    "max_device_params": ("device_params", "max", "relative"),
    "max_device_flops": ("device_flops", "max", "relative"),
    "max_frame_loss": ("frame_loss", "max", "absolute"),
}


def fmt_s(v) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"


def fmt_excess(x: Mapping) -> str:
    e = x["excess"]
    if e is None:
        return "no frame delivered" if x["constraint"] == "max_p95_s" else "n/a"
    if x["constraint"] == "max_p95_s":
        return f"+{fmt_s(e)}"
    if x["constraint"] in ("min_accuracy", "max_frame_loss"):
        return f"{e * 100:.2f} points"
    return f"+{e:.4g} ({e / x['limit'] * 100:.1f} %)" if x["limit"] else f"+{e:.4g}"


def markdown_table(rec: Mapping | str | Path) -> str:
    """The recommendations as a markdown table (one row per profile × protocol × loss)."""
    if not isinstance(rec, Mapping):
        rec = json.loads(Path(rec).read_text())
    c = {k: v for k, v in rec["constraints"].items() if v is not None and k in CONSTRAINTS}
    lines = []
    if c:
        lines.append("Constraints: " + ", ".join(f"{k} = {v}" for k, v in c.items()) + ".")
    else:
        lines.append("No constraints configured: the most accurate split wins.")
    lines.append(f"Accuracy: {rec['accuracy_metric']}. Latency: p50 and p95 with 95 % intervals.")
    lines.append("")
    lines.append(
        "| profile | protocol | loss | split | accuracy (val, delivered) | test | p50 | p95 "
        "| frame loss | device params | note |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for g in rec["groups"]:
        p = g["recommended"] or g["nearest_miss"]
        if g["status"] == "ok":
            note = f"{g['n_feasible']}/{g['n_candidates']} feasible"
            if len(g.get("tied", [])) > 1:
                note += f", {len(g['tied'])} tied on accuracy"
        else:
            note = "**nothing meets the constraints**; nearest miss: " + "; ".join(
                f"{x['constraint']} {fmt_excess(x)}" for x in g["nearest_miss"]["violations"]
            )
        split = p["label"] if g["status"] == "ok" else f"({p['label']})"
        lines.append(
            f"| {g['profile']} | {g['protocol']} | {g['loss'] * 100:g} % | {split} | "
            f"{_fmt_acc(p['accuracy'])} | {_fmt_acc(p.get('test_accuracy'))} | "
            f"{_fmt_ci(p, 'latency_p50')} | {_fmt_ci(p, 'latency_p95')} | "
            f"{_fmt_pct(p['frame_loss'])} | {_fmt_num(p['device_params'])} | {note} |"
        )
    return "\n".join(lines) + "\n"


def _fmt_ci(p: Mapping, stem: str) -> str:
    v, lo, hi = p.get(f"{stem}_s"), p.get(f"{stem}_lo_s"), p.get(f"{stem}_hi_s")
    if lo is None or hi is None or v is None or fmt_s(lo) == fmt_s(hi):
        return fmt_s(v)
    return f"{fmt_s(v)} [{fmt_s(lo)}, {fmt_s(hi)}]"


def _fmt_acc(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _fmt_pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.1f} %"


def _fmt_num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
