#!/usr/bin/env python
"""Fit the named compute profiles of ``isplit.latency.devices`` to published batch-1 latencies.

``scripts/device_benchmarks.csv`` holds, per device, the latency of whole networks as their
sources publish it (``source`` names the entry of ``devices.SOURCES``). This script

1. counts each network's FLOPs (a multiply-add = 2, convolutions and linear layers only) and
   weight layers (convolutions and linear layers) exactly as ``isplit.nets.split.cost`` counts
   a split's parts — torchvision's definitions at the published input size, built on the meta
   device (no weights, no memory), and the four MLPerf Tiny reference networks rebuilt here from
   their published definitions — and writes them into the CSV (``--count``);
2. fits, per device, ``t = FLOPs / throughput + layers × overhead`` by non-negative least squares
   on relative errors (:func:`isplit.latency.devices.fit`) and prints throughput, overhead and
   each network's error.

``python -m scripts.fit_device_profiles --count`` recounts; without it the counts in the CSV are
used (the unit tests refit from them and hold the profiles' constants against the fit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from isplit.latency import devices

CSV = Path(__file__).resolve().parent / "device_benchmarks.csv"


def _mlperf_tiny(name: str):
    """The MLPerf Tiny v1.x reference networks (their training scripts' Keras definitions)."""
    from torch import nn

    def cbr(cin, cout, k, s, groups=1, pad=None):
        pad = k // 2 if pad is None else pad
        return [
            nn.Conv2d(cin, cout, k, s, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    if name == "mlperf-tiny-ad-fc-autoencoder":  # 640 → 128×4 → 8 → 128×4 → 640
        dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
        return nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)]), (
            640,
        )
    if name == "mlperf-tiny-kws-dscnn":  # 49×10 MFCC, 64 ch, 4 depthwise-separable blocks
        layers = cbr(1, 64, (10, 4), 2, pad=(5, 1))
        for _ in range(4):
            layers += cbr(64, 64, 3, 1, groups=64) + cbr(64, 64, 1, 1)
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12)), (
            1,
            49,
            10,
        )
    if name == "mlperf-tiny-vww-mobilenetv1-0.25":  # MobileNetV1 α = 0.25 at 96×96×3
        spec = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)]
        spec += [(128, 128, 1)] * 5 + [(128, 256, 2), (256, 256, 1)]
        layers = cbr(3, 8, 3, 2)
        for cin, cout, s in spec:
            layers += cbr(cin, cin, 3, s, groups=cin) + cbr(cin, cout, 1, 1)
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 2)), (
            3,
            96,
            96,
        )
    if name == "mlperf-tiny-ic-resnet8":  # ResNet-8 on CIFAR-10: 16-32-64 filters

        class Block(nn.Module):
            def __init__(self, cin, cout, s):
                super().__init__()
                self.body = nn.Sequential(
                    *cbr(cin, cout, 3, s), nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)
                )
                self.skip = nn.Conv2d(cin, cout, 1, s) if s != 1 or cin != cout else nn.Identity()

            def forward(self, x):
                return (self.body(x) + self.skip(x)).relu()

        net = nn.Sequential(
            *cbr(3, 16, 3, 1),
            Block(16, 16, 1),
            Block(16, 32, 2),
            Block(32, 64, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
        return net, (3, 32, 32)
    raise KeyError(name)


def count(model_name: str, size: str) -> tuple[int, int]:
    """FLOPs and weight layers of one benchmark network at its benchmark input."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    from isplit.nets.split import WEIGHT_LAYERS

    with torch.device("meta"):
        if model_name.startswith("mlperf-tiny"):
            net, shape = _mlperf_tiny(model_name)
        else:
            kw = {"weights": None}
            if model_name in ("googlenet", "inception_v3"):
                kw.update(aux_logits=False, init_weights=False)
            net = getattr(torchvision.models, model_name)(**kw)
            shape = (3, int(size), int(size))
        x = torch.empty(1, *shape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net.eval()(x)
    layers = sum(isinstance(m, WEIGHT_LAYERS) for m in net.modules())
    return int(counter.get_total_flops()), int(layers)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", action="store_true", help="recount FLOPs and layers into the CSV")
    args = p.parse_args(argv)
    df = pd.read_csv(CSV)
    if args.count or not {"flops", "layers"} <= set(df.columns):
        counts = {
            (m, s): count(m, s)
            for m, s in df[["model", "input"]].drop_duplicates().itertuples(index=False)
        }
        df["flops"] = [counts[(m, s)][0] for m, s in zip(df["model"], df["input"], strict=True)]
        df["layers"] = [counts[(m, s)][1] for m, s in zip(df["model"], df["input"], strict=True)]
        df.to_csv(CSV, index=False)
        print(f"counted FLOPs and layers of {len(counts)} networks -> {CSV}")
    for device, rows in df.groupby("device", sort=False):
        f = devices.fit(rows["flops"], rows["layers"], rows["latency_ms"] / 1e3)
        print(
            f"\n{device}: {f.gflops:.3g} GFLOP/s, {f.layer_overhead_s * 1e6:.3g} us per weight "
            f"layer; |relative error| median {f.median_abs_error:.1%}, max {f.max_abs_error:.1%}"
            f" (n = {len(rows)})"
        )
        for r, e in zip(rows.itertuples(index=False), f.relative_errors, strict=True):
            print(
                f"  {r.model:34s} {r.flops / 1e9:8.3f} GFLOP {r.layers:4d} layers "
                f"{r.latency_ms:8.2f} ms  fit {e:+.0%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
