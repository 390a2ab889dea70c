"""Named compute profiles: how long a device or a server takes for a part of the network, from
the work in it rather than from this machine's timings.

Why: timing the parts here and multiplying by a factor (``scale``) carries this machine's
framework overhead into the verdict — at 32 px a batch-1 MobileNetV2 forward here is ~75 %
per-module overhead — so whether running the whole model on the device (LC) is feasible would
depend on Python, not on the device. A profile instead charges what published batch-1
measurements of whole networks on that hardware show:

    t(part) = FLOPs(part) / throughput + weight_layers(part) × layer_overhead

with FLOPs and weight layers (convolutions and linear layers) counted exactly as
:func:`isplit.nets.split.cost` counts them for ``head``, ``encoder``, ``decoder`` and ``tail``
(``splits.parquet``), so no timing run is needed. The two constants of each profile are a
non-negative least-squares fit (on relative error) to that hardware's published latencies of
whole networks; ``scripts/fit_device_profiles.py`` counts the networks' FLOPs and layers
the same way and refits (``scripts/device_benchmarks.csv`` holds the published numbers; the unit
tests hold the constants below against the fit).

============== ======== ============= ======== ====================================================
profile        GFLOP/s  per weight    max      source; fit: median / max |relative error| over n
                        layer         params   networks
============== ======== ============= ======== ====================================================
rpi4-cpu       35.0     371 µs        —        Raspberry Pi 4 B, PyTorch float32, 4 threads, 224 px
                                               (:data:`SOURCES` ``pytorch-rpi4``); n = 9 float
                                               networks; 19 % / 34 %.
jetson-nano-   340      78.4 µs       —        Jetson Nano, TensorRT FP16, batch 1, 224 px
gpu                                            (``torch2trt-nano``); n = 18 torchvision
                                               networks; 8 % / 67 % (AlexNet: its large linear
                                               layers are memory-bound).
stm32h7-mcu    0.383    49.7 µs       2·10⁶    STM32H7A3 (Cortex-M7 280 MHz, 2 MB flash, 1.4 MB
                                               SRAM), int8, X-CUBE-AI 8.0 (``mlperf-tiny-v1.1-
                                               krai``); n = the 4 MLPerf Tiny networks; 16 % /
                                               20 %. ``max_params``: one int8 weight per byte of
                                               flash; code and activations are not counted.
xavier-gpu     4200     33.8 µs       —        Jetson AGX Xavier, TensorRT FP16, batch 1, 224 px
                                               (``torch2trt-xavier``); n = 29 torchvision
                                               networks; 16 % / 73 % (DenseNets, whose
                                               concatenations are memory traffic, not
                                               convolution work, are the worst).
============== ======== ============= ======== ====================================================

The default device is ``rpi4-cpu`` (a Raspberry Pi 4 class embedded CPU) and the default server
``xavier-gpu`` (an edge GPU server beside the camera). What a profile does not model: memory
bandwidth (depthwise convolutions and concatenations do little arithmetic per byte), batching,
int8 vs float (each profile is the arithmetic its source measured), and warm-up. A profile is
also a mapping ``{name, gflops, layer_overhead_s, max_params, source}`` in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SOURCES = {
    "pytorch-rpi4": "T. Rice, 'Real Time Inference on Raspberry Pi 4', PyTorch tutorials "
    "(intermediate_source/realtime_rpi.rst), Raspberry Pi 4 Model B benchmark table, "
    "'Model Time (ms/frame)' of the float models",
    "torch2trt-nano": "NVIDIA-AI-IOT/torch2trt, docs/benchmarks/jetson_nano.md, 'Latency "
    "(TensorRT)', fp16, batch 1, 224x224",
    "torch2trt-xavier": "NVIDIA-AI-IOT/torch2trt, docs/benchmarks/jetson_xavier.md, 'Latency "
    "(TensorRT)', fp16, batch 1, 224x224",
    "mlperf-tiny-v1.1-krai": "MLCommons tiny_results_v1.1, closed/Krai/results/README.md, "
    "NUCLEO_H7A3ZI with X-CUBE-AI 8.0.0, inferences per second of the four benchmarks",
}


@dataclass(frozen=True)
class ComputeProfile:
    """Sustained ``gflops`` (10⁹ FLOP/s, a multiply-add = 2) and a fixed ``layer_overhead_s``
    per weight layer; ``max_params``: the most parameters the device holds (None = no limit)."""

    name: str
    gflops: float
    layer_overhead_s: float
    max_params: float | None = None
    kind: str = "fit"  # "fit" (to published latencies, see module doc) or "custom"
    source: str = ""

    def __post_init__(self):
        if not self.gflops > 0 or self.layer_overhead_s < 0:
            raise ValueError(f"profile {self.name!r}: gflops must be > 0, overhead >= 0")

    def seconds(self, flops, layers):
        """Time for work of ``flops`` FLOPs in ``layers`` weight layers (arrays allowed)."""
        return np.asarray(flops, dtype=float) / (self.gflops * 1e9) + self.layer_overhead_s * (
            np.asarray(layers, dtype=float)
        )


PROFILES: dict[str, ComputeProfile] = {
    p.name: p
    for p in (
        ComputeProfile("rpi4-cpu", 35.0, 371e-6, None, "fit", SOURCES["pytorch-rpi4"]),
        ComputeProfile("jetson-nano-gpu", 340.0, 78.4e-6, None, "fit", SOURCES["torch2trt-nano"]),
        ComputeProfile("stm32h7-mcu", 0.383, 49.7e-6, 2e6, "fit", SOURCES["mlperf-tiny-v1.1-krai"]),
        ComputeProfile("xavier-gpu", 4200.0, 33.8e-6, None, "fit", SOURCES["torch2trt-xavier"]),
    )
}
DEFAULT_DEVICE, DEFAULT_SERVER = "rpi4-cpu", "xavier-gpu"


@dataclass(frozen=True)
class Fit:
    gflops: float
    layer_overhead_s: float
    relative_errors: np.ndarray
    median_abs_error: float
    max_abs_error: float


def fit(flops, layers, seconds) -> Fit:
    """Non-negative least squares of ``seconds ≈ flops / R + layers · o`` on relative errors
    (each network counts alike, whatever its size)."""
    from scipy.optimize import nnls

    f, n, t = (np.asarray(v, dtype=float) for v in (flops, layers, seconds))
    coef, _ = nnls(np.stack([f / t, n / t], axis=1), np.ones_like(t))
    inv_rate, overhead = coef
    pred = f * inv_rate + n * overhead
    err = pred / t - 1
    return Fit(
        gflops=float(1 / inv_rate / 1e9) if inv_rate > 0 else float("inf"),
        layer_overhead_s=float(overhead),
        relative_errors=err,
        median_abs_error=float(np.median(np.abs(err))),
        max_abs_error=float(np.max(np.abs(err))),
    )


def resolve(spec: Mapping | str | None, side: str) -> ComputeProfile | None:
    """The named or custom profile of a config's ``latency.device`` / ``latency.server``, or
    ``None`` when that side is timed (``scale``/``table``: :mod:`.compute`)."""
    if spec is None:
        spec = {"profile": DEFAULT_DEVICE if side == "device" else DEFAULT_SERVER}
    if isinstance(spec, str):
        spec = {"profile": spec}
    spec = dict(spec)
    timed = {"scale", "table"} & set(spec)
    named = {"profile", "gflops"} & set(spec)
    if timed and named:
        raise ValueError(f"latency.{side}: give a profile or scale/table, not both: {spec}")
    if timed:
        return None
    if "profile" in spec:
        name = spec["profile"]
        if name not in PROFILES:
            raise ValueError(f"unknown compute profile {name!r}; known: {sorted(PROFILES)}")
        return PROFILES[name]
    if "gflops" not in spec:
        raise ValueError(f"latency.{side} needs profile, gflops, scale or table: {spec}")
    return ComputeProfile(
        str(spec.get("name", f"custom-{side}")),
        float(spec["gflops"]),
        float(spec.get("layer_overhead_s", 0.0)),
        None if spec.get("max_params") is None else float(spec["max_params"]),
        "custom",
        str(spec.get("source", "config")),
    )


def table_markdown(profiles=None) -> str:
    """The profiles as a markdown table, with their sources."""
    rows = [
        "| profile | GFLOP/s | per weight layer | max params | source |",
        "|---|---|---|---|---|",
    ]
    for p in profiles or PROFILES.values():
        mp = "—" if p.max_params is None else f"{p.max_params:.3g}"
        rows.append(
            f"| {p.name} | {p.gflops:.3g} | {p.layer_overhead_s * 1e6:.3g} µs | {mp} | {p.source} |"
        )
    return "\n".join(rows) + "\n"
