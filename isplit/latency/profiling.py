"""Timing a split's parts on the machine that runs this: the compute table.

Measurement protocol (:func:`run`): batch 1, ``torch.inference_mode``, ``warmup`` untimed calls,
then ``repeats`` timed calls with ``time.perf_counter``; the parts of one split are timed in
round-robin so a burst of load on the shared machine hits all of them alike. The input is a
seeded random image; each part receives the real output of the previous part.

The table's format is :mod:`isplit.latency.compute`'s; run on the real device (``isplit
profile``), the same file is a measured device table for the workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from isplit.config import settings
from isplit.io.files import write_table
from isplit.latency.compute import FULL, LC, PARTS, RC
from isplit.nets import models
from isplit.nets.split import load_split, parts


def _time_round_robin(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int):
    """Median, p95 and count of each callable's wall time, calls interleaved."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: np.empty(repeats) for k in fns}
    for r in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k][r] = time.perf_counter() - t0
    return {k: (float(np.median(v)), float(np.percentile(v, 95)), len(v)) for k, v in times.items()}


def _chain_calls(parts: Mapping, x) -> dict[str, Callable]:
    """One closure per part, each fed with the previous part's real output."""
    calls = {}
    for name, module in parts.items():
        y = module(x)
        calls[name] = partial(module, x)
        x = y
    return calls


def run(
    *,
    model_path: str | Path,
    split_paths: Mapping[str, str | Path],
    out_path: str | Path,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Time head/encoder/decoder/tail of every split model and the whole fine-tuned model.

    ``split_paths``: layer name → ``model.pt`` written by :func:`isplit.train.retrain.run`.
    ``threads``: torch intra-op threads while timing (1 by default: an embedded-like single
    core, and stable timings on a shared machine); the previous setting is restored afterwards.
    Writes ``out_path`` (Parquet) atomically and returns it as a DataFrame.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    prev_threads = torch.get_num_threads()
    rows = []
    try:
        if threads:
            torch.set_num_threads(int(threads))
        model, meta = models.load_model(model_path)
        size = int(meta["input"]["image_size"])
        model_name = str(meta["model"])
        shape = settings("input", meta["input"]).shape()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, *shape, generator=g)
        with torch.inference_mode():
            model.eval()
            stats = _time_round_robin({FULL: partial(model, x)}, repeats, warmup)[FULL]
        for layer in (LC, RC):
            rows.append((layer, FULL, *stats))
        del model
        for layer, path in split_paths.items():
            split, smeta = load_split(path)  # one at a time: VGG16 splits are 0.5 GB each
            if int(smeta["input"]["image_size"]) != size or smeta["model"] != model_name:
                raise ValueError(f"split {path} is not of {model_name} at {size} px")
            with torch.inference_mode():
                calls = _chain_calls(parts(split.eval()), x)
                for part, st in _time_round_robin(calls, repeats, warmup).items():
                    rows.append((layer, part, *st))
    finally:
        torch.set_num_threads(prev_threads)
    df = pd.DataFrame(rows, columns=["layer", "part", "median_s", "p95_s", "n"])
    df.insert(0, "input_size", size)
    df.insert(0, "model", model_name)
    df["threads"] = int(threads or prev_threads)
    order = {n: i for i, n in enumerate([*split_paths, LC, RC, *PARTS, FULL])}
    df = df.sort_values(["layer", "part"], key=lambda s: s.map(order))
    df = df.reset_index(drop=True)
    write_table(df, out_path)
    return df
