"""The zero-retraining predictors of a split's accuracy, each a value per split (higher =
predicted better), known before any split is retrained.

==============  ======================================================  =====================
predictor       value                                                   hypothesis
==============  ======================================================  =====================
``cui_mean``    log10 CUI, channel mean (I-SPLIT, the public code)      I-SPLIT
``cui_sum``     log10 CUI with the channel sum (mean × C)               Grad-CAM's own sum
``size``        −log10 activation bytes                                 CDE: smaller is better
``depth``       share of the model's FLOPs on the device                later is better
``probe``       validation accuracy of a linear probe on the pooled     a direct estimate
                activation
``knn``         validation accuracy of k-nearest neighbours on the      no fitting at all
                pooled activation
``logme``       LogME evidence of the pooled activation (You et al.,    transferability
                ICML 2021)
``code``        validation accuracy of a linear probe on the            what the bottleneck
                activation as the bottleneck sends it (pooled to the    will send
                code's size, 8-bit)
``random``      a uniformly random ranking                              chance
==============  ======================================================  =====================

``probe``, ``knn`` and ``code`` are scored on the validation images; their per-image outcomes
(``probe_outcomes.parquet``) let every bootstrap replicate rescore them on its own resampled
validation set, so their choice is as uncertain as the data make it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from isplit.evaluation.stats import Correctness

#: predictors computed from the probe table (``probe.parquet``), with their value column
PROBE_COLUMNS = {"probe": "val_{metric}", "knn": "knn_val_{metric}", "code": "code_val_{metric}"}
FIXED = ("cui_mean", "cui_sum", "size", "depth", "logme")
NAMES = {
    "cui_mean": "CUI, channel mean (I-SPLIT)",
    "cui_sum": "CUI, channel sum",
    "size": "−log10 activation size (CDE)",
    "depth": "depth (FLOPs share on device)",
    "probe": "linear probe (pooled activation)",
    "knn": "k-NN (pooled activation)",
    "logme": "LogME (pooled activation)",
    "code": "linear probe on the 8-bit code",
    "random": "random ranking",
}


def values(splits: pd.DataFrame, probe: pd.DataFrame | None, metric: str) -> dict:
    """Each predictor's value per split (NaN where unknown), in the order of ``splits``."""
    channels = np.array([json.loads(s)[0] for s in splits["activation_shape"]], dtype=float)
    device = splits["head_flops"] + splits["encoder_flops"]
    total = splits["head_flops"] + splits["tail_flops"]
    out = {
        "cui_mean": splits["log10_cui"].to_numpy(float),
        "cui_sum": (splits["log10_cui"] + np.log10(channels)).to_numpy(float),
        "size": -np.log10(splits["activation_bytes"].to_numpy(float)),
        "depth": (device / total).to_numpy(float),
    }
    if probe is not None:
        table = probe.set_index("layer")
        for name, col in PROBE_COLUMNS.items():
            col = col.format(metric=metric)
            if col in table:
                out[name] = splits["layer"].map(table[col]).to_numpy(float)
        if "logme" in table:
            out["logme"] = splits["layer"].map(table["logme"]).to_numpy(float)
    return out


def outcomes(
    probe_outcomes: pd.DataFrame | None, layers: list[str], val_ids: pd.Index, num_classes: int
) -> dict[str, Correctness]:
    """Per validation-scored predictor, its correctness on every split's validation images
    (splits × 1 × images), aligned with the retrained splits' validation images ``val_ids``.
    A split without outcomes is NaN (its predictor value stays fixed). A predictor scored on
    other validation images than the splits (e.g. ``importance.max_images`` smaller than the
    retraining's ``eval_subset``) is left out: its value stays fixed in every replicate."""
    if probe_outcomes is None:
        return {}
    out = {}
    for name, part in probe_outcomes.groupby("predictor"):
        correct = np.full((len(layers), 1, len(val_ids)), np.nan)
        labels = None
        for i, layer in enumerate(layers):
            rows = part[part["layer"] == layer]
            if rows.empty:
                continue
            rows = rows.set_index("sample_id")
            if len(val_ids.difference(rows.index)):
                labels = None
                break
            rows = rows.loc[val_ids]
            correct[i, 0] = (rows["pred"].to_numpy() == rows["label"].to_numpy()).astype(float)
            labels = rows["label"].to_numpy(np.int64)
        if labels is not None:
            out[str(name)] = Correctness(correct, labels, num_classes)
    return out
