"""Zero-retraining scores of a layer's features: LogME, k-nearest neighbours, and the features
reduced to what a fixed-size 8-bit code can carry. Plain numpy / scikit-learn on feature
matrices (images × features); :mod:`isplit.importance.probe` extracts the features.

LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021) scores features by the evidence of a Bayesian linear model of each one-hot label
column: ``y = F w + ε``, ``w ~ N(0, α⁻¹ I)``, ``ε ~ N(0, β⁻¹ I)``, with α and β set to maximise
the evidence ``p(y | F, α, β)`` by the paper's fixed-point iteration, and the maximised log
evidence divided by the number of images, averaged over the classes. Written here from the
paper's equations (its Algorithm 1, with the SVD of F); tests/unit/test_scores.py checks the
evidence against the Gaussian density it is defined as, and that the iteration's α, β are the
maximum.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier


def _svd(f: np.ndarray):
    """``U`` over the rank, ``S²`` over the rank, and D of features ``f``."""
    u, s, _ = np.linalg.svd(np.asarray(f, dtype=np.float64), full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-10)) if len(s) else 0
    return u[:, :rank], s[:rank] ** 2, f.shape[1]


def _terms(s2: np.ndarray, z: np.ndarray, y_out2: float, alpha: float, beta: float):
    """γ (effective number of parameters), ``mᵀm`` and ``|Fm − y|²`` of the posterior mean
    ``m = β A⁻¹ Fᵀ y``, ``A = α I + β FᵀF``, from the SVD ``F = U S Vᵀ`` (``z = Uᵀy``;
    ``y_out2`` the part of ``|y|²`` outside U's columns)."""
    denom = alpha + beta * s2
    gamma = float(np.sum(beta * s2 / denom))
    mm = float(np.sum(beta**2 * s2 * z**2 / denom**2))
    res2 = float(np.sum((alpha * z / denom) ** 2) + y_out2)
    return gamma, mm, res2


def _evidence(n, d, s2, z, y_out2, alpha, beta) -> float:
    _, mm, res2 = _terms(s2, z, y_out2, alpha, beta)
    # log |A|: the rank's eigenvalues α + βs², and α for the D − rank others
    logdet = np.sum(np.log(alpha + beta * s2)) + (d - len(s2)) * math.log(alpha)
    return float(
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * res2
        - alpha / 2 * mm
        - logdet / 2
    )


def evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """``log p(y | F, α, β)`` for one label column ``y`` (see the module docstring)."""
    u, s2, d = _svd(f)
    z = u.T @ y
    return _evidence(len(y), d, s2, z, float(y @ y - z @ z), alpha, beta)


def fit_evidence(
    f: np.ndarray, y: np.ndarray, *, tol: float = 1e-6, max_iter: int = 100, svd=None
) -> tuple[float, float, float]:
    """The paper's fixed point for one label column: (α, β, maximised log evidence)."""
    u, s2, d = svd or _svd(f)
    n = len(y)
    z = u.T @ y
    y_out2 = float(y @ y - z @ z)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma, mm, res2 = _terms(s2, z, y_out2, alpha, beta)
        new_alpha = gamma / max(mm, 1e-300)
        new_beta = (n - gamma) / max(res2, 1e-300)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return alpha, beta, _evidence(n, d, s2, z, y_out2, alpha, beta)


def logme(f: np.ndarray, labels: np.ndarray) -> float:
    """LogME of features ``f`` (n × D) for integer ``labels``: mean over classes of the
    maximised log evidence per image."""
    labels = np.asarray(labels)
    svd = _svd(f)
    per_class = [
        fit_evidence(f, (labels == k).astype(np.float64), svd=svd)[2] / len(labels)
        for k in np.unique(labels)
    ]
    return float(np.mean(per_class))


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array scaled by the training features' mean and standard deviation."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [(a - mean) / std for a in (train, *others)]


def knn_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, k: int = 10
) -> np.ndarray:
    """k-nearest-neighbour predictions (Euclidean, on standardised features, distance
    weighted): how well the classes are already separated, with nothing fitted."""
    a, b = standardise(x_train, x_val)
    clf = KNeighborsClassifier(n_neighbors=min(k, len(a)), weights="distance")
    return clf.fit(a, y_train).predict(b)


def code_features(
    train: np.ndarray, others: list[np.ndarray], channels: int, values: int
) -> list[np.ndarray]:
    """Activations already pooled to the code's positions (images × C × positions) reduced as
    a fixed-size code would carry them: the channels projected on the training features' top
    ``channels`` principal directions (fitted over every position of every training image: the
    training-free stand-in for the bottleneck's 1×1 convolution; kept whole when the layer has
    no more channels than that), flattened, cut to the first ``values`` values, and quantised
    to 8 bits per image (min-max, as the budget code is sent)."""
    c = train.shape[1]

    def per_position(a):
        return a.transpose(0, 2, 1).reshape(-1, c)

    rows = per_position(train)
    # no more directions than the training rows can show
    keep = min(channels, len(rows))
    if keep < c:
        pca = PCA(n_components=keep, svd_solver="randomized", random_state=0)
        pca.fit(rows)

        def reduce(a):
            n, _, p = a.shape
            return pca.transform(per_position(a)).reshape(n, p, keep).transpose(0, 2, 1)
    else:

        def reduce(a):
            return a

    out = []
    for a in (train, *others):
        code = reduce(a).reshape(len(a), -1)[:, :values]
        lo, hi = code.min(1, keepdims=True), code.max(1, keepdims=True)
        scale = np.maximum(hi - lo, 1e-12) / 255
        out.append(np.round((code - lo) / scale) * scale + lo)
    return out
