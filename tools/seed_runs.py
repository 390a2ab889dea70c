"""Test helper: the latency stage and the recommendation run once per seed, for checking that
the answer does not depend on the simulation seed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from isplit.latency import simulate
from isplit.recommend import recommend
from isplit.recommend.candidates import endpoints


def answers(work: Path, splits: pd.DataFrame, finetune: dict, cfg: dict, qos: dict, seeds):
    """Per seed: ``(profile, protocol, status, layer)`` of every group, the layer being the
    recommended one or the nearest miss."""
    splits.to_parquet(work / "splits.parquet")
    (work / "finetune.json").write_text(json.dumps(finetune))
    out = []
    for seed in seeds:
        simulate.run_simulation(
            candidates=endpoints(splits, finetune, input_size=32),
            compute_path=None,
            cfg=cfg,
            out_path=work / "latency.parquet",
            seed=seed,
        )
        rec = recommend.run(
            latency_path=work / "latency.parquet",
            splits_path=work / "splits.parquet",
            finetune_metrics_path=work / "finetune.json",
            cfg=qos,
            out_json=work / "recommendation.json",
        )
        out.append(
            [
                (
                    g["profile"],
                    g["protocol"],
                    g["status"],
                    (g["recommended"] or g["nearest_miss"])["layer"],
                )
                for g in rec["groups"]
            ]
        )
    return out
