"""The Pareto front of a trade-off: lower cost (bytes sent, p95 latency) against higher value
(accuracy). Figures and the recommendation draw on the same definition."""

from __future__ import annotations

import numpy as np


def pareto_front(cost, value, tiebreak=None) -> np.ndarray:
    """Indices of the Pareto-optimal points, by cost ascending.

    A point is on the front when no other point costs at most as much with at least its value
    (one of them strictly). Of points with equal cost only the most valuable one can be on it;
    of exact duplicates only the one first in ``tiebreak`` order (default: the lowest index).
    Points with a non-finite cost or value are ignored.
    """
    c = np.asarray(cost, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    if c.shape != v.shape or c.ndim != 1:
        raise ValueError(f"cost and value must be 1-d of one length, got {c.shape}, {v.shape}")
    t = np.arange(len(c)) if tiebreak is None else np.asarray(tiebreak)
    ok = np.flatnonzero(np.isfinite(c) & np.isfinite(v))
    # cost ascending, then value descending, then tiebreak ascending
    order = ok[np.lexsort((t[ok], -v[ok], c[ok]))]
    front, best = [], -np.inf
    for i in order:
        if v[i] > best:
            front.append(int(i))
            best = v[i]
    return np.asarray(front, dtype=np.int64)
