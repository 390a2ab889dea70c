"""Cut a classifier after a probe point and put a bottleneck in the cut.

``split_model(model, layer)`` uses :func:`isplit.models.chain`: the head runs the chain up to and
including ``layer``, the tail runs the rest, so ``tail(head(x)) == model(x)`` exactly and the
activation crossing the cut is the one I-SPLIT measured at that probe point. Chain steps are whole
residual blocks, so a cut never falls inside one.

The bottleneck ``"ae"`` is the public I-SPLIT code's undercomplete autoencoder
(``models/bottlenecks/undercomplete_*.py``, method.md §5.1): ``f = round(C / ratio)`` and
stride-2 3×3 convolutions with BatchNorm + ReLU (C→f→2f for the default two stages), mirrored by
transposed convolutions with no final activation. The public code finds the decoder's padding by
trying variants until shapes match; here each stage's ``output_padding`` is computed from the
encoder's input size (a stride-2, padding-1, kernel-3 conv maps n to ceil(n/2); the transposed
conv maps m to 2m − 1 + output_padding), so shapes match by construction. The transmitted tensor
is the encoder output; with ``quant_bits=8`` it is sent as uint8 with a per-image scale and
offset (straight-through gradients while training).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from isplit import models

FLOAT_BYTES = 4
QUANT_HEADER_BYTES = 8  # per image: float32 scale and float32 offset of the 8-bit code


class Steps(nn.Module):
    """A run of chain steps. Keeps the original module names (``names``) for reports, while
    the modules themselves sit in a ModuleList (module names may not contain dots)."""

    def __init__(self, steps: Sequence[tuple[str, nn.Module]]):
        super().__init__()
        self.names = [n for n, _ in steps]
        self.steps = nn.ModuleList([m for _, m in steps])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.steps:
            x = m(x)
        return x


class SplitModel(nn.Module):
    """``forward(x) = tail(bottleneck(head(x)))``."""

    def __init__(self, head: nn.Module, bottleneck: nn.Module, tail: nn.Module, layer: str):
        super().__init__()
        self.head, self.bottleneck, self.tail = head, bottleneck, tail
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.bottleneck(self.head(x)))


def _stage_out(n: int) -> int:
    return (n + 1) // 2  # conv k3 s2 p1: floor((n + 2 - 3) / 2) + 1


class Quantize(nn.Module):
    """Per-image affine ``bits``-bit quantisation of the code, dequantised on the server side.
    The rounding passes gradients straight through so the encoder still trains."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1)
        lo = flat.min(1, keepdim=True).values
        hi = flat.max(1, keepdim=True).values
        levels = 2**self.bits - 1
        scale = (hi - lo).clamp_min(1e-12) / levels
        q = ((flat - lo) / scale).round().clamp(0, levels) * scale + lo
        return (flat + (q - flat).detach()).view_as(z)


class AEBottleneck(nn.Module):
    """Undercomplete autoencoder for an activation of shape ``(C, H, W)``."""

    def __init__(
        self,
        shape: Sequence[int],
        ratio: float = 8,
        stages: int = 2,
        quant_bits: int | None = None,
    ):
        super().__init__()
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
        self.quantize = Quantize(quant_bits) if quant_bits else nn.Identity()
        self.decoder = nn.Sequential(*dec)
        self.input_shape = (c, h, w)
        self.code_shape = (chans[-1], *sizes[-1])
        self.quant_bits = quant_bits
        for m in self.encoder.modules():
            if isinstance(m, nn.Conv2d):  # the public code's init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantize(self.encoder(a)))

    def transmitted_bytes(self) -> int:
        numel = self.code_shape[0] * self.code_shape[1] * self.code_shape[2]
        if self.quant_bits:
            return (numel * self.quant_bits + 7) // 8 + QUANT_HEADER_BYTES
        return numel * FLOAT_BYTES


def split_model(
    model: nn.Module,
    layer: str,
    bottleneck: None | str | nn.Module = None,
    *,
    input_shape: Sequence[int] | None = None,
    ratio: float = 8,
    stages: int = 2,
    quant_bits: int | None = None,
) -> SplitModel:
    """Split ``model`` after probe point (module name) ``layer``.

    The head and tail share their modules with ``model`` (no copy). ``bottleneck``: ``None``
    (identity), ``"ae"`` (needs ``input_shape`` = (C, H, W) of the model's input, to size the
    autoencoder), or any module mapping the activation to one of the same shape.
    """
    steps = models.chain(model)
    names = [n for n, _ in steps]
    if layer not in names:
        valid = ", ".join(p.name for p in models.probe_points(model))
        raise ValueError(f"{layer!r} is not a split point of {type(model).__name__}: {valid}")
    k = names.index(layer)
    head, tail = Steps(steps[: k + 1]), Steps(steps[k + 1 :])
    if bottleneck is None:
        bn: nn.Module = nn.Identity()
    elif bottleneck == "ae":
        if input_shape is None:
            raise ValueError("bottleneck 'ae' needs input_shape (C, H, W)")
        with torch.no_grad():
            was = head.training
            head.eval()
            shape = head(torch.zeros(1, *input_shape)).shape[1:]
            head.train(was)
        bn = AEBottleneck(shape, ratio=ratio, stages=stages, quant_bits=quant_bits)
    elif isinstance(bottleneck, nn.Module):
        bn = bottleneck
    else:
        raise ValueError(f"bottleneck must be None, 'ae' or a module, got {bottleneck!r}")
    return SplitModel(head, bn, tail, layer)


def transmitted_bytes(split: SplitModel, input_shape: Sequence[int]) -> int:
    """Bytes sent per image across the cut."""
    if isinstance(split.bottleneck, AEBottleneck):
        return split.bottleneck.transmitted_bytes()
    with torch.no_grad():
        was = split.head.training
        split.head.eval()
        a = split.head(torch.zeros(1, *input_shape))
        split.head.train(was)
    return a[0].numel() * FLOAT_BYTES
