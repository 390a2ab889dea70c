"""Cut a classifier after a probe point and put a bottleneck in the cut.

``split_model(model, layer)`` cuts the model's traced graph at the cut point ``layer``
(:mod:`isplit.nets.graph`): the head computes everything up to that tensor, the tail the rest
from it, so ``tail(head(x)) == model(x)`` exactly and the activation crossing the cut is the one
I-SPLIT measured at that probe point. Cut points lie between residual blocks, never inside one.

Every bottleneck has the same four parts, so profiling, export and the wire protocol cut any
split the same way (:func:`parts`): ``encoder`` (on the device), an optional ``b``-bit
quantiser of the code (device) and its inverse (server), and ``decoder`` (server). What crosses
the network is the encoder's output, ``code_shape`` per image, sent as float32 or as b-bit
integers with a per-image float32 scale and offset (:func:`code_bytes`).

* ``none``: encoder and decoder are identities; the raw activation is sent.
* ``ae``: for a (C, H, W) activation, the public I-SPLIT code's undercomplete autoencoder (``f =
  round(C / ratio)``, stride-2 3×3 convolutions with BatchNorm + ReLU, C→f→2f for two stages,
  mirrored by transposed convolutions with no final activation; docs/methods.md). The public
  code finds the decoder's padding by trial; here each stage's ``output_padding`` is computed
  from the encoder's input size (a stride-2, padding-1, kernel-3 conv maps n to ceil(n/2); the
  transposed conv maps m to 2m − 1 + output_padding), so shapes match by construction. Its code
  size depends on the layer's shape (1/64 of the activation at 16×16, 1/4 at 1×1), which is what
  ``budget`` removes. For tokens (L × D, channels last) or a vector, its pointwise form: a
  Linear layer D → f on every token (GELU), and f → D back.
* ``budget``: the same bytes at every split (``code_bytes``), so that accuracy differences
  between splits come from the layer, not from the size of the code. A 1×1 convolution to ``k``
  channels and adaptive average pooling to ``s×s``, sent as 8-bit integers; the decoder
  upsamples back and maps to the layer's channels. ``k·s² ≤ code_bytes − 8`` (the 8 bytes are
  the scale and offset): the spatial size is kept as large as the activation allows with at
  least ``min(C, 8)`` channels, then the channels fill the rest of the budget (never more than
  ``C``: a layer smaller than the budget is sent whole, at 8 bits).
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

FLOAT_BYTES = 4
QUANT_HEADER_BYTES = 8  # per image: float32 scale and float32 offset of a quantised code
BOTTLENECKS = ("none", "ae", "budget")
WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def code_bytes(shape: Sequence[int], quant_bits: int | None) -> int:
    """Bytes of one image's code on the wire."""
    numel = math.prod(int(s) for s in shape)
    if quant_bits:
        return (numel * int(quant_bits) + 7) // 8 + QUANT_HEADER_BYTES
    return numel * FLOAT_BYTES


# --------------------------------------------------------------------------- quantisation


def quantize_code(z: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image affine quantisation: ``offset = min``, ``scale = max(max − min, 1e-12) /
    (2^b − 1)``, ``q = clamp(round((z − offset) / scale), 0, 2^b − 1)``.
    Returns ``(q uint8 shaped like z, scale (B,), offset (B,))``."""
    flat = z.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    levels = 2**bits - 1
    scale = (hi - lo).clamp_min(1e-12) / levels
    q = ((flat - lo) / scale).round().clamp(0, levels)
    return q.to(torch.uint8).view(z.shape), scale.squeeze(1), lo.squeeze(1)


def dequantize_code(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_code` (up to the quantisation error)."""
    shape = [-1] + [1] * (q.dim() - 1)
    return q.to(torch.float32) * scale.view(shape) + offset.view(shape)


class Quantize(nn.Module):
    """Quantise and dequantise in one step, as training sees the code. The rounding passes
    gradients straight through so the encoder still trains."""

    def __init__(self, bits: int):
        super().__init__()
        if not 1 <= int(bits) <= 8:
            raise ValueError(f"quant_bits {bits} is not supported (1..8)")
        self.bits = int(bits)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        r = dequantize_code(*quantize_code(z, self.bits))
        return z + (r - z).detach()


# --------------------------------------------------------------------------- bottlenecks


class Bottleneck(nn.Module):
    """``decoder(quantize(encoder(a)))``; subclasses set the parts and ``code_shape``."""

    encoder: nn.Module
    decoder: nn.Module
    code_shape: tuple[int, ...]
    input_shape: tuple[int, ...]

    def __init__(self, quant_bits: int | None):
        super().__init__()
        self.quant_bits = int(quant_bits) if quant_bits else None
        self.quantize = Quantize(self.quant_bits) if self.quant_bits else nn.Identity()

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantize(self.encoder(a)))

    def transmitted_bytes(self) -> int:
        return code_bytes(self.code_shape, self.quant_bits)


class NoBottleneck(Bottleneck):
    """The raw activation crosses the cut (optionally quantised)."""

    def __init__(self, shape: Sequence[int], quant_bits: int | None = None):
        super().__init__(quant_bits)
        self.encoder, self.decoder = nn.Identity(), nn.Identity()
        self.input_shape = self.code_shape = tuple(int(s) for s in shape)


def _stage_out(n: int) -> int:
    return (n + 1) // 2  # conv k3 s2 p1: floor((n + 2 - 3) / 2) + 1


class AEBottleneck(Bottleneck):
    """Undercomplete autoencoder for an activation of shape ``(C, H, W)``."""

    def __init__(
        self,
        shape: Sequence[int],
        ratio: float = 8,
        stages: int = 2,
        quant_bits: int | None = None,
    ):
        super().__init__(quant_bits)
        if len(shape) != 3:
            raise ValueError(f"the AE bottleneck needs a (C, H, W) activation, got {tuple(shape)}")
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        c, h, w = (int(s) for s in shape)
        f = max(1, round(c / ratio))
        chans = [c] + [f * 2**i for i in range(stages)]
        sizes = [(h, w)]
        for _ in range(stages):
            sizes.append((_stage_out(sizes[-1][0]), _stage_out(sizes[-1][1])))
        enc: list[nn.Module] = []
        for i in range(stages):
            enc += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        dec: list[nn.Module] = []
        for i in reversed(range(stages)):
            (ht, wt), (hi, wi) = sizes[i], sizes[i + 1]
            pad = (ht - (2 * hi - 1), wt - (2 * wi - 1))  # 0 for odd targets, 1 for even
            dec.append(
                nn.ConvTranspose2d(
                    chans[i + 1], chans[i], 3, stride=2, padding=1, output_padding=pad
                )
            )
            if i > 0:
                dec += [nn.BatchNorm2d(chans[i]), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.input_shape = (c, h, w)
        self.code_shape = (chans[-1], *sizes[-1])
        for m in self.encoder.modules():
            if isinstance(m, nn.Conv2d):  # the public code's init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class PointwiseAE(Bottleneck):
    """The ``ae`` bottleneck of an activation whose channels are its last axis (tokens L × D)
    or a vector: ``Linear(D, f)`` + GELU on every position, ``Linear(f, D)`` back."""

    def __init__(self, shape: Sequence[int], ratio: float = 8, quant_bits: int | None = None):
        super().__init__(quant_bits)
        d = int(shape[-1])
        f = max(1, round(d / ratio))
        self.encoder = nn.Sequential(nn.Linear(d, f), nn.GELU())
        self.decoder = nn.Sequential(nn.Linear(f, d))
        self.input_shape = tuple(int(x) for x in shape)
        self.code_shape = (*self.input_shape[:-1], f)


def budget_code_shape(shape: Sequence[int], code_bytes: int) -> tuple[int, int, int]:
    """(k, sh, sw) of the ``budget`` code for an activation of ``shape``: see the module
    docstring."""
    c, h, w = (int(x) for x in shape)
    values = int(code_bytes) - QUANT_HEADER_BYTES
    k_min = min(c, 8)
    if values < k_min:
        raise ValueError(f"code_bytes {code_bytes} leaves room for fewer than {k_min} values")
    s = max(1, math.isqrt(values // k_min))
    sh, sw = min(h, s), min(w, s)
    k = min(c, values // (sh * sw))
    return k, sh, sw


class BudgetBottleneck(Bottleneck):
    """The same number of bytes at every split (8-bit code of ``budget_code_shape``)."""

    def __init__(self, shape: Sequence[int], code_bytes: int = 1024):
        super().__init__(8)
        if len(shape) != 3:
            raise ValueError(f"the budget bottleneck needs a (C, H, W) activation, got {shape}")
        c, h, w = (int(s) for s in shape)
        k, sh, sw = budget_code_shape(shape, code_bytes)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, k, 1), nn.BatchNorm2d(k), nn.AdaptiveAvgPool2d((sh, sw))
        )
        self.decoder = nn.Sequential(
            nn.Upsample(size=(h, w), mode="bilinear", align_corners=False),
            nn.Conv2d(k, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1),
        )
        self.input_shape = (c, h, w)
        self.code_shape = (k, sh, sw)


def make_bottleneck(
    kind: str, shape: Sequence[int], spec: Mapping, channel_axis: int = 0
) -> Bottleneck:
    """The bottleneck ``kind`` for an activation of ``shape`` (channels on ``channel_axis``);
    ``spec`` holds its settings (:meth:`isplit.config.RetrainSettings.bottleneck_spec`)."""
    bits = spec.get("quant_bits")
    if kind == "none":
        return NoBottleneck(shape, bits)
    if kind == "ae" and (len(shape) != 3 or channel_axis not in (0, -3)):
        return PointwiseAE(shape, ratio=float(spec["ratio"]), quant_bits=bits)
    if kind == "ae":
        return AEBottleneck(
            shape, ratio=float(spec["ratio"]), stages=int(spec["stages"]), quant_bits=bits
        )
    if kind == "budget":
        if bits not in (None, 8):
            raise ValueError(f"the budget bottleneck sends 8-bit codes; quant_bits is {bits}")
        return BudgetBottleneck(shape, int(spec["code_bytes"]))
    raise ValueError(f"bottleneck {kind!r} is not one of {BOTTLENECKS}")


# --------------------------------------------------------------------------- the split model


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
