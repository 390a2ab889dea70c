"""The simplest honest baseline for the fine-tuned network: logistic regression on pixels.

If a deep network does not beat a linear model on downsampled grey pixels, nothing built on it
deserves attention. The images are converted to grey, resized to ``size``×``size`` (area
averaging), scaled to [0, 1] and standardised with the training images' statistics; a
multinomial logistic regression with L2 penalty and class-balanced weights (as the fine-tuning
uses for imbalanced tasks) is fitted on the training split. The penalty is chosen on the
validation split from a fixed grid; the test split is only reported, with a bootstrap interval.
Given the fine-tuned model's per-image predictions, the two are also compared on the same test
images: the difference of each metric with a paired bootstrap interval (one resample of the
images for both), which is what "the network beats the baseline" needs — two separate
intervals overlap long before the difference is uncertain.

``baseline.json``: ``model``, ``size``, ``grid``, ``chosen_l2``, ``val`` (each grid value's
validation metrics), ``test`` (``top1``, ``balanced_accuracy``, ``macro_f1`` and the intervals
of the first two), ``n`` per split, and ``finetuned_minus_baseline`` (per metric: ``value``,
``ci``, ``n``) when the fine-tuned predictions are given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import minimize

from isplit.data.loader import ManifestDataset, read_classes
from isplit.evaluation import resample, stats
from isplit.evaluation.metrics import classification_metrics
from isplit.io.files import write_json

GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def pixels(root: str | Path, split: str, size: int, subset: int | None, seed: int):
    """(images × size² grey pixels in [0, 1], labels, sample ids) of one split."""
    ds = ManifestDataset(root, split, None, subset=subset, seed=seed)
    rows = []
    for i in range(len(ds)):
        arr = ds.raw(i).numpy()
        img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
        img = img.convert("L").resize((size, size), Image.Resampling.BOX)
        rows.append(np.asarray(img, dtype=np.float64).ravel() / 255.0)
    return np.stack(rows), ds.labels.astype(np.int64), ds.frame["sample_id"].astype(str).tolist()


def fit(x: np.ndarray, y: np.ndarray, k: int, l2: float) -> np.ndarray:
    """Weights (features + 1) × classes of a class-balanced multinomial logistic regression."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    counts = np.bincount(y, minlength=k).astype(float)
    w_class = len(y) / (k * np.maximum(counts, 1))
    sample_w = w_class[y] / len(y)
    onehot = np.eye(k)[y]

    def loss(flat):
        w = flat.reshape(xb.shape[1], k)
        z = xb @ w
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        value = -(sample_w * (onehot * logp).sum(1)).sum() + l2 * (w[:-1] ** 2).sum()
        grad = xb.T @ (sample_w[:, None] * (np.exp(logp) - onehot))
        grad[:-1] += 2 * l2 * w[:-1]
        return value, grad.ravel()

    res = minimize(loss, np.zeros(xb.shape[1] * k), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})  # fmt: skip
    return res.x.reshape(xb.shape[1], k)


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(1)


def paired_difference(
    predictions_path: str | Path, ids: list[str], labels: np.ndarray, pred: np.ndarray, k: int,
    *, n_boot: int, seed: int,
) -> dict:  # fmt: skip
    """Fine-tuned minus baseline on the same test images, with paired bootstrap intervals."""
    import pandas as pd

    ft = pd.read_parquet(predictions_path)
    ft = ft[ft["split"] == "test"].set_index("sample_id")
    missing = [i for i in ids if i not in ft.index]
    if missing:
        raise ValueError(
            f"{predictions_path}: no test prediction for {len(missing)} of the baseline's "
            f"images (e.g. {missing[0]}); were both scored on the same test split?"
        )
    ft = ft.loc[ids]
    if not np.array_equal(ft["label"].to_numpy(np.int64), labels):
        raise ValueError(f"{predictions_path}: labels differ from the dataset's")
    correct = np.stack([ft["pred"].to_numpy(np.int64) == labels, pred == labels]).astype(float)
    c = stats.Correctness(correct[:, None, :], labels, k)
    out = {}
    for name in resample.METRICS:
        point, boot = resample.bootstrap(c, name, n_boot, seed)
        diff = point[0] - point[1]
        lo, hi = stats.interval_from(diff, boot[:, 0] - boot[:, 1])
        out[name] = {"value": float(diff), "ci": [lo, hi], "n": len(ids)}
    return out


def run(
    *,
    dataset_dir: str | Path,
    out_path: str | Path,
    size: int = 32,
    eval_subset: int | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    finetuned_predictions: str | Path | None = None,
    log=sys.stderr,
) -> dict:
    """Fit, choose the penalty on validation, score test; write ``baseline.json``.
    ``finetuned_predictions`` (the fine-tuned model's ``predictions.parquet``) adds the paired
    comparison."""
    k = len(read_classes(dataset_dir))
    x_train, y_train, _ = pixels(dataset_dir, "train", size, None, seed)
    x_val, y_val, _ = pixels(dataset_dir, "val", size, eval_subset, seed)
    x_test, y_test, test_ids = pixels(dataset_dir, "test", size, eval_subset, seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val, x_test = ((v - mean) / std for v in (x_train, x_val, x_test))
    val, weights = {}, {}
    for l2 in GRID:
        weights[l2] = fit(x_train, y_train, k, l2)
        m = classification_metrics(y_val, predict(weights[l2], x_val), k)
        val[str(l2)] = {key: m[key] for key in ("top1", "balanced_accuracy", "macro_f1")}
        print(f"baseline l2={l2:g}: val balanced {m['balanced_accuracy']:.4f}", file=log)
    chosen = max(GRID, key=lambda v: (val[str(v)]["balanced_accuracy"], -v))
    pred = predict(weights[chosen], x_test)
    m = classification_metrics(y_test, pred, k)
    c = stats.Correctness((pred == y_test).astype(float)[None, None], y_test, k)
    test = {key: m[key] for key in ("top1", "balanced_accuracy", "macro_f1")}
    for name in resample.METRICS:
        point, boot = resample.bootstrap(c, name, n_boot, seed)
        test[name + "_ci"] = list(stats.interval_from(point[0], boot[:, 0]))
    out = {
        "model": f"logistic regression on {size}x{size} grey pixels, class-balanced, L2",
        "size": size,
        "grid": list(GRID),
        "chosen_l2": chosen,
        "chosen_on": "validation balanced accuracy",
        "val": val,
        "test": test,
        "n": {"train": len(y_train), "val": len(y_val), "test": len(y_test)},
    }
    if finetuned_predictions is not None:
        out["finetuned_minus_baseline"] = paired_difference(
            finetuned_predictions, test_ids, y_test, pred, k, n_boot=n_boot, seed=seed
        )
    write_json(out_path, out)
    print(f"baseline test balanced accuracy {test['balanced_accuracy']:.4f}", file=log)
    return out
