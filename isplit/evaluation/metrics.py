"""Classification metrics from labels and predictions (numpy only): what every stage that
scores a model reports, so that training, probes and the evaluation use one definition."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """Top-1 and the metrics an imbalanced task needs: balanced accuracy (the mean recall of
    the classes present) and macro-F1 (the mean F1 of the classes present)."""
    k = num_classes
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (labels, preds), 1)
    support, predicted, hits = conf.sum(1), conf.sum(0), conf.diagonal()
    recall = hits / np.maximum(support, 1)
    precision = hits / np.maximum(predicted, 1)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    present = support > 0
    n = int(len(labels))
    return {
        "n": n,
        "top1": float(hits.sum() / n) if n else float("nan"),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": [float(a) for a in recall],
        "per_class_f1": [float(a) for a in f1],
        "confusion": conf.tolist(),
    }
