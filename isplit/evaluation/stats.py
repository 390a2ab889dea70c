"""Intervals for accuracies measured on a finite test set with a few training seeds.

Every accuracy of a retrained split is a mean over images and over retraining seeds, so its
uncertainty has both sources. :class:`Correctness` holds the per-image outcomes of every split
and seed; :func:`replicates` draws bootstrap replicates that resample the images (the same
resample for every split, so differences between splits stay paired) and the seeds. Every
statistic computed on the splits (an accuracy, a correlation with a predictor, the regret of a
choice) is then recomputed on each replicate, and its 95 % interval is the 2.5th–97.5th
percentile of those values.

Balanced accuracy (the mean of the per-class recalls) is what an imbalanced task is judged on;
it is computed on every replicate from the labels it resampled, so classes stay classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Correctness:
    """``correct[k, s, i]``: did split ``k``, retrained with seed ``s``, classify image ``i``
    right; ``labels[i]`` its true class. Missing seeds of a split are NaN rows."""

    correct: np.ndarray  # (splits, seeds, images) float: 1.0, 0.0 or NaN
    labels: np.ndarray  # (images,) int
    num_classes: int

    @property
    def n_images(self) -> int:
        return self.correct.shape[2]

    @property
    def n_seeds(self) -> np.ndarray:
        return np.sum(~np.isnan(self.correct[:, :, 0]), axis=1)


def accuracy(c: Correctness, images=None, seeds=None) -> np.ndarray:
    """Top-1 of every split: mean over the (resampled) seeds and images."""
    x = c.correct if seeds is None else c.correct[:, seeds]
    x = x if images is None else x[:, :, images]
    return np.nanmean(x, axis=(1, 2))


def balanced_accuracy(c: Correctness, images=None, seeds=None) -> np.ndarray:
    """Mean over the classes present of each class's recall, for every split."""
    labels = c.labels if images is None else c.labels[images]
    x = c.correct if seeds is None else c.correct[:, seeds]
    x = x if images is None else x[:, :, images]
    per_image = np.nanmean(x, axis=1)  # (splits, images): mean over seeds
    recalls = [per_image[:, labels == k].mean(axis=1) for k in np.unique(labels)]
    return np.mean(recalls, axis=0)


def replicates(n_images: int, n_seeds: int, n: int, seed: int):
    """``n`` bootstrap draws of (image indices, seed indices), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, n_images, n_images), rng.integers(0, n_seeds, n_seeds)


def interval(values: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap values (NaN ones ignored)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def bootstrap(
    c: Correctness,
    statistic: Callable[[Correctness, np.ndarray, np.ndarray], np.ndarray | float],
    *,
    n: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``statistic(c, images, seeds)`` on every replicate: shape (n, *result shape)."""
    return np.array(
        [statistic(c, i, s) for i, s in replicates(c.n_images, c.correct.shape[1], n, seed)]
    )


# --------------------------------------------------------------------------- rank statistics


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), as Spearman's definition wants."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ; NaN when either side is constant or there are fewer than 3 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(ranks(x[ok]), ranks(y[ok]))[0, 1])


def partial_spearman(x: np.ndarray, y: np.ndarray, controls: Sequence[np.ndarray]) -> float:
    """Spearman's ρ of ``x`` and ``y`` given ``controls``: the Pearson correlation of the
    ranks of ``x`` and of ``y`` after each is regressed (least squares, with an intercept) on
    the ranks of the controls. What ``x`` says about ``y`` that the controls do not."""
    cols = [np.asarray(v, float) for v in (x, y, *controls)]
    ok = np.all([np.isfinite(v) for v in cols], axis=0)
    if ok.sum() < len(controls) + 3:
        return float("nan")
    rx, ry, *rc = (ranks(v[ok]) for v in cols)
    design = np.column_stack([np.ones(ok.sum()), *rc])

    def residual(v):
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        return v - design @ coef

    ex, ey = residual(rx), residual(ry)
    if np.ptp(ex) < 1e-12 or np.ptp(ey) < 1e-12:
        return float("nan")
    return float(np.corrcoef(ex, ey)[0, 1])


def kendall_within_groups(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Kendall's τ pooled over the pairs that share a group: (concordant − discordant) /
    comparable pairs, counting only pairs inside one group (e.g. probe points of equal
    activation size, where size cannot rank them). NaN when no group has two points."""
    x, y, g = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    score = pairs = 0
    for v in np.unique(g):
        idx = np.flatnonzero(g == v)
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
                if np.isfinite(s):
                    score += s
                    pairs += 1
    return float(score / pairs) if pairs else float("nan")


def group_pairs(groups: np.ndarray) -> int:
    """How many within-group pairs :func:`kendall_within_groups` can compare."""
    _, counts = np.unique(np.asarray(groups), return_counts=True)
    return int(sum(k * (k - 1) // 2 for k in counts))
