"""The per-image outcomes every interval is computed from, and bootstrap interval methods.

Every accuracy of a retrained split is a mean over images and over retraining seeds, so its
uncertainty has both sources. :class:`Correctness` holds the per-image outcomes of every split
and seed; :mod:`isplit.evaluation.resample` draws replicates of images and seeds (the same
draw for every split, so differences between splits stay paired), and
:func:`interval_from` turns a statistic's replicates into an interval.
"""

from __future__ import annotations

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


INTERVAL_METHODS = ("percentile", "basic", "bc")


def interval_from(
    estimate: float,
    boot,
    method: str = "percentile",
    level: float = CI_LEVEL,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """A bootstrap interval for ``estimate`` from its replicates ``boot`` (NaNs ignored).

    * ``percentile``: the replicates' quantiles. Right for a mean (an accuracy).
    * ``basic``: the quantiles reflected about the estimate, ``[2θ̂ − q_hi, 2θ̂ − q_lo]``: the
      replicates' offset from the estimate stands for the estimate's offset from the truth, so a
      statistic that resampling biases (a rank correlation of noisy accuracies, pulled toward
      0) is corrected by that bias. What the study uses for rank statistics
      (:mod:`isplit.evaluation.coverage` measures why).
    * ``bc``: bias-corrected percentile (Efron): the quantile levels shifted by how far the
      replicates' median lies from the estimate.

    ``bounds`` clips the interval to the statistic's range (e.g. ±1 for a correlation)."""
    b = np.asarray(boot, dtype=float)
    b = b[np.isfinite(b)]
    if not b.size or not np.isfinite(estimate):
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    if method == "percentile":
        lo, hi = np.quantile(b, [a, 1 - a])
    elif method == "basic":
        q_lo, q_hi = np.quantile(b, [a, 1 - a])
        lo, hi = 2 * estimate - q_hi, 2 * estimate - q_lo
    elif method == "bc":
        from scipy.stats import norm

        share = np.mean(b < estimate) + 0.5 * np.mean(b == estimate)
        z0 = norm.ppf(np.clip(share, 1 / (2 * b.size), 1 - 1 / (2 * b.size)))
        levels = norm.cdf(2 * z0 + norm.ppf([a, 1 - a]))
        lo, hi = np.quantile(b, levels)
    else:
        raise ValueError(f"interval method {method!r} is not one of {INTERVAL_METHODS}")
    if bounds is not None:
        lo, hi = np.clip([lo, hi], *bounds)
    return (float(lo), float(hi))
