"""Ties in the recommendation are shown by a paired test on the same images, not assumed from
overlapping intervals."""

import numpy as np
import pytest

from isplit.evaluation import paired
from isplit.evaluation.stats import Correctness


def _option(correct, labels, delivered=1.0):
    c = np.asarray(correct, float)
    c = c[None, None, :] if c.ndim == 1 else c[None]
    return paired.Option(Correctness(c, labels, 2), delivered)


def test_overlapping_intervals_are_not_a_tie():
    """Option B is option A minus 8 % of the images: its marginal interval overlaps A's on 262
    images, but the paired difference is 0.08 with an interval far from ±1 point."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(180, int), np.ones(82, int)]
    a = rng.random(262) < 0.86
    b = a.copy()
    b[np.flatnonzero(a)[:21]] = False
    res = paired.equivalent([_option(a, labels), _option(b, labels)], 0, "top1", 0.01)
    assert res[0]["equivalent"] and not res[1]["equivalent"]
    assert res[1]["difference"] == pytest.approx(21 / 262)
    assert res[1]["ci"][0] > 0.04  # paired: the gap is certain


def test_near_identical_options_are_equivalent_within_the_margin():
    """Two options that disagree on 2 of 4,000 images are equivalent at a 1-point margin; a
    margin of 0 never makes anything equivalent."""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 2000)
    a = rng.random(4000) < 0.8
    b = a.copy()
    b[:2] = ~b[:2]
    res = paired.equivalent([_option(a, labels), _option(b, labels)], 0, "balanced_accuracy", 0.01)
    assert res[1]["equivalent"]
    assert not paired.equivalent([_option(a, labels), _option(b, labels)], 0, "top1", 0.0)[1][
        "equivalent"
    ]


def test_seeds_and_delivery_enter_the_difference():
    """An option's seeds are resampled (a split whose seeds disagree is less certain) and the
    delivered share scales its accuracy."""
    labels = np.repeat([0, 1], 200)
    rng = np.random.default_rng(2)
    a = rng.random(400) < 0.8
    seeds = np.stack([a, rng.random(400) < 0.8, a])  # one seed of three is unlike the others
    diff_one, boot_one = paired.differences(
        [_option(a, labels), _option(a, labels, delivered=0.9)], 0, "top1", n_boot=500
    )
    assert diff_one[1] == pytest.approx(0.1 * a.mean())
    _, boot = paired.differences(
        [_option(a, labels), _option(seeds, labels)], 0, "top1", n_boot=500
    )
    assert np.std(boot[:, 1]) > 0.005  # the disagreeing seed widens the difference
    with pytest.raises(ValueError, match="same images"):
        paired.differences([_option(a, labels), _option(a, labels[::-1])], 0, "top1")
