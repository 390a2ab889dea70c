"""QoS matching: the candidate an application should use on each link (SEI's step 3,
docs/methods.md §5, docs/latency.md).

SEI leaves this step to the reader of its logs; here it is a rule. For each network profile ×
protocol × loss level of ``latency.parquet`` the candidates are the evaluated splits plus LC and
RC (:func:`isplit.recommend.candidates.endpoints`).

**Accuracy that counts.** A lost UDP frame gets no answer, so the accuracy an application sees
over the frames it sends is the *delivered* accuracy, ``accuracy × (1 − frame_loss)`` (a lost
frame counts as wrong; over TCP it equals the accuracy). That is the number the accuracy
constraint and the ranking use; the plain accuracy is shown beside it.

**Chosen on validation** accuracy of the experiment's ``metric`` (``top1`` by default), test
reported beside it; nothing is chosen on test data. With ``classes`` the accuracy is the mean
recall of those classes, validation (chosen on) and test (reported), without intervals.

A candidate is *feasible* when it meets every configured constraint (``qos`` section; ``None`` =
no constraint) and the device profile's memory:

=================  =====================================================================
max_p95_s          p95 frame latency (s) ≤ this; a candidate that delivers no frame fails
min_accuracy       delivered validation accuracy ≥ this
max_device_params  parameters on the device (head + encoder; LC: whole model; RC: 0) ≤ this
max_device_flops   FLOPs per image on the device (same parts) ≤ this
max_frame_loss     fraction of frames lost (UDP) ≤ this
device_memory      parameters on the device ≤ the device profile's ``max_params``
                   (``device_max_params`` in latency.parquet; always applied when known)
=================  =====================================================================

The **recommendation** is the most accurate feasible candidate, or one that a paired test on
the same validation images shows to be as accurate within ``margin`` (:mod:`.ties`): among
those the lowest p95 latency wins, then the fewest device FLOPs, then the earlier split. If
none is feasible the answer gives the **nearest miss**: the candidate with the smallest total
violation, where each violated constraint contributes its excess relative to the limit for
latency, parameters and FLOPs (0.5 = 50 % over), and its absolute excess for the fractions
accuracy and frame loss. The **Pareto front** (delivered validation accuracy up, p95 down) is
given for every group.

``recommendation.json`` (strict JSON: NaN/inf are written as ``null``)::

    {
      "constraints": {max_p95_s, min_accuracy, classes, max_device_params, max_device_flops,
                      max_frame_loss, include_endpoints},
      "metric": "top1" | "balanced_accuracy",
      "selection": "validation",
      "accuracy_metric": one line saying what "accuracy" is,
      "accuracy": {layer: validation accuracy, ...},   "test_accuracy": {layer: ...},
      "groups": [{
        "profile", "protocol", "loss", "loss_model", "bandwidth_bps", "delay_s",
        "device_profile", "server_profile",
        "status": "ok" | "none", "message": one line for people,
        "n_candidates", "n_feasible", "feasible": [layer, ...],
        "tied": [layer, ...]  (feasible candidates as accurate as the best, by the tie test),
        "tie_test": {"method", "margin", "differences": {layer: {difference, ci,
                     equivalent}}} | null,
        "recommended": point | null,
        "nearest_miss": point + {"violation", "violations": [{"constraint", "value", "limit",
                                 "excess", "score"}]} | null,
        "pareto": [point, ...]           (ascending p95)
      }, ...]
    }

where a point is ``{layer, label, layer_index, accuracy (delivered validation: the number
compared), accuracy_lo, accuracy_hi, val_accuracy, test_accuracy, test_accuracy_lo,
test_accuracy_hi, delivered_test_accuracy, latency_p50_s (+ _lo_s, _hi_s), latency_p95_s (+
_lo_s, _hi_s), frame_loss, fps_max, bytes, device_s, server_s, device_params, device_flops}``.
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
from isplit.latency.stats import PERCENTILE_COLUMNS
from isplit.recommend import ties
from isplit.recommend.candidates import endpoints, is_endpoint
from isplit.recommend.recommend_text import CONSTRAINTS, fmt_excess, fmt_s

# constraint → (candidate column, kind: "max"/"min", normalisation: "relative"/"absolute")
PROFILE_LIMIT = ("device_memory", "device_params", "device_max_params")

POINT_FIELDS = [
    "layer",
    "label",
    "layer_index",
    "accuracy",
    "accuracy_lo",
    "accuracy_hi",
    "val_accuracy",
    "test_accuracy",
    "test_accuracy_lo",
    "test_accuracy_hi",
    "delivered_test_accuracy",
    *PERCENTILE_COLUMNS,
    "frame_loss",
    "fps_max",
    "bytes",
    "device_s",
    "server_s",
    "device_params",
    "device_flops",
]


def candidate_table(
    splits: pd.DataFrame,
    finetune: Mapping | None,
    classes: list[str] | None,
    metric: str,
    camera: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Validation and test accuracy (with intervals) of every candidate, one row per layer.
    With ``classes``: the mean recall of those classes, validation (chosen on) and test."""
    c = endpoints(splits, finetune, metric=metric, camera=camera)
    keep = ["layer", "val", "val_lo", "val_hi", "test", "test_lo", "test_hi"]
    out = c[keep + ["device_params", "device_flops"]].copy()
    if classes:
        cols = [f"acc:{k}" for k in classes]
        missing = [k for k in cols if k not in c.columns]
        if missing:
            have = sorted(k[4:] for k in c.columns if k.startswith("acc:"))
            raise ValueError(f"qos.classes: unknown classes {missing}; known: {have}")
        val_cols = [f"val_acc:{k}" for k in classes]
        if any(k not in c.columns for k in val_cols):
            raise ValueError("qos.classes needs per-class validation recalls: rerun gather_splits")
        test, val = c[cols].mean(axis=1), c[val_cols].mean(axis=1)
        # per-class recalls carry no interval here: the point value stands for both ends
        for split, v in (("val", val), ("test", test)):
            for k in (split, f"{split}_lo", f"{split}_hi"):
                out[k] = v
    return out


def violations(row: Mapping, q: Mapping) -> list[dict]:
    """Every constraint ``row`` breaks, with the value, the limit and by how much."""
    checks = [(key, col, kind, norm, q.get(key)) for key, (col, kind, norm) in CONSTRAINTS.items()]
    name, col, limit_col = PROFILE_LIMIT
    limit = row.get(limit_col)
    if limit is not None and math.isfinite(float(limit)):
        checks.append((name, col, "max", "relative", float(limit)))
    out = []
    for key, col, kind, norm, limit in checks:
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
    return {k: r[k] if isinstance(r[k], str) else _num(r[k]) for k in POINT_FIELDS}


def _finite(v, worst=math.inf):
    v = float(v)
    return v if math.isfinite(v) else worst


def _rank_key(r: Mapping):
    acc, p95 = float(r["accuracy"]), float(r["latency_p95_s"])
    return (
        -acc if math.isfinite(acc) else math.inf,
        p95 if math.isfinite(p95) else math.inf,
        r["layer_index"],
    )


def recommend_group(points: pd.DataFrame, q: Mapping, outcomes=None) -> dict:
    """Recommendation, nearest miss and Pareto front for one profile × protocol × loss;
    ``outcomes`` (:class:`isplit.recommend.ties.Outcomes`) decide the ties."""
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
        best, tied, test = ties.choose(feas, outcomes, float(q["margin"]))
        out["status"] = "ok"
        out["tied"] = [r["layer"] for r in sorted(tied, key=lambda r: r["layer_index"])]
        out["tie_test"] = test
        out["recommended"] = _point(best)
        out["nearest_miss"] = None
        out["message"] = (
            f"{best['label']}: accuracy {best['accuracy']:.4f} (validation, delivered), "
            f"p95 {fmt_s(best['latency_p95_s'])}"
            + (f"; as accurate as {len(tied) - 1} other(s)" if len(tied) > 1 else "")
        )
    else:
        score, r, v = min(misses, key=lambda m: (m[0], *_rank_key(m[1])))
        out["status"] = "none"
        out["tied"] = []
        out["tie_test"] = None
        out["recommended"] = None
        out["nearest_miss"] = {**_point(r), "violation": _num(score), "violations": v}
        broken = "; ".join(f"{x['constraint']} by {fmt_excess(x)}" for x in v)
        out["message"] = f"nothing meets the constraints; nearest miss {r['label']} ({broken})"
    out["pareto"] = [_point(r) for r in front(points).to_dict("records")]
    return out


def points_table(lat: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    """latency.parquet rows with the accuracies: validation and test, plain and delivered."""
    # the device's work is in latency.parquet; older files without it take the splits' own
    have = [c for c in ("device_params", "device_flops") if c in lat.columns]
    drop = [c for c in ("accuracy",) if c in lat.columns]
    pts = lat.drop(columns=drop).merge(
        cand.drop(columns=have), on="layer", how="left", validate="many_to_one"
    )
    kept = 1.0 - pts["frame_loss"].astype(float)
    pts["val_accuracy"] = pts["val"]
    pts["accuracy"] = pts["val"] * kept
    pts["accuracy_lo"] = pts["val_lo"] * kept
    pts["accuracy_hi"] = pts["val_hi"] * kept
    pts["test_accuracy"] = pts["test"]
    pts["test_accuracy_lo"] = pts["test_lo"]
    pts["test_accuracy_hi"] = pts["test_hi"]
    pts["delivered_test_accuracy"] = pts["test"] * kept
    for col in POINT_FIELDS:
        if col not in pts:
            pts[col] = np.nan  # an older latency.parquet without intervals
    if "device_max_params" not in pts:
        pts["device_max_params"] = np.nan
    return pts


def run(
    *,
    latency_path: str | Path,
    splits_path: str | Path,
    finetune_metrics_path: str | Path | None,
    cfg: Mapping | None,
    out_json: str | Path,
    metric: str = "top1",
    camera_path: str | Path | None = None,
    outcomes_path: str | Path | None = None,
    camera_predictions_path: str | Path | None = None,
) -> dict:
    """Write ``recommendation.json`` (schema in the module docstring) atomically and return it.

    ``cfg`` is the ``qos`` config section; ``finetune_metrics_path`` gives LC's and RC's
    accuracy (``None``: unknown, so they fail any accuracy constraint); ``metric``: the
    experiment's accuracy metric (``splits.parquet`` columns ``val_<metric>``, ``<metric>``);
    ``outcomes_path`` (the evaluation's ``outcomes.parquet``) and ``camera_predictions_path``
    (the camera stage's per-image predictions) give the paired tie test
    (:mod:`isplit.recommend.ties`)."""
    q = settings("qos", cfg).to_dict()
    lat = pd.read_parquet(latency_path)
    splits = pd.read_parquet(splits_path)
    finetune = None
    if finetune_metrics_path is not None:
        finetune = json.loads(Path(finetune_metrics_path).read_text())
    classes = list(q["classes"]) if q["classes"] else None
    camera = pd.read_parquet(camera_path) if camera_path else None
    cand = candidate_table(splits, finetune, classes, metric, camera)
    outcomes = ties.load(outcomes_path, camera_predictions_path, finetune, metric, classes)
    pts = points_table(lat, cand)
    if not q["include_endpoints"]:
        pts = pts[~pts["layer"].map(is_endpoint)]
    groups = []
    keys = ["profile", "protocol", "loss"]
    order = {p: i for i, p in enumerate(dict.fromkeys(lat["profile"]))}
    for (profile, protocol, loss), g in sorted(
        pts.groupby(keys, sort=False), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])
    ):
        first = g.iloc[0]
        groups.append(
            {
                "profile": profile,
                "protocol": protocol,
                "loss": float(loss),
                "loss_model": str(first.get("loss_model", "iid")),
                "bandwidth_bps": float(first["bandwidth_bps"]),
                "delay_s": float(first["delay_s"]),
                "device_profile": str(first.get("device_profile", "")),
                "server_profile": str(first.get("server_profile", "")),
                **recommend_group(g, q, outcomes),
            }
        )
    if classes:
        what = f"mean validation recall of classes {classes} (test beside it)"
    else:
        what = f"validation {metric} (test {metric} beside it)"
    out = {
        "constraints": q,
        "metric": metric,
        "selection": "validation",
        "accuracy_metric": f"{what}; UDP: x (1 - frame loss), a lost frame counts as wrong",
        "accuracy": {r["layer"]: _num(r["val"]) for r in cand.to_dict("records")},
        "test_accuracy": {r["layer"]: _num(r["test"]) for r in cand.to_dict("records")},
        "groups": groups,
    }
    write_json(out_json, out, allow_nan=False)
    return out
