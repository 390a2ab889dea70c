"""Is an option as accurate as the best one? A paired equivalence test on the same images.

Two splits scored on the same validation images err mostly on the same images, so the
difference of their accuracies is far better measured than either accuracy: overlapping
marginal intervals (the rule used before) call a 7.8-point gap a tie. Here an option counts as
**equivalent** to the best when the 95 % interval of the paired difference ``best − option``
lies inside ``±margin`` (two one-sided tests at 2.5 % each): a tie has to be shown, not merely
not ruled out. The interval resamples the images (within class, the same draw for both
options) and each option's own seeds (its retraining runs; independent models); the delivered
accuracy over a lossy link weighs each option's outcomes by its share of delivered frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isplit.evaluation import resample
from isplit.evaluation.stats import Correctness, interval_from


@dataclass(frozen=True)
class Option:
    """One option's outcomes on the shared images (1 × seeds × images) and the factor its
    accuracy is delivered at (1 − frame loss; 1 over a lossless link)."""

    outcomes: Correctness
    delivered: float = 1.0


def differences(options: list[Option], best: int, metric: str, *, classes=None,
                n_boot: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``best − option`` for every option: the measured difference (delivered accuracies) and
    its replicates (n_boot × options), images shared, seeds drawn per option. ``metric``
    ``recall`` with ``classes``: the mean recall of those classes."""
    labels = options[best].outcomes.labels
    for o in options:
        if not np.array_equal(o.outcomes.labels, labels):
            raise ValueError("options must be scored on the same images, in the same order")
    rng = np.random.default_rng(seed)
    images = resample.stratified_counts(labels, n_boot, rng)
    point, boot = [], []
    for o in options:
        s = o.outcomes.correct.shape[1]
        seeds = rng.multinomial(s, np.full(s, 1 / s), size=n_boot).astype(float)
        point.append(resample.point(o.outcomes, metric, classes)[0] * o.delivered)
        rows = resample.metric_rows(o.outcomes, images, seeds, metric, classes)
        boot.append(rows[:, 0] * o.delivered)
    point, boot = np.array(point), np.array(boot).T
    return point[best] - point, boot[:, [best]] - boot


def equivalent(options: list[Option], best: int, metric: str, margin: float, *, classes=None,
               n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[dict]:  # fmt: skip
    """For every option: the paired difference ``best − option`` with its interval, and
    whether that interval lies inside ``±margin`` (the best is equivalent to itself)."""
    point, boot = differences(options, best, metric, classes=classes, n_boot=n_boot, seed=seed)
    out = []
    for j in range(len(options)):
        if j == best:
            out.append({"difference": 0.0, "ci": [0.0, 0.0], "equivalent": True})
            continue
        lo, hi = interval_from(point[j], boot[:, j], "percentile", level)
        out.append(
            {
                "difference": float(point[j]),
                "ci": [lo, hi],
                "equivalent": bool(-margin <= lo and hi <= margin),
            }
        )
    return out
