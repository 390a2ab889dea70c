"""Metrics are scikit-learn's, with every class of the task as a label, and the fast
replicate code computes the same balanced accuracy."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

from isplit.evaluation import resample
from isplit.evaluation.metrics import classification_metrics
from isplit.evaluation.stats import Correctness


@pytest.mark.parametrize("case", range(40))
def test_metrics_equal_scikit_learn_including_absent_classes(case):
    rng = np.random.default_rng(case)
    k = int(rng.integers(2, 6))
    n = int(rng.integers(5, 60))
    # some cases leave a class out of the truth, of the predictions, or of both
    y = rng.integers(0, k - (case % 3 == 1), n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k - (case % 3 == 2), n))
    m = classification_metrics(y, p, k)
    assert m["top1"] == pytest.approx(accuracy_score(y, p))
    with warnings.catch_warnings():  # scikit-learn warns about the absent classes we test
        warnings.simplefilter("ignore")
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    every = list(range(k))
    assert m["per_class"] == pytest.approx(
        recall_score(y, p, labels=every, average=None, zero_division=0)
    )
    assert m["confusion"] == confusion_matrix(y, p, labels=every).tolist()
    assert np.array(m["confusion"]).shape == (k, k)
    c = Correctness((y == p).astype(float)[None, None], y, k)
    assert resample.point(c, "balanced_accuracy")[0] == pytest.approx(m["balanced_accuracy"])
    assert resample.point(c, "top1")[0] == pytest.approx(m["top1"])


def test_metric_rows_weight_images_and_seeds_like_an_explicit_resample():
    """A replicate given as counts equals the metric of the explicitly resampled data."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, int), np.ones(12, int)]
    correct = (rng.random((3, 4, 42)) < 0.7).astype(float)
    c = Correctness(correct, y, 2)
    d = resample.draw(y, y, 4, 5, seed=1)
    rows = resample.metric_rows(c, d.test, d.seeds, "balanced_accuracy")
    for b in range(5):
        imgs = np.repeat(np.arange(42), d.test[b].astype(int))
        seeds = np.repeat(np.arange(4), d.seeds[b].astype(int))
        x = correct[:, seeds][:, :, imgs]
        lab = y[imgs]
        expect = np.mean([x[:, :, lab == k].mean(axis=(1, 2)) for k in (0, 1)], axis=0)
        assert rows[b] == pytest.approx(expect)
        # images are drawn within their class: the class counts never change
        assert np.bincount(lab).tolist() == [30, 12]
