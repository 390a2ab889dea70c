"""The study's intervals hold the truth as often as they claim: simulated studies with a known
answer (isplit.evaluation.coverage), and the statistics' behaviour on tables built to fool
them."""

import numpy as np
import pytest

from isplit.evaluation import association, coverage, resample


@pytest.mark.slow  # ~30-60 s: 200 simulated studies, 9 scenarios
def test_inverted_intervals_cover_the_truth_90_to_99_percent():
    """ρ, partial ρ and the within-size statistic at true values 0, 0.5 and 0.8, ELPV-like
    noise (262 test images, 5 seeds, 19 MobileNetV2 splits): the nominal 95 % interval holds
    the truth in 90-99 % of 200 simulated studies; the percentile bootstrap, for contrast,
    misses a true ρ of 0.8 most of the time."""
    table = coverage.coverage(n_rep=200, n_boot=400, seed=0, methods=("inversion", "percentile"))
    ours = table[table["method"] == "inversion"]
    assert len(ours) == 9 and (ours["n_rep"] == 200).all()
    assert ours["coverage"].between(0.90, 0.99).all(), ours.to_string()
    assert (abs(ours["truth"] - ours["target"]) < 0.02).all()
    pct = table[(table["method"] == "percentile") & (table["target"] == 0.8)]
    assert (pct["coverage"] < 0.6).all(), pct.to_string()
    # the simulation has the noise it claims: per-split intervals as wide as ELPV's (~±0.055)
    d = coverage.Design()
    rng = np.random.default_rng(1)
    p = coverage.true_accuracy(d, rng)
    y = coverage.labels(d, d.n_test)
    c = coverage.outcomes(p, d, y, rng)
    draws = resample.draw(y, y, d.n_seeds, 400, 2)
    boot = resample.metric_rows(c, draws.test, draws.seeds, "balanced_accuracy")
    half = (np.quantile(boot, 0.975, axis=0) - np.quantile(boot, 0.025, axis=0)) / 2
    assert 0.04 < np.median(half) < 0.07


@pytest.mark.slow  # ~40 s
def test_pooled_interval_over_four_pairs_covers_the_common_truth():
    """The pooled interval (a test of a common value across independent pairs) holds the
    truth in most of 50 simulated four-pair studies, and finds a common 0.5 more often than a
    single pair does."""
    table = coverage.pooled_coverage(targets=(0.0, 0.5), statistics=("partial",), n_rep=50)
    assert (table["coverage"] >= 0.86).all(), table.to_string()
    assert table.loc[table["target"] == 0.5, "power"].item() > 0.75


@pytest.mark.slow  # ~10 s idle
def test_paired_difference_of_two_predictors_covers_the_truth():
    """ρ(A) − ρ(B) on the same splits and images, for true pairs (0.8, 0.8), (0.8, 0.5) and
    (0.5, 0): the interval holds the true difference in 88-99 % of 100 simulated studies."""
    table = coverage.difference_coverage(n_rep=100)
    assert table["coverage"].between(0.88, 0.99).all(), table.to_string()
    assert table["power"].iloc[0] < 0.15  # equal truths: rarely called different


def _noisy_table(p, sizes, depth, rng, n=262, seeds=5):
    d = coverage.Design(sizes=tuple(sizes), depth=tuple(depth), n_test=n, n_seeds=seeds)
    y = coverage.labels(d, n)
    c = coverage.outcomes(np.asarray(p), d, y, rng)
    draws = resample.draw(y, y, seeds, 400, int(rng.integers(2**31)))
    return resample.point(c, "balanced_accuracy"), np.cov(
        resample.metric_rows(c, draws.test, draws.seeds, "balanced_accuracy").T
    )


@pytest.mark.slow  # ~10-25 s
def test_within_size_statistic_is_not_fooled_by_depth():
    """Accuracy depends on depth only (a curved rise) and CUI = depth + noise: CUI ranks the
    splits well overall, but among splits of equal size, beyond depth, it knows nothing — the
    within-size interval covers 0 in (nearly) every simulated study, while the old statistic
    (Kendall's τ inside runs of equal size) calls CUI informative."""
    d = coverage.Design()
    sizes, depth = np.asarray(d.sizes, float), np.asarray(d.depth, float)
    p = 0.6 + 0.2 * depth**0.5
    m_within = association.design("within_size", sizes, depth)
    m_plain = association.design("plain", sizes, depth)
    rng = np.random.default_rng(3)
    covered, plain_positive, taus = 0, 0, []
    reps = 20
    for _ in range(reps):
        cui = depth + rng.normal(0, 0.05, len(depth))
        acc, sigma = _noisy_table(p, sizes, depth, rng)
        a = association.direction(cui, m_within)
        lo, hi = association.interval(a, m_within, acc, sigma)
        covered += lo <= 0 <= hi
        lo_p, _ = association.interval(association.direction(cui, m_plain), m_plain, acc, sigma)
        plain_positive += lo_p > 0
        taus.append(_kendall_in_equal_size_runs(cui, p, sizes))
    assert covered >= reps - 2, covered
    assert plain_positive == reps  # overall, CUI does rank the splits (through depth)
    # the old statistic, even on the true accuracies, credits CUI with what depth explains
    assert np.mean(taus) > 0.4 and np.mean(np.array(taus) > 0) > 0.8, taus


def _kendall_in_equal_size_runs(x, y, sizes):
    score = pairs = 0
    for v in np.unique(sizes):
        idx = np.flatnonzero(sizes == v)
        for i in idx:
            for j in idx[idx > i]:
                score += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
                pairs += 1
    return score / pairs


def test_statistics_on_exact_tables():
    """Without noise the statistic is the correlation it is defined as."""
    sizes = np.array([4, 4, 2, 2, 2, 1, 1, 3])
    depth = np.arange(8) / 7
    acc = np.array([0.5, 0.52, 0.6, 0.58, 0.65, 0.7, 0.72, 0.71])
    m = association.design("plain", sizes, depth)
    assert association.measured(association.direction(acc, m), m, acc) == pytest.approx(
        np.corrcoef(np.argsort(np.argsort(acc)), acc)[0, 1]
    )
    m = association.design("partial", sizes, depth)
    ones = association.direction(depth, m)
    assert np.isnan(ones).all()  # depth is a control: nothing is left of its ranks
    assert association.size_pairs(sizes) == 1 + 3 + 1
    m = association.design("within_size", sizes, depth)
    # a predictor constant inside every size group says nothing within sizes
    assert np.isnan(association.direction(sizes, m)).all()
    with pytest.raises(ValueError, match="design 'nope'"):
        association.design("nope", sizes, depth)


def test_a_well_measured_statistic_gets_an_interval_around_it_finer_than_the_grid():
    """Redraws narrower than the grid's step (accuracies far apart, little noise): the interval
    still holds the estimate and is narrower than one step, not a single grid point."""
    rng = np.random.default_rng(3)
    k = 12
    acc = np.linspace(0.45, 0.96, k) ** 0.3 + rng.normal(0, 0.002, k)
    sigma = np.full((k, k), 0.5e-7) + np.eye(k) * 0.5e-7
    m = association.design("plain", np.arange(k), np.arange(k))
    a = association.direction(np.arange(k) + rng.normal(0, 2, k), m)
    a = a - association.direction(np.arange(k), m)  # a paired difference: |a| < 2
    value = association.measured(a, m, acc)
    lo, hi = association.interval(a, m, acc, sigma, n_sim=500)
    step = np.diff(association.GRID).max() * np.linalg.norm(a)
    assert lo <= value <= hi
    assert 0 < hi - lo < step
