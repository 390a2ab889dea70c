"""Classification metrics from labels and predictions: what every stage that scores a model
reports, so that training, probes and the evaluation use one definition — scikit-learn's, with
every class of the task as a label (a class absent from the predictions or from the truth counts
with recall and F1 of 0 where it has images, and is left out of the means where it has none)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import confusion_matrix, f1_score, recall_score


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """Top-1; balanced accuracy (mean recall over the classes present in ``labels``);
    macro-F1 (mean F1 over the classes present in ``labels`` or ``preds``); per-class recall
    and F1 of every class; the confusion matrix (rows: true class, columns: predicted)."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    every = list(range(int(num_classes)))
    n = int(len(labels))
    if not n:
        nan = float("nan")
        zeros = [0.0] * len(every)
        conf = np.zeros((len(every), len(every)), int).tolist()
        return {"n": 0, "top1": nan, "balanced_accuracy": nan, "macro_f1": nan,
                "per_class": zeros, "per_class_f1": zeros, "confusion": conf}  # fmt: skip
    present = sorted(set(labels.tolist()))
    seen = sorted(set(labels.tolist()) | set(preds.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        recall = recall_score(labels, preds, labels=every, average=None, zero_division=0)
        f1 = f1_score(labels, preds, labels=every, average=None, zero_division=0)
        balanced = recall_score(labels, preds, labels=present, average="macro", zero_division=0)
        macro_f1 = f1_score(labels, preds, labels=seen, average="macro", zero_division=0)
    return {
        "n": n,
        "top1": float(np.mean(labels == preds)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(macro_f1),
        "per_class": [float(a) for a in recall],
        "per_class_f1": [float(a) for a in f1],
        "confusion": confusion_matrix(labels, preds, labels=every).tolist(),
    }
