"""Candidate split points: I-SPLIT's CUI maxima, per-class bests, the CDE size baseline.

Rules (docs/methods.md; each decided here and tested in ``tests/unit/test_candidates.py``):

* **Local maxima of log10 CUI** (flag ``isplit-max``), on the whole curve of probe points:
  a maximal run of equal values (a plateau; a single point is a run of one) is a maximum when
  every neighbour it has is strictly lower. It counts once, at its **first** point (the
  earliest split: the least computation on the device). The first and the last point have one
  neighbour and are maxima when strictly higher than it, so the global maximum of the whole
  curve is always a local maximum (the public code never reports an end, which hides a rising
  end; ``exclude_last`` drops the trivial "all on device" end when wanted, ``ends: false``
  restores the public code's rule). A constant curve has no local maximum; NaN is never one
  and blocks its neighbours (a curve from :mod:`isplit.importance.cui` has no NaN).
  The public code's ``np.diff(np.sign(np.diff(v))) < 0`` differs: it reports a plateau at
  both ends and a rising shelf (1, 2, 2, 3) as a maximum.
* **No input point.** The public code prepends an input point equal to the first layer
  (:mod:`isplit.importance.cui`, ``layer_index = -1``), and its rule then flags the first layer as a
  maximum whenever the second is lower: a flat segment followed by a drop (docs/methods.md §3.1).
  Rows with ``layer_index < 0`` are dropped before anything is selected, so the input point
  never changes a result: the first layer is judged against its one real neighbour only. It
  is then a maximum exactly when it is higher than the second layer — by the end rule above,
  on its own merit; ``ends: false`` or ``exclude_first: 1`` drop it.
* **Predicted best split** (``isplit-best``): the global maximum of the ``all`` curve among
  the allowed points (first one on ties) — "the best splitting point for the network is the
  global maximum of the CUI curve" [project page]. It need not be a local maximum of the whole
  curve (e.g. the last allowed point of a rising curve when ``exclude_last`` > 0).
* **Per-class best split** (``class-best:<class name>``): the argmax of each class curve among
  the allowed points.
* **CDE baseline** (``cde``): the activation-size curve (float32 bytes of one image at the
  configured input size, recorded by the importance stage in the curve's metadata). A point
  is a CDE candidate when its size is strictly smaller than the previous point's; the first
  point is compared with the input image (C_in×H×W×4 bytes). These are the size drops where
  a split transmits less than the layer before it (VGG's pools; ResNet's maxpool and the
  first block of each later stage).
* **Allowed points**: all probe points but the first ``exclude_first`` and the last
  ``exclude_last``. Flags are computed on the whole curve, then only allowed points can be
  selected.
* ``mode``: ``isplit`` selects the points flagged ``isplit-max``, ``isplit-best`` and (if
  ``per_class``) ``class-best``; ``cde`` the ``cde`` points; ``union`` both; ``all`` every
  allowed point (the oracle: retraining at every split measures how well CUI predicts
  accuracy), flagged ``oracle``.

``candidates.tsv`` (tab-separated, one row per selected point in probe order; the Snakemake
checkpoint that drives the per-candidate fan-out, written atomically, byte-identical on rerun):

==========  ======  ====================================================================
layer       str     probe module name (the fan-out key)
layer_index int     position along the probe list
label       str     tick label
cui         float   CUI (mean over all images)
log10_cui   float   log10 of it (-inf if 0)
bytes       int     float32 bytes of the activation of one image at the input size
reasons     str     ";"-joined flags that hold at this point, in this order: ``isplit-max``,
                    ``isplit-best``, ``class-best:<class name>`` (class order), ``cde``,
                    ``oracle`` — all that hold, also those the mode did not select on
==========  ======  ====================================================================

``candidates_all.tsv`` beside it: every probe point (selected or not) with the same first six
columns, then ``allowed``, ``isplit_max``, ``isplit_best``, ``cde``, ``selected`` (``True`` /
``False``), ``class_best`` (a JSON list of class names, ``[]`` if none) and ``reasons`` — for
figures and analysis; :func:`isplit.io.tables.read_candidates` reads it with typed columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.config import CandidatesSettings, settings
from isplit.io.tables import read_metadata, write_tsv

MODES = ("isplit", "cde", "union", "all")
COLUMNS = ("layer", "layer_index", "label", "cui", "log10_cui", "bytes", "reasons")
ALL_COLUMNS = COLUMNS[:6] + (
    "allowed",
    "isplit_max",
    "isplit_best",
    "cde",
    "selected",
    "class_best",
    "reasons",
)


def local_maxima(values: Sequence[float], ends: bool = True) -> np.ndarray:
    """Boolean mask of the local maxima of ``values`` (rules in the module docstring);
    ``ends=False`` never reports a run touching the first or last point (the public code)."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[j + 1] == v[i]:
            j += 1
        touches_end = i == 0 or j == n - 1
        if not (i == 0 and j == n - 1) and (ends or not touches_end):  # constant: none
            left = i == 0 or v[i - 1] < v[i]
            right = j == n - 1 or v[j + 1] < v[i]
            out[i] = bool(left and right)
        i = j + 1
    return out


def size_drops(sizes: Sequence[int], input_size: int | None = None) -> np.ndarray:
    """Boolean mask of points smaller than the previous one (the first vs ``input_size``)."""
    s = np.asarray(sizes, dtype=np.int64)
    out = np.zeros(len(s), dtype=bool)
    if len(s):
        out[1:] = s[1:] < s[:-1]
        out[0] = input_size is not None and s[0] < input_size
    return out


def _first_argmax(v: np.ndarray, allowed: np.ndarray) -> int | None:
    w = np.where(allowed & ~np.isnan(v), v, -np.inf)
    if not (allowed & ~np.isnan(v)).any():
        return None
    return int(np.argmax(w))  # first index on ties


def select(
    curve: pd.DataFrame,
    sizes: dict[str, int],
    *,
    mode: str = "union",
    exclude_first: int = 0,
    exclude_last: int = 0,
    per_class: bool = True,
    ends: bool = True,
    input_size: int | None = None,
) -> pd.DataFrame:
    """Every probe point with its flags (the ``candidates_all.tsv`` table).

    ``curve`` is :func:`isplit.importance.cui.curve`'s table; ``sizes`` maps module name →
    float32 bytes of one image's activation; ``input_size`` is the input image's bytes.
    """
    if mode not in MODES:
        raise ValueError(f"candidates.mode {mode!r} is not one of {MODES}")
    exclude_first, exclude_last = int(exclude_first), int(exclude_last)
    if exclude_first < 0 or exclude_last < 0:
        raise ValueError("exclude_first / exclude_last must be >= 0")
    cur = curve[curve["layer_index"] >= 0]  # the input point is never a split point
    glob = cur[cur["group"] == "all"].sort_values("layer_index", kind="stable")
    glob = glob.reset_index(drop=True)
    n = len(glob)
    if n == 0:
        raise ValueError("the curve has no probe points")
    if exclude_first + exclude_last >= n:
        raise ValueError(
            f"exclude_first={exclude_first} + exclude_last={exclude_last} leave none of the "
            f"{n} probe points"
        )
    missing = [name for name in glob["layer"] if name not in sizes]
    if missing:
        raise ValueError(f"no activation size for {missing}: curve and model do not match")
    allowed = np.zeros(n, dtype=bool)
    allowed[exclude_first : n - exclude_last] = True
    logv = glob["log10_mean"].to_numpy(np.float64)
    isplit_max = local_maxima(logv, ends=ends)
    best = np.zeros(n, dtype=bool)
    b = _first_argmax(logv, allowed)
    if b is not None:
        best[b] = True
    size = np.array([int(sizes[name]) for name in glob["layer"]], dtype=np.int64)
    cde = size_drops(size, input_size)

    class_best: list[list[str]] = [[] for _ in range(n)]
    pos = {li: i for i, li in enumerate(glob["layer_index"])}
    per = cur[cur["group"] != "all"]
    for (_, group), sub in per.groupby(["class", "group"], sort=True):
        sub = sub.sort_values("layer_index", kind="stable")
        idx = np.array([pos[li] for li in sub["layer_index"]])
        mask = np.zeros(n, dtype=bool)
        v = np.full(n, np.nan)
        v[idx] = sub["log10_mean"].to_numpy(np.float64)
        mask[idx] = True
        k = _first_argmax(v, allowed & mask)
        if k is not None:
            class_best[k].append(str(group))
    has_class = np.array([bool(c) for c in class_best])

    sel_isplit = isplit_max | best | (has_class if per_class else False)
    selected = (
        allowed
        & {
            "isplit": sel_isplit,
            "cde": cde,
            "union": sel_isplit | cde,
            "all": np.ones(n, dtype=bool),
        }[mode]
    )
    reasons = []
    for i in range(n):
        r = []
        if isplit_max[i]:
            r.append("isplit-max")
        if best[i]:
            r.append("isplit-best")
        r += [f"class-best:{c}" for c in class_best[i]]
        if cde[i]:
            r.append("cde")
        if mode == "all" and allowed[i]:
            r.append("oracle")
        reasons.append(";".join(r))
    out = pd.DataFrame(
        {
            "layer": glob["layer"].astype(str),
            "layer_index": glob["layer_index"].astype(np.int64),
            "label": glob["label"].astype(str),
            "cui": glob["mean"].astype(np.float64),
            "log10_cui": logv,
            "bytes": size,
            "allowed": allowed,
            "isplit_max": isplit_max,
            "isplit_best": best,
            "cde": cde,
            "selected": selected,
            "class_best": class_best,
            "reasons": reasons,
        }
    )
    return out[list(ALL_COLUMNS)]


def activation_sizes(curve_path: str | Path) -> tuple[dict[str, int], int]:
    """(module name → float32 bytes of one image's activation, input image bytes), as the
    importance stage recorded them in the curve's metadata."""
    meta = read_metadata(curve_path)
    points = meta.get("probe_points") or []
    if not points or any("bytes" not in p for p in points) or "input_bytes" not in meta:
        raise ValueError(
            f"{curve_path} does not record the probe points' activation sizes: it was written "
            "by an older isplit; rerun the importance stage"
        )
    return {p["name"]: int(p["bytes"]) for p in points}, int(meta["input_bytes"])


def run(
    *,
    curve_path: str | Path,
    cfg: CandidatesSettings | dict,
    out_tsv: str | Path,
    all_tsv: str | Path,
) -> pd.DataFrame:
    """``curve.parquet`` → ``candidates.tsv`` (the selected points) and ``all_tsv`` (every
    probe point with its flags). Returns the selected rows."""
    c = settings("candidates", cfg)
    curve = pd.read_parquet(curve_path)
    sizes, input_size = activation_sizes(curve_path)
    table = select(
        curve,
        sizes,
        mode=c.mode,
        exclude_first=c.exclude_first,
        exclude_last=c.exclude_last,
        per_class=c.per_class,
        ends=c.ends,
        input_size=input_size,
    )
    chosen = table[table["selected"]][list(COLUMNS)].reset_index(drop=True)
    write_tsv(table.assign(class_best=[json.dumps(c) for c in table["class_best"]]), all_tsv)
    write_tsv(chosen, out_tsv)
    return chosen
