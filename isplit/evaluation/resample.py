"""Bootstrap replicates of the whole procedure: validation images, test images and retraining
seeds resampled together.

A split's accuracy is a mean over images and seeds, and the study's answer is a chain of
choices made on it: the measured best split is the one best on *validation*, a predictor's
regret is that split's *test* accuracy minus its own choice's. An interval on such an answer
has to redo the whole chain in every replicate, or it treats a noisy choice as certain (a regret
interval of [0, 0] whenever a predictor happens to pick the validation winner). A replicate
here is therefore a triple of counts: how often each validation image, each test image and each
seed is drawn. Images are drawn within their class (the data split is stratified, so the class
counts are part of the design); seeds are drawn from the seeds that were run, the same draw for
validation and test (they are the same trained models).

Counts, not index lists, because every statistic is a weighted mean: the accuracies of all
splits in all replicates are one tensor contraction (:func:`metric_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isplit.evaluation.stats import Correctness

METRICS = ("top1", "balanced_accuracy")


@dataclass(frozen=True)
class Draws:
    """``B`` replicates: ``val[b, i]``, ``test[b, i]``, ``seeds[b, s]`` are how often
    validation image ``i``, test image ``i`` and seed ``s`` are drawn in replicate ``b``."""

    val: np.ndarray
    test: np.ndarray
    seeds: np.ndarray

    @property
    def n(self) -> int:
        return len(self.seeds)


def stratified_counts(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` bootstrap draws of images, each class resampled within itself: (n, images)."""
    labels = np.asarray(labels)
    out = np.zeros((n, len(labels)), dtype=np.float64)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        out[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n)
    return out


def draw(val_labels: np.ndarray, test_labels: np.ndarray, n_seeds: int, n: int, seed: int) -> Draws:
    """``n`` whole-procedure replicates, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return Draws(
        val=stratified_counts(val_labels, n, rng),
        test=stratified_counts(test_labels, n, rng),
        seeds=rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n).astype(float),
    )


def identity(c: Correctness) -> tuple[np.ndarray, np.ndarray]:
    """The weights of the data as observed (one replicate of ones)."""
    return np.ones((1, c.n_images)), np.ones((1, c.correct.shape[1]))


def metric_rows(
    c: Correctness, images: np.ndarray, seeds: np.ndarray, metric: str, classes=None
) -> np.ndarray:
    """``metric`` of every split in every replicate: (B, K). ``images`` (B, N) and ``seeds``
    (B, S) are counts. ``balanced_accuracy`` is the mean recall of the classes present in the
    data; ``recall`` with ``classes=[k]`` is class ``k``'s recall."""
    x = np.nan_to_num(c.correct)  # (K, S, N); a missing seed is refused before this point
    sw = seeds / seeds.sum(1, keepdims=True)  # (B, S)
    if metric == "top1":
        groups = [np.ones(c.n_images, bool)]
    elif metric in ("balanced_accuracy", "recall"):
        ks = np.unique(c.labels) if classes is None else classes
        groups = [c.labels == k for k in ks]
    else:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    parts = []
    for g in groups:
        w = images * g  # (B, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = w / w.sum(1, keepdims=True)
        t = np.tensordot(x, w, axes=([2], [1]))  # (K, S, B)
        parts.append(np.einsum("ksb,bs->bk", t, sw))
    # a weighted mean as a contraction carries ~1e-16 of rounding: 1.0 must stay 1.0
    return np.round(np.mean(parts, axis=0), 12)


def point(c: Correctness, metric: str, classes=None) -> np.ndarray:
    """``metric`` of every split on the data as observed: (K,)."""
    return metric_rows(c, *identity(c), metric, classes)[0]


def bootstrap(c: Correctness, metric: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of every split of ``c`` as observed (K,) and in ``n`` replicates (n, K) that
    resample its images (within class) and seeds: one data set's accuracies with their noise."""
    d = draw(c.labels, c.labels, c.correct.shape[1], n, seed)
    return point(c, metric), metric_rows(c, d.test, d.seeds, metric)


def noise_covariance(c: Correctness, metric: str) -> np.ndarray:
    """Covariance (K × K) of the splits' measured ``metric`` over fresh test sets and fresh
    seeds, estimated without resampling.

    Images and seeds are crossed (every seed is scored on every image), and the bootstrap
    that redraws both counts their interaction (a seed being right on an image another seed
    gets wrong) three times over; redrawing each alone counts it twice. So the covariance is
    built from its parts: the image part (stratified by class) plus the seed part, minus the
    interaction they both contain, estimated from the doubly centred outcomes (the variance
    components of a two-way design)."""
    x = np.nan_to_num(c.correct)  # (K, S, N)
    k, s, n = x.shape
    if metric == "top1":
        w = np.full(n, 1 / n)
    elif metric == "balanced_accuracy":
        classes, counts = np.unique(c.labels, return_counts=True)
        per = dict(zip(classes.tolist(), counts.tolist(), strict=True))
        w = np.array([1 / (len(classes) * per[y]) for y in c.labels.tolist()])
    else:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    image_mean = x.mean(axis=1)  # (K, N): each image's outcome, averaged over seeds
    sigma = np.zeros((k, k))
    for idx in _classes(c.labels):
        m = len(idx)
        d = image_mean[:, idx] - image_mean[:, idx].mean(1, keepdims=True)
        sigma += (d * w[idx] ** 2) @ d.T * m / (m - 1)
    if s > 1:
        per_seed = np.einsum("ksn,n->ks", x, w)  # (K, S)
        d = per_seed - per_seed.mean(1, keepdims=True)
        sigma += d @ d.T / (s * (s - 1))
        # the interaction, inside each class: outcome − image mean − seed mean + class mean
        inter = np.zeros((k, k))
        for idx in _classes(c.labels):
            m = len(idx)
            part = x[:, :, idx]
            e = (
                part
                - part.mean(1, keepdims=True)
                - part.mean(2, keepdims=True)
                + part.mean((1, 2), keepdims=True)
            )
            e = e * w[idx] * np.sqrt(m / (m - 1))
            inter += np.einsum("asn,bsn->ab", e, e) / (s - 1)
        sigma -= inter / s
    # the difference of two estimates need not be positive semi-definite: clip to the nearest
    # covariance (negative eigenvalues are estimation noise around 0)
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.clip(w, 0, None)) @ v.T


def _classes(labels: np.ndarray):
    """Each class's image positions, for classes with at least two images (a variance)."""
    for y in np.unique(labels):
        idx = np.flatnonzero(labels == y)
        if len(idx) >= 2:
            yield idx
