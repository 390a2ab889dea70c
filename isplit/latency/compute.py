"""Compute profiles: how long each side of every split takes, measured or imported.

Why measure per part: the device runs ``head`` + ``encoder`` and the server ``decoder`` + ``tail``
(docs/methods.md), so a split's compute latency is a sum of parts, and the parts can be scaled to
another machine independently. The two ends of the design space are measured too:

* ``LC`` (local computing): the whole fine-tuned model on the device; only the result is sent
  (:data:`LC_RESULT_BYTES` = the predicted class as an int32).
* ``RC`` (remote computing): the whole model on the server; the device sends the raw camera
  frame, uint8 C×H×W at the model's input size (``3·S·S`` bytes: an RGB frame resized on the
  device, before normalisation — the smallest lossless thing a camera can send; grey datasets
  converted to RGB are still counted as 3 channels, because that is what the model consumes).

The resulting table (``compute.parquet``) is also the **device table format**: running the same
measurement on the real device (``isplit profile`` calls :func:`isplit.latency.profiling.run`
there) gives a file with the
columns ``model, input_size, layer, part, median_s, p95_s[, n]`` (CSV or Parquet); ``part`` is
``head|encoder|decoder|tail`` for a split layer and ``full`` for the rows ``LC`` and ``RC``.
The workflow imports it with ``latency: {device: {table: path}}``
(:func:`side_times`). A table may time the device half as one program instead (``part``
``device``, and a ``precision`` column: the measured onnxruntime profile, ``latency: {device:
measured}``, :func:`isplit.latency.profiling.run_measured`); its ``fp32`` rows are read.
Timings are not reproducible bit for bit; everything downstream of a given
``compute.parquet`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

PARTS = ("head", "encoder", "decoder", "tail")
FULL = "full"
DEVICE_HALF = "device"  # head + encoder timed as one program (the measured ONNX profile)
LC, RC = "LC", "RC"
LC_RESULT_BYTES = 4  # the predicted class index as an int32
TABLE_COLUMNS = ("model", "input_size", "layer", "part", "median_s", "p95_s")
DEVICE_PARTS = ("head", "encoder")
SERVER_PARTS = ("decoder", "tail")


def rc_bytes(input_size: int, channels: int = 3) -> int:
    """Bytes of the raw camera frame RC sends: uint8 C×H×W at the model's input size."""
    return int(channels) * int(input_size) ** 2


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
    bad = set(df["part"]) - {*PARTS, FULL, DEVICE_HALF}
    if bad:
        raise ValueError(f"compute table {path}: unknown parts {sorted(bad)}")
    if (df[["median_s", "p95_s"]] < 0).any().any():
        raise ValueError(f"compute table {path}: negative times")
    return df


def side_times(
    local: pd.DataFrame,
    side_cfg: Mapping,
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
    cfg = dict(side_cfg or {})
    table = cfg.get("table")
    scale = float(cfg.get("scale", 1.0))
    if not scale > 0:
        raise ValueError(f"{side} scale must be > 0, got {scale}")
    src = local
    if table:
        src = read_table(table)
        model, size = str(local["model"].iloc[0]), int(local["input_size"].iloc[0])
        src = src[(src["model"].astype(str) == model) & (src["input_size"].astype(int) == size)]
        if src.empty:
            raise ValueError(f"{side} table {table} has no rows for {model} at {size} px")
    if "precision" in src.columns:  # a measured table: its float32 rows
        src = src[src["precision"] == "fp32"]
    t = {(r.layer, r.part): float(getattr(r, stat)) for r in src.itertuples(index=False)}
    parts = DEVICE_PARTS if side == "device" else SERVER_PARTS
    if side == "device" and layers and all((x, DEVICE_HALF) in t for x in layers):
        parts = (DEVICE_HALF,)
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
