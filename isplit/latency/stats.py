"""Latency percentiles that do not depend on the seed, with intervals.

Why stratify: under loss a frame's latency is a mixture — frames none of whose packets was lost
take the short, almost deterministic path; frames with a loss wait for a retransmission (about an
RTT with SACK/RACK, an RTO of 200 ms or more for a lost tail segment). With one-packet frames at
p = 5 % the two parts weigh 95 % and 5 %: the p95 sits exactly on the jump between them, and a
plain sample percentile lands on either side depending on whether the seed drew a few more or a
few fewer lossy frames — however many frames are simulated. The weight of the no-loss stratum,
though, is known exactly (:func:`isplit.latency.loss.clean_probability`), so the distribution is
estimated as the *mixture* ``F(x) = w · F_clean(x) + (1 − w) · F_lossy(x)`` with the exact ``w``
and each stratum's empirical distribution from the simulation (post-stratification). The
binomial noise of the stratum sizes, the cause of the flips, is gone; what remains is the noise
of each stratum's own quantiles, which shrinks with the number of frames and is reported.

Percentiles are the inverse of the mixture CDF (the smallest value whose cumulative weight
reaches q). Intervals are percentile bootstrap intervals, resampling frames within each stratum
(``n_boot`` resamples, seeded). Frames of a stream are not independent when frames queue (an
``fps`` above what a stage sustains); the interval is then optimistic, which the columns say by
giving ``n`` (frames) alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
#: a table's columns for these percentiles with their intervals (latency.parquet, and the
#: recommendation's points that copy them)
PERCENTILE_COLUMNS = (
    "latency_p50_s",
    "latency_p50_lo_s",
    "latency_p50_hi_s",
    "latency_p95_s",
    "latency_p95_lo_s",
    "latency_p95_hi_s",
)


@dataclass(frozen=True)
class Percentiles:
    """p50 and p95 of the frame latency with their (``level``) intervals, from ``n`` frames."""

    p50: float
    p50_lo: float
    p50_hi: float
    p95: float
    p95_lo: float
    p95_hi: float
    mean: float
    n: int


def _mixture_quantiles(values: np.ndarray, weights: np.ndarray, qs) -> np.ndarray:
    """Inverse-CDF quantiles of a weighted sample, row by row (``values`` (B, n))."""
    order = np.argsort(values, axis=-1, kind="stable")
    v = np.take_along_axis(values, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(weights, order, axis=-1), axis=-1)
    cw /= cw[..., -1:]
    out = []
    for q in qs:
        # a small tolerance: a cumulative weight of exactly q (0.95 from 19/20) counts as reached
        idx = (cw < q - 1e-12).sum(axis=-1)
        out.append(np.take_along_axis(v, np.minimum(idx, v.shape[-1] - 1)[..., None], -1)[..., 0])
    return np.stack(out, axis=-1)


def stratified(
    latency: np.ndarray,
    stratum: np.ndarray,
    weights: dict[int, float],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Percentiles:
    """Post-stratified p50/p95 (see module doc) of ``latency`` (delivered frames only).

    ``stratum``: one integer label per value; ``weights``: label → probability of that stratum.
    A stratum without frames cannot be estimated: its weight goes to the others (so with too
    few frames for the lossy stratum the result is the plain sample percentile of the rest).
    """
    lat = np.asarray(latency, dtype=float)
    lab = np.asarray(stratum)
    n = lat.size
    if n == 0:
        nan = float("nan")
        return Percentiles(nan, nan, nan, nan, nan, nan, nan, 0)
    present = [s for s in weights if (lab == s).any() and weights[s] > 0]
    if not present:
        present = list(np.unique(lab))
        w = {s: 1.0 for s in present}
    else:
        w = {s: float(weights[s]) for s in present}
    total = sum(w.values())
    item_w = np.zeros(n)
    for s in present:
        sel = lab == s
        item_w[sel] = w[s] / total / sel.sum()
    keep = item_w > 0
    lat, lab, item_w = lat[keep], lab[keep], item_w[keep]
    p50, p95 = _mixture_quantiles(lat[None], item_w[None], (0.5, 0.95))[0]
    mean = float((lat * item_w).sum() / item_w.sum())
    if n_boot < 1:  # no intervals asked for
        nan = float("nan")
        return Percentiles(float(p50), nan, nan, float(p95), nan, nan, mean, n)
    rng = np.random.default_rng(seed)
    cols = [np.flatnonzero(lab == s) for s in present]
    idx = np.concatenate([rng.choice(c, size=(n_boot, c.size)) for c in cols], axis=1)
    boot = _mixture_quantiles(lat[idx], item_w[idx], (0.5, 0.95))
    a = (1 - level) / 2
    lo = np.quantile(boot, a, axis=0, method="inverted_cdf")
    hi = np.quantile(boot, 1 - a, axis=0, method="inverted_cdf")
    return Percentiles(
        float(p50), float(lo[0]), float(hi[0]), float(p95), float(lo[1]), float(hi[1]), mean, n
    )


def stratified_runs(
    latency: list[np.ndarray],
    stratum: list[np.ndarray],
    weights: dict[int, float],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Percentiles:
    """:func:`stratified` over the frames of several independent runs pooled, with intervals
    from the runs: the pooled estimate ± Student's t (runs − 1 degrees of freedom) times its
    standard error over ``n_boot`` resamples of whole runs (seeded).

    Why runs: within a run frames queue behind each other's recoveries, so their latencies are
    correlated, and resampling frames understates how much the next loss pattern moves the
    percentiles (in the simulation of tests/unit/test_latency_stats.py it covered 13–15 %);
    runs are independent (each its own seed). Why a t interval on the bootstrap standard error
    rather than the bootstrap's own percentiles: with 5 and 10 runs the percentile interval
    covered the p50 0.86–0.89 and the p95 0.49–0.64 there, this one 0.95–0.96 and 0.78–0.81
    (the p95 of a few pooled runs is biased towards the centre, which no width repairs;
    docs/latency.md §7)."""
    if len(latency) != len(stratum) or not latency:
        raise ValueError("one latency and one stratum array per run, at least one run")
    lat = [np.asarray(x, dtype=float) for x in latency]
    lab = [np.asarray(x) for x in stratum]

    def point(keep) -> tuple[float, float]:
        est = stratified(
            np.concatenate([lat[i] for i in keep]),
            np.concatenate([lab[i] for i in keep]),
            weights,
            n_boot=0,
        )
        return est.p50, est.p95

    pooled = stratified(np.concatenate(lat), np.concatenate(lab), weights, n_boot=0)
    r = len(lat)
    if r < 2 or n_boot < 2:
        return pooled
    from scipy.stats import t as student_t  # only where runs are pooled

    picks = np.random.default_rng(seed).integers(0, r, size=(n_boot, r))
    se = np.array([point(p) for p in picks]).std(axis=0, ddof=1)
    half = student_t.ppf(0.5 + level / 2, r - 1) * se
    return Percentiles(
        pooled.p50,
        pooled.p50 - float(half[0]),
        pooled.p50 + float(half[0]),
        pooled.p95,
        pooled.p95 - float(half[1]),
        pooled.p95 + float(half[1]),
        pooled.mean,
        pooled.n,
    )


def wilson(successes: int, n: int, level_z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0/0 → (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = level_z**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = level_z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)
