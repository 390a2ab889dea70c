"""Compute profiles: how long each side of every split takes, measured or imported.

Why measure per part: the device runs ``head`` + ``encoder`` and the server ``decoder`` + ``tail``
(method.md §5.2), so a split's compute latency is a sum of parts, and the parts can be scaled to
another machine independently. The two ends of the design space are measured too:

* ``LC`` (local computing): the whole fine-tuned model on the device; only the result is sent
  (:data:`LC_RESULT_BYTES` = the predicted class as an int32).
* ``RC`` (remote computing): the whole model on the server; the device sends the raw camera
  frame, uint8 C×H×W at the model's input size (``3·S·S`` bytes: an RGB frame resized on the
  device, before normalisation — the smallest lossless thing a camera can send; grey datasets
  converted to RGB are still counted as 3 channels, because that is what the model consumes).

Measurement protocol (:func:`run`): batch 1, ``torch.inference_mode``, ``warmup`` untimed calls,
then ``repeats`` timed calls with ``time.perf_counter``; the parts of one split are timed in
round-robin so a burst of load on the shared machine hits all of them alike. The input is a
seeded random image; each part receives the real output of the previous part.

The resulting table (``compute.parquet``) is also the **device table format**: running the same
measurement on the real device (``isplit profile`` calls :func:`run` there) gives a file with the
columns ``model, input_size, layer, part, median_s, p95_s[, n]`` (CSV or Parquet); ``part`` is
``head|encoder|decoder|tail`` for a split layer and ``full`` for the rows ``LC`` and ``RC``.
The workflow imports it with ``latency: {device: {table: path}}``
(:func:`side_times`). Timings are not reproducible bit for bit; everything downstream of a given
``compute.parquet`` is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.atomic import replacing

PARTS = ("head", "encoder", "decoder", "tail")
FULL = "full"
LC, RC = "LC", "RC"
LC_RESULT_BYTES = 4  # the predicted class index as an int32
TABLE_COLUMNS = ("model", "input_size", "layer", "part", "median_s", "p95_s")
DEFAULT_DEVICE = {"scale": 20.0}
DEFAULT_SERVER = {"scale": 0.1}
DEVICE_PARTS = ("head", "encoder")
SERVER_PARTS = ("decoder", "tail")


def rc_bytes(input_size: int, channels: int = 3) -> int:
    """Bytes of the raw camera frame RC sends: uint8 C×H×W at the model's input size."""
    return int(channels) * int(input_size) ** 2


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


def _split_parts(split) -> dict:
    from torch import nn

    bn = split.bottleneck
    enc = getattr(bn, "encoder", nn.Identity())
    dec = nn.Sequential(getattr(bn, "quantize", nn.Identity()), getattr(bn, "decoder", bn))
    return {"head": split.head, "encoder": enc, "decoder": dec, "tail": split.tail}


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

    ``split_paths``: layer name → ``model.pt`` written by :func:`isplit.retrain.run`.
    ``threads``: torch intra-op threads while timing (1 by default: an embedded-like single
    core, and stable timings on a shared machine); the previous setting is restored afterwards.
    Writes ``out_path`` (Parquet) atomically and returns it as a DataFrame.
    """
    import torch

    from isplit import models
    from isplit.retrain import input_shape, load_split

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
        shape = input_shape(meta["input"])
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
                calls = _chain_calls(_split_parts(split.eval()), x)
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
    write_parquet(df, out_path)
    return df


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with replacing(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: str | Path) -> pd.DataFrame:
    """A compute table (CSV or Parquet) in the documented format, checked."""
    path = Path(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        df = pd.read_parquet(path)
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"compute table {path} lacks columns {missing}; needs {TABLE_COLUMNS}")
    bad = set(df["part"]) - {*PARTS, FULL}
    if bad:
        raise ValueError(f"compute table {path}: unknown parts {sorted(bad)}")
    if (df[["median_s", "p95_s"]] < 0).any().any():
        raise ValueError(f"compute table {path}: negative times")
    return df


def side_times(
    local: pd.DataFrame,
    side_cfg: Mapping | None,
    *,
    side: str,
    layers: list[str],
    stat: str = "median_s",
) -> dict[str, float]:
    """Seconds per frame on one side (``"device"`` or ``"server"``) for each layer + LC + RC.

    ``side_cfg``: ``{"scale": f}`` → the local measurement × f (f = how many times slower that
    machine is than this one); ``{"table": path, "scale": f}`` → the imported table × f (f
    defaults to 1 with a table), rows picked by the local table's model and input size. The
    device runs head + encoder (LC: the full model; RC: nothing); the server decoder + tail (LC:
    nothing; RC: the full model).
    """
    if side not in ("device", "server"):
        raise ValueError(f"side must be 'device' or 'server', got {side!r}")
    if stat not in ("median_s", "p95_s"):
        raise ValueError(f"stat must be median_s or p95_s, got {stat!r}")
    default = DEFAULT_DEVICE if side == "device" else DEFAULT_SERVER
    cfg = dict(default if side_cfg is None else side_cfg)
    table = cfg.get("table")
    scale = float(cfg.get("scale", 1.0 if table else default["scale"]))
    if not scale > 0:
        raise ValueError(f"{side} scale must be > 0, got {scale}")
    src = local
    if table:
        src = read_table(table)
        model, size = str(local["model"].iloc[0]), int(local["input_size"].iloc[0])
        src = src[(src["model"].astype(str) == model) & (src["input_size"].astype(int) == size)]
        if src.empty:
            raise ValueError(f"{side} table {table} has no rows for {model} at {size} px")
    t = {(r.layer, r.part): float(getattr(r, stat)) for r in src.itertuples(index=False)}
    parts = DEVICE_PARTS if side == "device" else SERVER_PARTS
    out: dict[str, float] = {}
    need = [(layer, p) for layer in layers for p in parts]
    need.append((LC if side == "device" else RC, FULL))
    missing = [k for k in need if k not in t]
    if missing:
        where = table or "the local compute table"
        raise ValueError(f"{where} lacks {side} timings for {missing[:5]}")
    for layer in layers:
        out[layer] = scale * sum(t[(layer, p)] for p in parts)
    full = scale * t[(LC if side == "device" else RC, FULL)]
    out[LC], out[RC] = (full, 0.0) if side == "device" else (0.0, full)
    return out
