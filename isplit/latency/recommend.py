"""QoS matching: the split an application should use on each link (SEI's step 3, docs/method.md).

SEI leaves this step to the reader of its logs; here it is a rule. For each network profile ×
protocol × loss level of ``latency.parquet`` the candidates are the evaluated splits plus LC
(whole model on the device) and RC (raw frame to the server; both carry the fine-tuned model's
accuracy, since neither has a bottleneck). A candidate is *feasible* when it meets every
configured constraint (``qos`` section of the config; ``None`` = no constraint):

=================  =====================================================================
max_p95_s          p95 frame latency (s) ≤ this; a candidate that delivers no frame fails
min_accuracy       accuracy ≥ this (test top-1, or with ``classes`` the mean of those
                   classes' test accuracies — for an application that cares about a subset)
max_device_params  parameters on the device (head + encoder; LC: whole model; RC: 0) ≤ this
max_device_flops   FLOPs per image on the device (same parts) ≤ this
max_frame_loss     fraction of frames lost (UDP) ≤ this
=================  =====================================================================

The **recommendation** is the most accurate feasible candidate, ties broken by lower p95, then by
earlier split (less on the device). If none is feasible the answer says so and gives the
**nearest miss**: the candidate with the smallest total violation, where each violated constraint
contributes its excess relative to the limit for latency, parameters and FLOPs (0.5 = 50 % over),
and its absolute excess for the two fractions accuracy and frame loss (0.05 = 5 points short).
The **Pareto front** (accuracy up, p95 down) is given for every group, feasible or not.

``recommendation.json`` (strict JSON: NaN/inf are written as ``null``)::

    {
      "constraints": {max_p95_s, min_accuracy, classes, max_device_params, max_device_flops,
                      max_frame_loss, include_endpoints},
      "accuracy_metric": "test top-1" | "mean test accuracy of classes [...]",
      "accuracy": {layer: accuracy, ..., "LC": ..., "RC": ...},
      "groups": [{
        "profile", "protocol", "loss", "bandwidth_bps", "delay_s",
        "status": "ok" | "none",
        "message": one line for people,
        "n_candidates", "n_feasible", "feasible": [layer, ...],
        "recommended": point | null,
        "nearest_miss": point + {"violation": total score,
                                 "violations": [{"constraint", "value", "limit", "excess",
                                                 "score"}]} | null,
        "pareto": [point, ...]           (ascending p95)
      }, ...]
    }

where a point is ``{layer, label, layer_index, accuracy, latency_p50_s, latency_p95_s,
frame_loss, fps_max, bytes, device_s, server_s, device_params, device_flops}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.config import settings
from isplit.evaluation.pareto import pareto_front
from isplit.io.files import write_json
from isplit.latency.compute import LC, RC

# constraint → (candidate column, kind: "max"/"min", normalisation: "relative"/"absolute")
CONSTRAINTS = {
    "max_p95_s": ("latency_p95_s", "max", "relative"),
    "min_accuracy": ("accuracy", "min", "absolute"),
    "max_device_params": ("device_params", "max", "relative"),
    "max_device_flops": ("device_flops", "max", "relative"),
    "max_frame_loss": ("frame_loss", "max", "absolute"),
}

POINT_FIELDS = [
    "layer",
    "label",
    "layer_index",
    "accuracy",
    "latency_p50_s",
    "latency_p95_s",
    "frame_loss",
    "fps_max",
    "bytes",
    "device_s",
    "server_s",
    "device_params",
    "device_flops",
]


def candidate_table(
    splits: pd.DataFrame, finetune: Mapping | None, classes: list[str] | None
) -> pd.DataFrame:
    """Accuracy and device cost of every split and of LC/RC, one row per layer."""
    s = splits.copy()
    if classes:
        cols = [f"acc:{c}" for c in classes]
        missing = [c for c in cols if c not in s.columns]
        if missing:
            have = sorted(c[4:] for c in s.columns if c.startswith("acc:"))
            raise ValueError(f"qos.classes: unknown classes {missing}; known: {have}")
        acc = s[cols].mean(axis=1)
    else:
        acc = s["top1"]
    out = pd.DataFrame(
        {
            "layer": s["layer"].astype(str),
            "accuracy": acc.astype(float),
            "device_params": (s["head_params"] + s["encoder_params"]).astype(float),
            "device_flops": (s["head_flops"] + s["encoder_flops"]).astype(float),
        }
    )
    ft_acc = float("nan")
    if finetune is not None:
        test = finetune["test"]
        if classes:
            per = test.get("per_class", {})
            missing = [c for c in classes if c not in per]
            if missing:
                raise ValueError(f"qos.classes: the fine-tuned metrics lack {missing}")
            ft_acc = float(np.mean([per[c] for c in classes]))
        else:
            ft_acc = float(test["top1"])
    # the whole model = any split's head + tail (the bottleneck is not part of it)
    full_params = float(s["head_params"].iloc[0] + s["tail_params"].iloc[0]) if len(s) else np.nan
    full_flops = float(s["head_flops"].iloc[0] + s["tail_flops"].iloc[0]) if len(s) else np.nan
    ends = pd.DataFrame(
        {
            "layer": [LC, RC],
            "accuracy": [ft_acc, ft_acc],
            "device_params": [full_params, 0.0],
            "device_flops": [full_flops, 0.0],
        }
    )
    return pd.concat([out, ends], ignore_index=True)


def violations(row: Mapping, q: Mapping) -> list[dict]:
    """Every constraint ``row`` breaks, with the value, the limit and by how much."""
    out = []
    for key, (col, kind, norm) in CONSTRAINTS.items():
        limit = q.get(key)
        if limit is None:
            continue
        limit = float(limit)
        value = float(row[col])
        if not math.isfinite(value):
            excess = math.inf
        else:
            excess = value - limit if kind == "max" else limit - value
        if excess > 0:
            score = excess / limit if norm == "relative" and limit > 0 else excess
            if norm == "relative" and limit == 0:
                score = math.inf if math.isinf(excess) else 1.0 + excess
            out.append(
                {
                    "constraint": key,
                    "value": _num(value),
                    "limit": limit,
                    "excess": _num(excess),
                    "score": _num(score),
                }
            )
    return out


def front(points: pd.DataFrame) -> pd.DataFrame:
    """Candidates no other beats on both accuracy (higher) and p95 latency (lower)."""
    idx = pareto_front(points["latency_p95_s"], points["accuracy"], points["layer_index"])
    return points.iloc[idx]


def _num(v):
    """JSON-safe number: NaN and ±inf become null (strict JSON has neither)."""
    if v is None:
        return None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _point(r: Mapping) -> dict:
    out = {}
    for k in POINT_FIELDS:
        v = r[k]
        out[k] = v if isinstance(v, str) else _num(v)
    return out


def _rank_key(r: Mapping):
    """Most accurate first, then lowest p95, then earliest split; unknown values sort last."""
    acc, p95 = float(r["accuracy"]), float(r["latency_p95_s"])
    return (
        -acc if math.isfinite(acc) else math.inf,
        p95 if math.isfinite(p95) else math.inf,
        r["layer_index"],
    )


def recommend_group(points: pd.DataFrame, q: Mapping) -> dict:
    """Recommendation, nearest miss and Pareto front for one profile × protocol × loss."""
    recs = points.to_dict("records")
    feas, misses = [], []
    for r in recs:
        v = violations(r, q)
        if v:
            misses.append(
                (sum(x["score"] if x["score"] is not None else math.inf for x in v), r, v)
            )
        else:
            feas.append(r)
    out: dict = {
        "n_candidates": len(recs),
        "n_feasible": len(feas),
        "feasible": [r["layer"] for r in sorted(feas, key=lambda r: r["layer_index"])],
    }
    if feas:
        best = min(feas, key=_rank_key)
        out["status"] = "ok"
        out["recommended"] = _point(best)
        out["nearest_miss"] = None
        out["message"] = (
            f"{best['label']}: accuracy {best['accuracy']:.4f}, p95 {_fmt_s(best['latency_p95_s'])}"
        )
    else:
        score, r, v = min(misses, key=lambda m: (m[0], *_rank_key(m[1])))
        out["status"] = "none"
        out["recommended"] = None
        out["nearest_miss"] = {**_point(r), "violation": _num(score), "violations": v}
        broken = "; ".join(f"{x['constraint']} by {_fmt_excess(x)}" for x in v)
        out["message"] = f"nothing meets the constraints; nearest miss {r['label']} ({broken})"
    out["pareto"] = [_point(r) for r in front(points).to_dict("records")]
    return out


def _fmt_s(v) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"


def _fmt_excess(x: Mapping) -> str:
    e = x["excess"]
    if e is None:
        return "no frame delivered" if x["constraint"] == "max_p95_s" else "n/a"
    if x["constraint"] == "max_p95_s":
        return f"+{_fmt_s(e)}"
    if x["constraint"] in ("min_accuracy", "max_frame_loss"):
        return f"{e * 100:.2f} points"
    return f"+{e:.4g} ({e / x['limit'] * 100:.1f} %)" if x["limit"] else f"+{e:.4g}"


def run(
    *,
    latency_path: str | Path,
    splits_path: str | Path,
    finetune_metrics_path: str | Path | None,
    cfg: Mapping | None,
    out_json: str | Path,
) -> dict:
    """Write ``recommendation.json`` (schema in the module docstring) atomically and return it.

    ``cfg`` is the ``qos`` config section; ``finetune_metrics_path`` gives
    LC's and RC's accuracy (``None``: unknown, so they fail any accuracy constraint)."""
    q = settings("qos", cfg).to_dict()
    lat = pd.read_parquet(latency_path)
    splits = pd.read_parquet(splits_path)
    finetune = None
    if finetune_metrics_path is not None:
        finetune = json.loads(Path(finetune_metrics_path).read_text())
    classes = list(q["classes"]) if q["classes"] else None
    cand = candidate_table(splits, finetune, classes)
    lat = lat.drop(columns=[c for c in ("accuracy",) if c in lat.columns])
    pts = lat.merge(cand, on="layer", how="left", validate="many_to_one")
    if not q["include_endpoints"]:
        pts = pts[~pts["layer"].isin([LC, RC])]
    groups = []
    keys = ["profile", "protocol", "loss"]
    order = {p: i for i, p in enumerate(dict.fromkeys(lat["profile"]))}
    for (profile, protocol, loss), g in sorted(
        pts.groupby(keys, sort=False), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])
    ):
        res = recommend_group(g, q)
        groups.append(
            {
                "profile": profile,
                "protocol": protocol,
                "loss": float(loss),
                "bandwidth_bps": float(g["bandwidth_bps"].iloc[0]),
                "delay_s": float(g["delay_s"].iloc[0]),
                **res,
            }
        )
    metric = f"mean test accuracy of classes {classes}" if classes else "test top-1"
    out = {
        "constraints": q,
        "accuracy_metric": metric,
        "accuracy": {r["layer"]: _num(r["accuracy"]) for r in cand.to_dict("records")},
        "groups": groups,
    }
    write_json(out_json, out, allow_nan=False)
    return out


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
    lines.append(f"Accuracy: {rec['accuracy_metric']}.")
    lines.append("")
    lines.append(
        "| profile | protocol | loss | split | accuracy | p50 | p95 | frame loss | fps max "
        "| device params | note |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for g in rec["groups"]:
        p = g["recommended"] or g["nearest_miss"]
        if g["status"] == "ok":
            note = f"{g['n_feasible']}/{g['n_candidates']} feasible"
        else:
            note = "**nothing meets the constraints**; nearest miss: " + "; ".join(
                f"{x['constraint']} {_fmt_excess(x)}" for x in g["nearest_miss"]["violations"]
            )
        split = p["label"] if g["status"] == "ok" else f"({p['label']})"
        lines.append(
            f"| {g['profile']} | {g['protocol']} | {g['loss'] * 100:g} % | {split} | "
            f"{_fmt_acc(p['accuracy'])} | {_fmt_s(p['latency_p50_s'])} | "
            f"{_fmt_s(p['latency_p95_s'])} | {_fmt_pct(p['frame_loss'])} | "
            f"{_fmt_num(p['fps_max'])} | {_fmt_num(p['device_params'])} | {note} |"
        )
    return "\n".join(lines) + "\n"


def _fmt_acc(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _fmt_pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.1f} %"


def _fmt_num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
