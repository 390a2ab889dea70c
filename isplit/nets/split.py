"""Cut a classifier after a probe point and put a bottleneck in the cut.

``split_model(model, layer)`` cuts the model's traced graph at the cut point ``layer``
(:mod:`isplit.nets.graph`): the head computes everything up to that tensor, the tail the rest
from it, so ``tail(head(x)) == model(x)`` exactly and the activation crossing the cut is the one
I-SPLIT measured at that probe point. Cut points lie between residual blocks, never inside one.

The bottlenecks that can sit in the cut are in :mod:`isplit.nets.bottlenecks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from isplit.config import InputSettings, RetrainSettings, settings
from isplit.io.files import replacing
from isplit.nets import graph, models
from isplit.nets.bottlenecks import (
    FLOAT_BYTES,
    Bottleneck,
    code_bytes,
    dequantize_code,
    make_bottleneck,
    quantize_code,
)

WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class SplitModel(nn.Module):
    """``forward(x) = tail(bottleneck(head(x)))``."""

    def __init__(self, head: nn.Module, bottleneck: Bottleneck, tail: nn.Module, layer: str):
        super().__init__()
        self.head, self.bottleneck, self.tail = head, bottleneck, tail
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.bottleneck(self.head(x)))

    def transmitted_bytes(self) -> int:
        """Bytes sent per image across the cut."""
        return self.bottleneck.transmitted_bytes()


def split_model(
    model: nn.Module,
    layer: str,
    bottleneck: str | Bottleneck = "none",
    *,
    input_shape: Sequence[int],
    spec: Mapping | None = None,
) -> SplitModel:
    """Split ``model`` after probe point (module name) ``layer``.

    The head and tail share their modules with ``model`` (no copy). ``bottleneck`` is a kind
    (:data:`BOTTLENECKS`, sized for the activation of an ``input_shape`` = (C, H, W) input,
    with the settings in ``spec``) or a ready :class:`Bottleneck`.
    """
    mg = models.model_graph(model, tuple(input_shape[1:]), int(input_shape[0]))
    try:
        point = mg.point(layer)
    except ValueError:
        valid = ", ".join(p.name for p in mg.cut_points)
        raise ValueError(
            f"{layer!r} is not a split point of {type(model).__name__}; cut points: {valid}"
        ) from None
    head, tail = graph.cut(mg, layer)
    if isinstance(bottleneck, Bottleneck):
        bn = bottleneck
    else:
        bn = make_bottleneck(bottleneck, point.shape, spec or {}, point.channel_axis)
    return SplitModel(head, bn, tail, layer)


def build_split(
    model: nn.Module,
    layer: str,
    cfg: RetrainSettings | Mapping,
    input_cfg: InputSettings | Mapping,
) -> SplitModel:
    """The split a retraining config describes (``cfg`` may be just its bottleneck spec)."""
    spec = cfg.bottleneck_spec() if isinstance(cfg, RetrainSettings) else dict(cfg)
    kind = spec.get("bottleneck", "ae")
    return split_model(
        model, layer, kind, input_shape=settings("input", input_cfg).shape(), spec=spec
    )


def save_split(path: str | Path, split: SplitModel, meta: dict) -> None:
    """``meta`` needs ``model``, ``num_classes``, ``layer``, ``input`` and ``bottleneck``
    (the spec) to rebuild the split in :func:`load_split`."""
    with replacing(path) as tmp:
        torch.save({"meta": meta, "state_dict": split.state_dict()}, tmp)


def load_split(path: str | Path, map_location: str = "cpu") -> tuple[SplitModel, dict]:
    """Rebuild a split model saved by :func:`save_split`, in eval mode."""
    obj = torch.load(path, map_location=map_location, weights_only=True)
    meta = obj["meta"]
    size = int(meta["input"]["image_size"]) if meta.get("input") else None
    model = models.build(meta["model"], int(meta["num_classes"]), image_size=size)
    split = build_split(model, meta["layer"], meta["bottleneck"], meta["input"])
    split.load_state_dict(obj["state_dict"])
    return split.eval(), meta


# --------------------------------------------------------------------------- halves and parts


class DeviceHalf(nn.Module):
    """head + encoder (+ quantisation): image batch → what the device transmits:
    the float32 code, or ``(q uint8, scale, offset)`` for a quantised one."""

    def __init__(self, split: SplitModel):
        super().__init__()
        self.head, self.encoder = split.head, split.bottleneck.encoder
        self.quant_bits = split.bottleneck.quant_bits

    def forward(self, x: torch.Tensor):
        z = self.encoder(self.head(x))
        if self.quant_bits:
            return quantize_code(z, self.quant_bits)
        return z


class ServerHalf(nn.Module):
    """decoder + tail: what the device transmits → logits."""

    def __init__(self, split: SplitModel):
        super().__init__()
        self.decoder, self.tail = split.bottleneck.decoder, split.tail
        self.quant_bits = split.bottleneck.quant_bits

    def forward(
        self,
        code: torch.Tensor,
        scale: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``code`` is the float32 code, or the uint8 ``q`` with its ``scale`` and ``offset``."""
        if self.quant_bits:
            code = dequantize_code(code, scale, offset)
        return self.tail(self.decoder(code))


def parts(split: SplitModel) -> dict[str, nn.Module]:
    """The four parts in forward order, each fed the previous one's output: ``head`` and
    ``encoder`` run on the device, ``decoder`` (with the quantiser, as training sees it) and
    ``tail`` on the server."""
    bn = split.bottleneck
    return {
        "head": split.head,
        "encoder": bn.encoder,
        "decoder": nn.Sequential(bn.quantize, bn.decoder),
        "tail": split.tail,
    }


def cost(split: SplitModel, input_shape: Sequence[int]) -> dict:
    """Parameters, FLOPs (per image; a multiply-add counts 2) and weight layers (convolutions
    and linear layers: what a device model charges a per-layer overhead for) of each part, the
    activation and code shapes, and the bytes sent."""
    split.eval()
    x = torch.zeros(1, *input_shape)
    out: dict = {}
    shapes = []
    for name, module in parts(split).items():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            x = module(x)
        out[f"{name}_flops"] = int(counter.get_total_flops())
        out[f"{name}_params"] = sum(p.numel() for p in module.parameters())
        out[f"{name}_layers"] = sum(isinstance(m, WEIGHT_LAYERS) for m in module.modules())
        shapes.append(tuple(x.shape[1:]))
    out["activation_shape"] = list(shapes[0])
    out["activation_bytes"] = math.prod(shapes[0]) * FLOAT_BYTES
    out["code_shape"] = list(split.bottleneck.code_shape)
    out["bytes"] = split.transmitted_bytes()
    # before the optional quantisation of the code (equal to ``bytes`` without it)
    out["bytes_float32"] = code_bytes(split.bottleneck.code_shape, None)
    return out
