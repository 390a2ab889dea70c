"""Which feasible options are as accurate as the best one: paired tests on the same images.

Every option (a split, LC, RC, RC-raw, RC-jpeg<q>) was scored on the same validation images:
the splits per retraining seed (``outcomes.parquet`` of the evaluation), the fine-tuned model for
LC and a plain RC, the camera's options on their decoded frames (the camera stage's
``predictions.parquet``). An option ties with the most accurate feasible one when the 95 %
interval of their paired difference in delivered validation accuracy lies inside ``±margin``
(:func:`isplit.evaluation.paired.equivalent`); the tied option with the lowest p95 latency is
recommended, then the one with the fewest device FLOPs, then the earlier split. Without these
outcomes only equal accuracies tie.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from isplit.evaluation.paired import Option, equivalent
from isplit.evaluation.quality import FINETUNED
from isplit.evaluation.stats import Correctness
from isplit.latency import compute
from isplit.recommend.candidates import CAMERA_PREFIX


class Outcomes:
    """Every option's validation outcomes (1 × seeds × images, one image order), and the
    metric the recommendation compares them on."""

    def __init__(self, table: pd.DataFrame, camera: pd.DataFrame | None, classes: list[str],
                 metric: str, chosen: list[str] | None = None):  # fmt: skip
        ft = table[table["layer"] == FINETUNED]
        if ft.empty:
            raise ValueError("outcomes.parquet holds no fine-tuned model's predictions")
        self.order = pd.Index(ft["sample_id"])
        self.labels = ft["label"].to_numpy(np.int64)
        self.num_classes = len(classes)
        if chosen:
            unknown = [c for c in chosen if c not in classes]
            if unknown:
                raise ValueError(f"qos.classes: unknown classes {unknown}; known: {classes}")
            self.metric, self.classes = "recall", [classes.index(c) for c in chosen]
        else:
            self.metric, self.classes = metric, None
        self.options: dict[str, Correctness] = {}
        for layer, part in table.groupby("layer"):
            self.options[str(layer)] = self._correctness(part, str(layer))
        self.options[compute.LC] = self.options[compute.RC] = self.options[FINETUNED]
        if camera is not None:
            val = camera[camera["split"] == "val"]
            for option, part in val.groupby("option"):
                self.options[CAMERA_PREFIX + str(option)] = self._correctness(
                    part.assign(seed=0), f"camera {option}"
                )

    def _correctness(self, part: pd.DataFrame, what: str) -> Correctness:
        seeds = sorted(part["seed"].unique())
        out = np.zeros((1, len(seeds), len(self.order)))
        for s, seed in enumerate(seeds):
            rows = part[part["seed"] == seed].set_index("sample_id")
            if set(rows.index) != set(self.order):
                raise ValueError(f"{what} was scored on other validation images than LC")
            rows = rows.loc[self.order]
            out[0, s] = (rows["pred"].to_numpy() == rows["label"].to_numpy()).astype(float)
        return Correctness(out, self.labels, self.num_classes)


def _finite(v, worst=math.inf) -> float:
    v = float(v)
    return v if math.isfinite(v) else worst


def choose(feasible: list[dict], outcomes: Outcomes | None, margin: float,
           seed: int = 0) -> tuple[dict, list[dict], dict]:  # fmt: skip
    """The recommended candidate, the candidates tied with the most accurate one, and the
    tie test (its method, margin and each candidate's paired difference from the best)."""
    best = max(feasible, key=lambda r: (_finite(r["accuracy"], -math.inf), -r["layer_index"]))
    test: dict = {"margin": margin}
    have = outcomes is not None and all(r["layer"] in outcomes.options for r in feasible)
    if have:
        options = [
            Option(outcomes.options[r["layer"]], 1.0 - _finite(r["frame_loss"], 1.0))
            for r in feasible
        ]
        i = feasible.index(best)
        res = equivalent(options, i, outcomes.metric, margin, classes=outcomes.classes, seed=seed)
        tied = [r for r, e in zip(feasible, res, strict=True) if e["equivalent"]]
        test["method"] = (
            "paired: the 95 % interval of (best − option) in delivered validation accuracy, "
            "images and each option's seeds resampled, inside ±margin"
        )
        test["differences"] = {
            r["layer"]: {k: e[k] for k in ("difference", "ci", "equivalent")}
            for r, e in zip(feasible, res, strict=True)
        }
    else:
        acc = _finite(best["accuracy"], -math.inf)
        tied = [r for r in feasible if _finite(r["accuracy"], -math.inf) == acc]
        test["method"] = "equal accuracy (no per-image outcomes given)"
    pick = min(
        tied,
        key=lambda r: (_finite(r["latency_p95_s"]), _finite(r["device_flops"]), r["layer_index"]),
    )
    return pick, tied, test


def load(outcomes_path, camera_predictions_path, finetune: Mapping | None, metric: str,
         chosen: list[str] | None) -> Outcomes | None:  # fmt: skip
    """:class:`Outcomes` from the files, or None without them."""
    if outcomes_path is None or finetune is None:
        return None
    camera = pd.read_parquet(camera_predictions_path) if camera_predictions_path else None
    return Outcomes(pd.read_parquet(outcomes_path), camera, list(finetune["classes"]), metric,
                    chosen)  # fmt: skip
