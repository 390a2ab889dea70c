"""How strongly a predictor ranks the splits by their accuracy, with an interval whose coverage
is measured.

The statistic
    ``ρ = corr(M r, M p)``: the correlation of the predictor's ranks ``r`` with the splits'
    accuracies ``p``, after both are residualised by ``M`` (a projection: ``M = I − X X⁺`` with
    ``X`` an intercept and control columns). Three designs:

    * ``plain``: ``X`` = intercept. ρ is the correlation of the predictor's rank with accuracy.
    * ``partial``: ``X`` adds the ranks of −size and depth. What the predictor says about
      accuracy beyond activation size and depth.
    * ``within_size``: ``X`` adds one indicator per group of splits of equal activation size and
      the rank of depth. What the predictor says among splits of the same size, beyond a common
      depth trend; groups of one split drop out. (Kendall's τ inside runs of consecutive
      equal-size points, used before, let depth rank the points inside each group.)

    Accuracies enter as values, not ranks: a measured accuracy is the true one plus noise whose
    covariance the bootstrap measures, and the interval below needs that noise to add, which
    ranks of noisy values do not. The predictor enters as ranks (its scale is arbitrary).

Why not a bootstrap percentile interval
    Noise in the accuracies can only scramble a ranking, so the measured ρ is biased toward 0,
    and a bootstrap replicate (the same noise added again) more so: the percentile interval sits
    below the estimate. For a well-measured ρ the basic bootstrap repairs this; for the partial
    and within-size statistics, whose signal is what is left after size and depth and is of the
    order of the noise, neither does (coverage 70–80 % in :mod:`isplit.evaluation.coverage`).

The interval: a test inverted
    The measured accuracies are ``p̂ ~ N(p, Σ)``, with ``Σ`` the bootstrap covariance of the
    splits' accuracies (images and seeds resampled; splits are strongly correlated because
    they err on the same images). The parameter is ``θ = a·Mp / |Mp|`` for a direction ``a``
    (``a = M r / |M r|`` for ρ; a difference of two such for a paired difference of two
    predictors). For each candidate θ₀ on a grid, a truth ``p₀`` is built that has ``θ(p₀) =
    θ₀`` and otherwise looks like the data: the part of ``p̂`` that ``M`` removes is kept, the
    residual's length is the noise-corrected ``|Mp̂|² − tr(MΣ)`` and its direction is rotated
    toward ``a`` until θ₀ holds. ``p̂`` is redrawn from ``N(p₀, Σ)`` many times (the same
    draws for every θ₀) and θ₀ is kept when the measured statistic is inside the central 95 %
    of its redraws. The interval is the range of kept θ₀; where the redraws are narrower than
    the grid's step, candidates are added inside the steps where the verdict changes. When no
    θ₀ is kept (the noise-corrected length underestimates the signal), the length is raised by
    one to three standard deviations of its estimate until some θ₀ is. Coverage of this
    construction for ρ, partial ρ and the within-size statistic at truths 0, 0.5 and 0.8:
    92–99 % in 200 simulated studies (tests/unit/test_coverage.py, docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

DESIGNS = ("plain", "partial", "within_size")
GRID = np.linspace(-0.995, 0.995, 81)
CI_LEVEL = 0.95
#: redraws per candidate value in reported intervals (the coverage simulation uses 500)
N_SIM = 2000


def residual_maker(columns: Sequence[np.ndarray], k: int) -> np.ndarray:
    """``M = I − X X⁺`` for ``X`` = an intercept and ``columns`` (each of length ``k``)."""
    x = np.column_stack([np.ones(k), *columns]) if len(columns) else np.ones((k, 1))
    return np.eye(k) - x @ np.linalg.pinv(x)


def design(kind: str, sizes, depth) -> np.ndarray:
    """``M`` of one of :data:`DESIGNS` for splits with activation ``sizes`` and ``depth``."""
    sizes, depth = np.asarray(sizes, float), np.asarray(depth, float)
    k = len(sizes)
    if kind == "plain":
        return residual_maker([], k)
    if kind == "partial":
        return residual_maker([rankdata(-sizes), rankdata(depth)], k)
    if kind == "within_size":
        _, group = np.unique(sizes, return_inverse=True)
        dummies = [(group == g).astype(float) for g in range(1, group.max() + 1)]
        return residual_maker([*dummies, rankdata(depth)], k)
    raise ValueError(f"design {kind!r} is not one of {DESIGNS}")


def size_pairs(sizes) -> int:
    """Pairs of splits that share an activation size: what ``within_size`` learns from."""
    _, counts = np.unique(np.asarray(sizes), return_counts=True)
    return int(sum(c * (c - 1) // 2 for c in counts))


def direction(x, m: np.ndarray) -> np.ndarray:
    """``M r / |M r|`` for the ranks ``r`` of predictor values ``x`` (rows allowed: one
    direction per replicate). NaN where ``M`` leaves nothing of the ranks."""
    x = np.asarray(x, float)
    r = rankdata(x, axis=-1) @ m.T
    norm = np.linalg.norm(r, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 1e-9, r / norm, np.nan)


def setup(kind: str, x, sizes, depth, minus=None) -> tuple[np.ndarray, np.ndarray]:
    """``(a, M)`` of statistic ``kind`` for predictor values ``x`` over splits with activation
    ``sizes`` and ``depth`` (all known): ``a`` its direction, or the difference with predictor
    ``minus``'s (a paired comparison)."""
    m = design(kind, sizes, depth)
    a = direction(x, m)
    if minus is not None:
        a = a - direction(minus, m)
    return a, m


def measured(a: np.ndarray, m: np.ndarray, y) -> np.ndarray | float:
    """``a·My / |My|`` for accuracies ``y`` (K,) or rows (B, K); ``a`` (K,) or rows (B, K)."""
    y = np.asarray(y, float)
    my = y @ m.T
    norm = np.linalg.norm(my, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sum(a * my, axis=-1) / norm
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class Curve:
    """The inverted test's confidence curve: candidate values θ₀ (``grid``), the measured
    statistic, its redraws under each θ₀ (grid × draws) and the share of them below the
    measured one (``below``: 0.5 where θ₀ fits the data best, near 0 or 1 where it does not)."""

    grid: np.ndarray
    measured: float
    redraws: np.ndarray
    below: np.ndarray


EMPTY = Curve(np.zeros(0), float("nan"), np.zeros((0, 0)), np.zeros(0))


def curve(
    a: np.ndarray,
    m: np.ndarray,
    p_hat: np.ndarray,
    sigma: np.ndarray,
    *,
    level: float = 0.95,
    n_sim: int = N_SIM,
    seed: int = 0,
    refine: bool = False,
) -> Curve:
    """The confidence curve for ``θ = a·Mp / |Mp|`` (see the module docstring); ``a`` need
    not be a unit vector (a paired difference of two directions: θ then ranges over ±|a|).
    :data:`EMPTY` where the statistic is undefined. On :data:`GRID` (what :func:`pooled`
    needs), or with ``refine`` also between grid points where the test's verdict changes: a
    well-measured statistic's redraws can be narrower than the grid's step."""
    a = np.asarray(a, float)
    span = float(np.linalg.norm(a))
    if not np.all(np.isfinite(a)) or span < 1e-12:
        return EMPTY
    unit = a / span
    t_obs = measured(a, m, p_hat)
    mp = m @ p_hat
    kept = p_hat - mp
    other = mp - (unit @ mp) * unit
    other_norm = np.linalg.norm(other)
    u = other / other_norm if other_norm > 1e-12 else _orthogonal(unit, m)
    rng = np.random.default_rng(seed)
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    root = v * np.sqrt(np.clip(w, 0, None))  # root @ root.T == sigma, also when singular
    noise = rng.standard_normal((n_sim, len(p_hat))) @ root.T
    length2 = float(mp @ mp - np.trace(m @ sigma))
    redrawn = (p_hat + noise) @ m.T
    spread = float(np.std(np.einsum("bk,bk->b", redrawn, redrawn)))

    def redraws(thetas, length):
        sims = np.zeros((len(thetas), n_sim))
        for j, theta in enumerate(thetas):
            c = theta / span
            p0 = kept + length * (c * unit + np.sqrt(max(1 - c * c, 0.0)) * u)
            sims[j] = measured(a, m, p0 + noise)
        return sims

    grid = GRID * span
    for extra in range(4):
        length = np.sqrt(max(length2 + extra * spread, 1e-12))
        sims = redraws(grid, length)
        below = _below(sims, t_obs)
        if _kept(below, level).any() or (refine and len(_between(grid, below, level))):
            break
    for _ in range(4 if refine else 0):
        new = _between(grid, below, level)
        if not len(new):
            break
        grid = np.concatenate([grid, new])
        sims = np.concatenate([sims, redraws(new, length)])
        order = np.argsort(grid, kind="stable")
        grid, sims = grid[order], sims[order]
        below = _below(sims, t_obs)
    return Curve(grid, t_obs, sims, below)


def _between(grid: np.ndarray, below: np.ndarray, level: float, n: int = 16) -> np.ndarray:
    """New candidate values inside each grid step where the verdict changes (kept ↔ rejected,
    or the measured value passes the median of the redraws with neither end kept)."""
    ok = _kept(below, level)
    change = (ok[:-1] != ok[1:]) | ((below[:-1] - 0.5) * (below[1:] - 0.5) < 0)
    step = np.diff(grid)
    change &= step > 1e-6 * (grid[-1] - grid[0])
    return np.concatenate(
        [np.linspace(grid[k], grid[k + 1], n + 2)[1:-1] for k in np.flatnonzero(change)]
        or [np.zeros(0)]
    )


def _below(sims: np.ndarray, t_obs: float) -> np.ndarray:
    return np.mean(sims < t_obs, axis=1) + 0.5 * np.mean(sims == t_obs, axis=1)


def _kept(below: np.ndarray, level: float) -> np.ndarray:
    return 2 * np.minimum(below, 1 - below) >= 1 - level


def interval_from_curve(c: Curve, level: float = CI_LEVEL) -> tuple[float, float]:
    """The θ₀ the test keeps at ``level``, as an interval (ends of the grid open to ±|a|)."""
    ok = _kept(c.below, level) if len(c.grid) else np.zeros(0, bool)
    if not ok.any():
        return (float("nan"), float("nan"))
    lo, hi = c.grid[ok].min(), c.grid[ok].max()
    span = c.grid[-1] / GRID[-1]  # refinement keeps the grid's ends
    return (-span if lo == c.grid[0] else float(lo), span if hi == c.grid[-1] else float(hi))


def interval(a, m, p_hat, sigma, *, level: float = CI_LEVEL, n_sim: int = N_SIM, seed: int = 0):
    """Confidence interval for ``θ = a·Mp / |Mp|`` (:func:`curve`, inverted)."""
    c = curve(a, m, p_hat, sigma, level=level, n_sim=n_sim, seed=seed, refine=True)
    return interval_from_curve(c, level)


def pooled(curves: Sequence[Curve], level: float = CI_LEVEL) -> tuple[float, tuple]:
    """A common value of θ across independent studies (network × dataset pairs, unit
    directions): the test of θ₀ whose statistic is the mean of the studies' measured values,
    its null distribution the mean of their redraws under θ₀ (independent studies: draw ``j``
    of each is one draw of the mean). Returns (the mean measured value, the interval)."""
    kept = [c for c in curves if len(c.grid)]
    if not kept:
        return float("nan"), (float("nan"), float("nan"))
    t_obs = float(np.mean([c.measured for c in kept]))
    sims = np.mean([c.redraws for c in kept], axis=0)
    return t_obs, interval_from_curve(Curve(GRID, t_obs, sims, _below(sims, t_obs)), level)


def _orthogonal(unit: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Some unit vector in M's range orthogonal to ``unit`` (when the data give none)."""
    for col in m.T:
        v = col - (col @ unit) * unit
        if np.linalg.norm(v) > 1e-9:
            return v / np.linalg.norm(v)
    return np.zeros_like(unit)
