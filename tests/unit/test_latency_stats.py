"""isplit.latency.stats: percentiles pooled over independent runs, with intervals from the
runs (a t interval on the runs' bootstrap standard error), and their coverage where the frames
of a run are correlated (a simulation with a known answer)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from isplit.latency import stats


def _runs(rng, n_runs: int, n_frames: int = 100, run_sd: float = 20.0, rho: float = 0.8):
    """Latencies 100 + u_run + AR(1) noise (sd 10): one loss pattern per run shifts all of
    its frames, and a frame queued behind another shares its delay."""
    lats = []
    for _ in range(n_runs):
        e = np.empty(n_frames)
        e[0] = rng.normal(0, 10)
        for i in range(1, n_frames):
            e[i] = rho * e[i - 1] + rng.normal(0, 10 * np.sqrt(1 - rho**2))
        lats.append(100 + rng.normal(0, run_sd) + e)
    return lats, [np.ones(n_frames, int) for _ in lats]


def test_one_run_is_the_plain_stratified_estimate():
    lats, labs = _runs(np.random.default_rng(0), 1)
    one = stats.stratified_runs(lats, labs, {1: 1.0})
    ref = stats.stratified(lats[0], labs[0], {1: 1.0}, n_boot=0)
    assert (one.p50, one.p95, one.n) == (ref.p50, ref.p95, ref.n)
    assert np.isnan(one.p50_lo)  # one run says nothing about the next loss pattern
    with pytest.raises(ValueError, match="one latency and one stratum array per run"):
        stats.stratified_runs(lats, labs * 2, {1: 1.0})


def test_pooled_point_and_a_wider_interval_than_resampling_frames():
    lats, labs = _runs(np.random.default_rng(1), 6)
    pooled = stats.stratified(np.concatenate(lats), np.concatenate(labs), {1: 1.0}, n_boot=0)
    runs = stats.stratified_runs(lats, labs, {1: 1.0}, seed=3)
    frames = stats.stratified(np.concatenate(lats), np.concatenate(labs), {1: 1.0}, seed=3)
    assert (runs.p50, runs.p95) == (pooled.p50, pooled.p95)
    assert runs.p50_lo <= runs.p50 <= runs.p50_hi
    assert runs.p95_hi - runs.p95_lo > 5 * (frames.p95_hi - frames.p95_lo)
    assert runs == stats.stratified_runs(lats, labs, {1: 1.0}, seed=3)  # seeded


@pytest.mark.slow
def test_coverage_of_run_intervals_against_frame_resampling():
    """True p50 = 100 and p95 = 100 + 1.645·√(20² + 10²). Resampling frames treats 1,000
    correlated frames as independent and covers the truth rarely; the t interval from the 10
    runs covers the p50 near its level (the p95, from 10 run effects, less: docs/latency.md
    §7)."""
    rng = np.random.default_rng(0)
    truth = np.array([100.0, 100.0 + norm.ppf(0.95) * np.hypot(20, 10)])
    reps, hit_runs, hit_frames = 200, np.zeros(2), np.zeros(2)
    for rep in range(reps):
        lats, labs = _runs(rng, 10)
        r = stats.stratified_runs(lats, labs, {1: 1.0}, n_boot=100, seed=rep)
        f = stats.stratified(np.concatenate(lats), np.concatenate(labs), {1: 1.0}, seed=rep)
        hit_runs += [r.p50_lo <= truth[0] <= r.p50_hi, r.p95_lo <= truth[1] <= r.p95_hi]
        hit_frames += [f.p50_lo <= truth[0] <= f.p50_hi, f.p95_lo <= truth[1] <= f.p95_hi]
    cover_runs, cover_frames = hit_runs / reps, hit_frames / reps
    assert 0.9 <= cover_runs[0] <= 0.99, cover_runs  # 0.95 here
    assert cover_runs[1] >= 0.7, cover_runs  # 0.785 here
    assert (cover_frames <= 0.3).all(), cover_frames
    assert (cover_runs > cover_frames + 0.3).all()
