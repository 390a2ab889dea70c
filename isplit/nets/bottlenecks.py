"""The bottlenecks a split can carry in its cut.

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
* ``budget``: exactly the same bytes at every split (``code_bytes``), so that accuracy
  differences between splits come from the layer, not from the size of the code. A 1×1
  convolution to ``k`` channels and adaptive average pooling to ``s×s``; the first
  ``code_bytes − 8`` values of that tensor are the code (the 8 bytes are the per-image scale
  and offset), sent as 8-bit integers; the decoder pads the dropped values with zeros,
  upsamples back and maps to the layer's channels. The spatial size is kept as large as the
  activation allows with at least 8 channels; ``k`` then fills the budget, and may exceed the
  layer's channels: a layer smaller than the budget is mapped to more 8-bit values rather than
  sent short, so every split spends the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

FLOAT_BYTES = 4
QUANT_HEADER_BYTES = 8  # per image: float32 scale and float32 offset of a quantised code
BOTTLENECKS = ("none", "ae", "budget")
BUDGET_MIN_CHANNELS = 8  # the budget code keeps at least this many channels per position


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
    """(k, sh, sw) of the tensor the ``budget`` code is cut from (its first ``code_bytes − 8``
    values), for an activation of ``shape``: see the module docstring."""
    if len(shape) != 3:
        raise ValueError(f"the budget bottleneck needs a (C, H, W) activation, got {shape}")
    _, h, w = (int(x) for x in shape)
    values = int(code_bytes) - QUANT_HEADER_BYTES
    if values < BUDGET_MIN_CHANNELS:
        raise ValueError(
            f"code_bytes {code_bytes} leaves room for fewer than {BUDGET_MIN_CHANNELS} values"
        )
    s = max(1, math.isqrt(values // BUDGET_MIN_CHANNELS))
    sh, sw = min(h, s), min(w, s)
    return -(-values // (sh * sw)), sh, sw


class _FirstValues(nn.Module):
    """The first ``n`` values of each image's tensor, flattened: the budget code."""

    def __init__(self, n: int):
        super().__init__()
        self.n = int(n)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.flatten(1)[:, : self.n]


class _Refill(nn.Module):
    """Inverse of :class:`_FirstValues`: zeros where values were dropped, then ``shape``."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        missing = math.prod(self.shape) - code.shape[1]
        return nn.functional.pad(code, (0, missing)).view(-1, *self.shape)


class BudgetBottleneck(Bottleneck):
    """Exactly ``code_bytes`` bytes per image at every split (an 8-bit code)."""

    def __init__(self, shape: Sequence[int], code_bytes: int = 1024):
        super().__init__(8)
        k, sh, sw = budget_code_shape(shape, code_bytes)
        c, h, w = (int(s) for s in shape)
        values = int(code_bytes) - QUANT_HEADER_BYTES
        self.encoder = nn.Sequential(
            nn.Conv2d(c, k, 1),
            nn.BatchNorm2d(k),
            nn.AdaptiveAvgPool2d((sh, sw)),
            _FirstValues(values),
        )
        self.decoder = nn.Sequential(
            _Refill((k, sh, sw)),
            nn.Upsample(size=(h, w), mode="bilinear", align_corners=False),
            nn.Conv2d(k, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1),
        )
        self.input_shape = (c, h, w)
        self.code_shape = (values,)


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
