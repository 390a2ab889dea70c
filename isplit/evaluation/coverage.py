"""Does a nominal 95 % interval cover the truth 95 % of the time? A simulation with a known
answer, for the study's rank statistics.

Why a simulation: a split's measured accuracy is its true accuracy plus the noise of a finite
test set and a few seeds, and noise can only scramble a ranking. A rank statistic measured on
noisy accuracies is therefore biased toward 0, and its bootstrap replicates (which add the same
noise again) are biased further: the percentile interval sits below the estimate and misses a
true ρ of 0.8 almost always. Whether an interval method corrects this is an empirical question
about *this* design (19 splits, a few hundred images, correlated errors), so it is answered by
simulating this design with known truths.

The model: ``K`` splits with true balanced accuracies ``p`` (a rising curve with bumps, like the
study's); each image has a difficulty shared by every split, each split its own per-image term
and each retraining seed its own, and a split classifies an image right when the sum falls below
the threshold that makes its per-class accuracy right (:func:`outcomes`). The variance shares
are set so that per-split intervals have the width the ELPV study measured (about ±0.055 with
262 test images). A predictor ``x`` is then built for each statistic with a known population
value (the statistic computed on ``x`` and the true ``p``), and the experiment is repeated:
draw a test set, compute the statistic and its bootstrap interval, count how often the interval
holds the truth (:func:`coverage`). The same runs give the power: how often the interval
excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from isplit.evaluation import association, resample
from isplit.evaluation.stats import Correctness, interval_from

#: activation bytes and share of FLOPs on the device of MobileNetV2's 19 probe points at 96 px
#: (the default experiment; ``isplit.nets.split.cost``)
MOBILENET_V2_96_BYTES = (294912, 147456, 55296, 55296, 18432, 18432, 18432, 9216, 9216, 9216,
                         9216, 13824, 13824, 13824, 5760, 5760, 5760, 11520, 46080)  # fmt: skip
MOBILENET_V2_96_DEPTH = (0.036, 0.070, 0.167, 0.253, 0.305, 0.342, 0.378, 0.403, 0.438, 0.472,
                         0.507, 0.549, 0.625, 0.701, 0.753, 0.805, 0.856, 0.933, 1.0)  # fmt: skip


@dataclass(frozen=True)
class Design:
    """What the simulated study looks like (defaults: the ELPV study with 5 seeds)."""

    sizes: tuple = MOBILENET_V2_96_BYTES
    depth: tuple = MOBILENET_V2_96_DEPTH
    n_test: int = 262
    n_seeds: int = 5
    minority: float = 0.31  # share of the rarer class
    class_gap: float = 0.08  # majority recall − balanced accuracy (= balanced − minority's)
    image_var: float = 0.6  # share of the latent noise common to all splits (image difficulty)
    split_var: float = 0.25  # per split and image
    seed_var: float = 0.15  # per split, seed and image
    accuracy: tuple = (0.62, 0.79)  # the true curve's range, first to best split
    bumps: float = 0.015  # sd of the true curve's deviations from a smooth rise

    @property
    def k(self) -> int:
        return len(self.sizes)


def designs(design: Design) -> dict[str, np.ndarray]:
    """The residual maker ``M`` of each of the study's statistics for this design."""
    return {k: association.design(k, design.sizes, design.depth) for k in association.DESIGNS}


def true_accuracy(design: Design, rng: np.random.Generator) -> np.ndarray:
    """A rising curve of balanced accuracies with bumps (the splits' truth)."""
    lo, hi = design.accuracy
    d = np.asarray(design.depth, float)
    return lo + (hi - lo) * np.sqrt(d) + rng.normal(0, design.bumps, design.k)


def labels(design: Design, n: int) -> np.ndarray:
    minority = int(round(design.minority * n))
    return np.r_[np.zeros(n - minority, int), np.ones(minority, int)]


def outcomes(p: np.ndarray, design: Design, y: np.ndarray, rng) -> Correctness:
    """Correctness (K splits × seeds × images) of a fresh data set with labels ``y``: class 0's
    recall is ``p + gap``, class 1's ``p − gap``, so the balanced accuracy is ``p``."""
    k, s, n = design.k, design.n_seeds, len(y)
    total = design.image_var + design.split_var + design.seed_var
    shared = rng.normal(0, np.sqrt(design.image_var / total), n)
    own = rng.normal(0, np.sqrt(design.split_var / total), (k, 1, n))
    seed = rng.normal(0, np.sqrt(design.seed_var / total), (k, s, n))
    recall = np.where(y == 0, design.class_gap, -design.class_gap)[None, :] + p[:, None]
    threshold = norm.ppf(np.clip(recall, 1e-6, 1 - 1e-6))  # (K, N)
    right = shared[None, None, :] + own + seed < threshold[:, None, :]
    return Correctness(right.astype(float), y, 2)


def predictor_for(
    m: np.ndarray, target: float, p: np.ndarray, design: Design, rng, tol: float = 0.02
) -> tuple[np.ndarray, float]:
    """A predictor whose statistic (design ``m``) against the true ``p`` is within ``tol`` of
    ``target``: a random mix of ``p``, depth, size and noise, searched until it lands.
    Returns (x, truth)."""
    depth = np.asarray(design.depth, float)
    size = -np.log10(np.asarray(design.sizes, float))

    def z(v):
        return (v - v.mean()) / (v.std() + 1e-12)

    for _ in range(200_000):
        a, b, c, e = rng.uniform(0, 1), rng.normal(0, 1), rng.normal(0, 1), rng.uniform(0, 3)
        x = a * z(p) + b * z(depth) + c * z(size) + e * rng.normal(0, 1, design.k)
        truth = association.measured(association.direction(x, m), m, p)
        if np.isfinite(truth) and abs(truth - target) < tol:
            return x, float(truth)
    raise RuntimeError(f"no predictor found with statistic {target} ± {tol}")


@dataclass
class Scenario:
    statistic: str
    target: float
    x: np.ndarray
    truth: float
    intervals: dict = field(default_factory=dict)
    estimates: list = field(default_factory=list)


METHODS = ("inversion", "basic", "percentile")


def coverage(
    design: Design = Design(),
    targets=(0.0, 0.5, 0.8),
    *,
    statistics=association.DESIGNS,
    n_rep: int = 200,
    n_boot: int = 400,
    seed: int = 0,
    methods=METHODS,
    level: float = 0.95,
) -> pd.DataFrame:
    """For every statistic and target: the truth, and per interval method the share of
    ``n_rep`` simulated studies whose interval holds the truth (``coverage``), excludes 0 on
    the positive side (``power``), and the mean width. One true accuracy curve is shared by all
    scenarios (so one simulated test set serves them all); each scenario has its own predictor.
    ``inversion`` is :func:`isplit.evaluation.association.interval`; ``basic`` and
    ``percentile`` are bootstrap intervals of the measured statistic."""
    rng = np.random.default_rng(seed)
    p = true_accuracy(design, rng)
    ms = designs(design)
    scenarios = [
        Scenario(name, t, *predictor_for(ms[name], t, p, design, rng))
        for name in statistics
        for t in targets
    ]
    y = labels(design, design.n_test)
    for _ in range(n_rep):
        c = outcomes(p, design, y, rng)
        d = resample.draw(y, y, design.n_seeds, n_boot, int(rng.integers(2**31)))
        acc = resample.point(c, "balanced_accuracy")
        boot = resample.metric_rows(c, d.test, d.seeds, "balanced_accuracy")
        sigma = resample.noise_covariance(c, "balanced_accuracy")
        for sc in scenarios:
            m = ms[sc.statistic]
            a = association.direction(sc.x, m)
            est = association.measured(a, m, acc)
            sc.estimates.append(est)
            reps = association.measured(a, m, boot)
            for method in methods:
                if method == "inversion":
                    iv = association.interval(
                        a, m, acc, sigma, level=level, n_sim=500, seed=len(sc.estimates)
                    )
                else:
                    iv = interval_from(est, reps, method, level, bounds=(-1, 1))
                sc.intervals.setdefault(method, []).append(iv)
    rows = []
    for sc in scenarios:
        for method in methods:
            iv = np.array(sc.intervals[method])
            ok = np.isfinite(iv).all(1)
            rows.append(
                {
                    "statistic": sc.statistic,
                    "target": sc.target,
                    "truth": sc.truth,
                    "method": method,
                    "n_rep": int(ok.sum()),
                    "coverage": float(np.mean((iv[ok, 0] <= sc.truth) & (sc.truth <= iv[ok, 1]))),
                    "power": float(np.mean(iv[ok, 0] > 0)),
                    "mean_estimate": float(np.nanmean(sc.estimates)),
                    "mean_width": float(np.mean(iv[ok, 1] - iv[ok, 0])),
                }
            )
    return pd.DataFrame(rows)


def pooled_coverage(
    design: Design = Design(),
    targets=(0.0, 0.5),
    *,
    statistics=("partial", "within_size"),
    n_pairs: int = 4,
    n_rep: int = 100,
    n_boot: int = 400,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Coverage and power of the pooled interval (:func:`isplit.evaluation.association.pooled`)
    over ``n_pairs`` independent studies that share a true value of the statistic (each with
    its own true accuracy curve and predictor)."""
    rng = np.random.default_rng(seed)
    ms = designs(design)
    y = labels(design, design.n_test)
    rows = []
    for name in statistics:
        m = ms[name]
        for t in targets:
            pairs = []
            for _ in range(n_pairs):
                p = true_accuracy(design, rng)
                x, truth = predictor_for(m, t, p, design, rng)
                pairs.append((p, association.direction(x, m), truth))
            hits, power = [], []
            for r in range(n_rep):
                curves = []
                for i, (p, a, _) in enumerate(pairs):
                    c = outcomes(p, design, y, rng)
                    acc = resample.point(c, "balanced_accuracy")
                    sigma = resample.noise_covariance(c, "balanced_accuracy")
                    curves.append(
                        association.curve(a, m, acc, sigma, n_sim=500, seed=r * n_pairs + i)
                    )
                _, (lo, hi) = association.pooled(curves, level)
                truth = float(np.mean([tr for *_, tr in pairs]))
                hits.append(lo <= truth <= hi)
                power.append(lo > 0)
            rows.append(
                {
                    "statistic": name,
                    "target": t,
                    "n_pairs": n_pairs,
                    "n_rep": n_rep,
                    "coverage": float(np.mean(hits)),
                    "power": float(np.mean(power)),
                }
            )
    return pd.DataFrame(rows)


def difference_coverage(
    design: Design = Design(),
    pairs=((0.8, 0.8), (0.8, 0.5), (0.5, 0.0)),
    *,
    kind: str = "plain",
    n_rep: int = 100,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Coverage and power of the paired difference of two predictors' statistics on the same
    splits and images (ρ(CUI) − ρ(depth) in the study), for pairs of true values."""
    rng = np.random.default_rng(seed)
    p = true_accuracy(design, rng)
    m = designs(design)[kind]
    y = labels(design, design.n_test)
    cases = []
    for t1, t2 in pairs:
        x1, r1 = predictor_for(m, t1, p, design, rng)
        x2, r2 = predictor_for(m, t2, p, design, rng)
        a = association.direction(x1, m) - association.direction(x2, m)
        cases.append((t1, t2, a, r1 - r2, []))
    for r in range(n_rep):
        c = outcomes(p, design, y, rng)
        acc = resample.point(c, "balanced_accuracy")
        sigma = resample.noise_covariance(c, "balanced_accuracy")
        for *_, a, _, ivs in cases:
            ivs.append(association.interval(a, m, acc, sigma, level=level, n_sim=500, seed=r))
    rows = []
    for t1, t2, _, truth, ivs in cases:
        iv = np.array(ivs)
        ok = np.isfinite(iv).all(1)
        rows.append(
            {
                "statistic": kind,
                "targets": f"{t1} − {t2}",
                "truth": truth,
                "n_rep": int(ok.sum()),
                "coverage": float(np.mean((iv[ok, 0] <= truth) & (truth <= iv[ok, 1]))),
                "power": float(np.mean(iv[ok, 0] > 0)),
                "mean_width": float(np.mean(iv[ok, 1] - iv[ok, 0])),
            }
        )
    return pd.DataFrame(rows)
