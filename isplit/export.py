"""Export a trained split as two self-contained programs: device (head + encoder) and server
(decoder + tail), so an embedded device can run its half without isplit.

Format: ``torch.export`` (``.pt2``, written with :func:`torch.export.save`). Why this and not
TorchScript: on torch 2.14 ``torch.jit.trace``/``script`` raise a ``FutureWarning`` announcing
their removal, whereas ``torch.export`` is the supported path; it captures VGG, ResNet and
MobileNetV2 parts (plain convolutions, eval-mode BatchNorm, in-place ReLU, residual adds,
flatten) as one ATen graph without Python control flow, it keeps the batch dimension symbolic
(``Dim``), and the same ``.pt2`` is the input of AOTInductor when a device wants a compiled
shared library. Loading needs only ``torch``: ``torch.export.load(path).module()(x)``.

What crosses the cut is exactly what :mod:`isplit.serve` sends:

* no quantisation: the encoder output (or the raw activation for a split without bottleneck),
  float32, ``(B, *code_shape)``;
* ``quant_bits`` = b (1..8): the 8-bit quantiser of :class:`isplit.split.Quantize` applied on
  the device — per image ``offset = min``, ``scale = max(max − min, 1e-12) / (2^b − 1)``,
  ``q = clamp(round((z − offset) / scale), 0, 2^b − 1)`` as uint8 — and undone on the server as
  ``z = q · scale + offset``. So the device program returns ``(q, scale, offset)`` and the
  server program takes them, instead of the dequantised float tensor the training graph passes
  along. (Bit packing below 8 bits is a wire matter, done by :mod:`isplit.serve`.)

The split model computes ``z + (q·scale + offset − z)`` (straight-through form for training);
the exported pair computes ``q·scale + offset``: equal up to one float32 rounding, hence
``allclose`` rather than bitwise equality of the logits.

``manifest.json`` names the files (with sha256), the input (shape, layout, preprocessing), the
code (shape, dtype, quantisation, bytes per image), the classes and the split's digest (the
identity :mod:`isplit.serve`'s hello carries), so the two halves can be matched without isplit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click
import torch
from torch import nn

from isplit import __version__
from isplit.datasets.loader import IMAGENET_MEAN, IMAGENET_STD
from isplit.split import QUANT_HEADER_BYTES, AEBottleneck, SplitModel

FORMAT = "torch.export"
FORMAT_VERSION = 1
DEVICE_FILE = "device.pt2"
SERVER_FILE = "server.pt2"
MANIFEST = "manifest.json"
EXAMPLE_BATCH = 2  # an example batch > 1, so the exported batch dimension stays symbolic


# --------------------------------------------------------------------------- the two halves


def quantize_code(z: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image affine quantisation, the same arithmetic as :class:`isplit.split.Quantize`.
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


def _bottleneck_parts(split: SplitModel) -> tuple[nn.Module, nn.Module, int | None]:
    bn = split.bottleneck
    if isinstance(bn, AEBottleneck):
        return bn.encoder, bn.decoder, bn.quant_bits
    if isinstance(bn, nn.Identity):
        return nn.Identity(), nn.Identity(), None
    raise ValueError(
        f"cannot cut bottleneck {type(bn).__name__} into an encoder and a decoder: "
        "only the 'ae' bottleneck and no bottleneck are supported"
    )


class DevicePart(nn.Module):
    """head + encoder (+ quantisation): image batch → what the device transmits."""

    def __init__(self, split: SplitModel):
        super().__init__()
        encoder, _, bits = _bottleneck_parts(split)
        if bits is not None and not 1 <= int(bits) <= 8:
            raise ValueError(f"quant_bits {bits} is not supported (1..8)")
        self.head, self.encoder = split.head, encoder
        self.quant_bits = int(bits) if bits else None

    def forward(self, x: torch.Tensor):
        z = self.encoder(self.head(x))
        if self.quant_bits:
            return quantize_code(z, self.quant_bits)
        return z


class ServerPart(nn.Module):
    """decoder + tail: what the device transmits → logits."""

    def __init__(self, split: SplitModel):
        super().__init__()
        _, decoder, bits = _bottleneck_parts(split)
        self.decoder, self.tail = decoder, split.tail
        self.quant_bits = int(bits) if bits else None

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


def code_shape(split: SplitModel, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of one image's code (without the batch dimension)."""
    if isinstance(split.bottleneck, AEBottleneck):
        return tuple(int(s) for s in split.bottleneck.code_shape)
    with torch.no_grad():
        return tuple(int(s) for s in split.head(torch.zeros(1, *input_shape)).shape[1:])


def payload_bytes(shape: Sequence[int], quant_bits: int | None) -> int:
    """Bytes of one image's code on the wire; equals ``transmitted_bytes()`` of the split."""
    numel = 1
    for s in shape:
        numel *= int(s)
    if quant_bits:
        return (numel * int(quant_bits) + 7) // 8 + QUANT_HEADER_BYTES
    return numel * 4


# --------------------------------------------------------------------------- identity


def state_digest(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor of the state dict: the
    two halves of one trained split share it, any other pair (even same layer) does not."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # no copy
    return h.hexdigest()


def input_shape_of(meta: dict) -> tuple[int, int, int]:
    s = int(meta["input"]["image_size"])
    return (3, s, s)


def split_identity(split: SplitModel, meta: dict) -> dict:
    """What both ends of a split must agree on (the serve hello and the export manifest)."""
    _, _, bits = _bottleneck_parts(split)
    shape = code_shape(split, input_shape_of(meta))
    return {
        "model": meta["model"],
        "layer": meta["layer"],
        "code_shape": list(shape),
        "dtype": "uint8" if bits else "float32",
        "quant_bits": int(bits) if bits else None,
        "payload_bytes": payload_bytes(shape, bits),
        "num_classes": int(meta["num_classes"]),
        "digest": state_digest(split),
    }


def input_spec(meta: dict) -> dict:
    cfg = meta["input"]
    norm = cfg.get("normalize", "imagenet")
    return {
        "shape": list(input_shape_of(meta)),
        "dtype": "float32",
        "layout": "NCHW",
        "image_size": int(cfg["image_size"]),
        "grayscale_to_rgb": bool(cfg.get("grayscale_to_rgb", True)),
        "normalize": norm,
        "mean": list(IMAGENET_MEAN) if norm == "imagenet" else None,
        "std": list(IMAGENET_STD) if norm == "imagenet" else None,
        "preprocess": "resize to image_size x image_size (squash, antialias), scale to [0, 1], "
        "replicate grey to 3 channels, then (x - mean) / std when normalize is imagenet",
    }


# --------------------------------------------------------------------------- export


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_parts(split: SplitModel, input_shape: Sequence[int]):
    """``torch.export`` programs of the device and server halves, batch dimension dynamic."""
    from torch.export import Dim

    split.eval()
    device, server = DevicePart(split).eval(), ServerPart(split).eval()
    x = torch.randn(EXAMPLE_BATCH, *input_shape)
    with torch.no_grad():
        code = device(x)
    code = code if isinstance(code, tuple) else (code,)
    batch = Dim("batch", min=1, max=4096)
    dev_prog = torch.export.export(device, (x,), dynamic_shapes=({0: batch},), strict=False)
    srv_prog = torch.export.export(
        server, code, dynamic_shapes=tuple({0: batch} for _ in code), strict=False
    )
    return dev_prog, srv_prog


def check_parts(split: SplitModel, dev_prog, srv_prog, input_shape: Sequence[int]) -> None:
    """Refuse to write an export whose output differs from the split model's."""
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = split(x)
        code = dev_prog.module()(x)
        out = srv_prog.module()(*(code if isinstance(code, tuple) else (code,)))
    if out.shape != ref.shape or not torch.allclose(out, ref, rtol=1e-4, atol=1e-4):
        diff = (out - ref).abs().max().item() if out.shape == ref.shape else float("nan")
        raise RuntimeError(f"exported split disagrees with the split model (max |diff| {diff})")


def export_split(split_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Export ``results/<exp>/splits/<layer>/model.pt`` into ``out_dir`` (e.g.
    ``results/<exp>/deploy/<layer>/``): ``device.pt2``, ``server.pt2``, ``manifest.json``.

    Atomic: the programs are checked against the split model, everything is written into a
    temporary sibling directory, then renamed into place; ``out_dir`` never holds a partial
    export (an older one is moved aside first and deleted after).
    """
    from isplit.retrain import load_split

    split_path, out_dir = Path(split_path), Path(out_dir)
    split, meta = load_split(split_path)
    shape = input_shape_of(meta)
    ident = split_identity(split, meta)
    dev_prog, srv_prog = export_parts(split, shape)
    check_parts(split, dev_prog, srv_prog, shape)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary directory
        torch.export.save(dev_prog, tmp / DEVICE_FILE)
        torch.export.save(srv_prog, tmp / SERVER_FILE)
        bits = ident["quant_bits"]
        code_io = ["q", "scale", "offset"] if bits else ["code"]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "torch_version": torch.__version__,
            "isplit_version": __version__,
            "source": str(split_path),
            "model": meta["model"],
            "layer": meta["layer"],
            "classes": list(meta.get("classes") or []),
            "num_classes": int(meta["num_classes"]),
            "input": input_spec(meta),
            "code": {
                "shape": ident["code_shape"],
                "dtype": ident["dtype"],
                "quant_bits": bits,
                "payload_bytes": ident["payload_bytes"],
                "dequantize": "z = q * scale + offset, per image" if bits else None,
            },
            "device": {
                "file": DEVICE_FILE,
                "sha256": _sha256(tmp / DEVICE_FILE),
                "inputs": ["image"],
                "outputs": code_io,
            },
            "server": {
                "file": SERVER_FILE,
                "sha256": _sha256(tmp / SERVER_FILE),
                "inputs": code_io,
                "outputs": ["logits"],
            },
            "identity": ident,
            "usage": "prog = torch.export.load(file).module(); "
            "code = device(image_batch); logits = server(*code) (or server(code))",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / DEVICE_FILE, out_dir / SERVER_FILE, out_dir / MANIFEST]


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished ``src`` to ``dst``; an older ``dst`` is moved aside first and deleted
    after, so a reader never sees a half-written directory."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        dst.rename(old / dst.name)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_exported(deploy_dir: str | Path) -> tuple[nn.Module, nn.Module, dict]:
    """``(device program, server program, manifest)`` of an export, files checked against the
    manifest's sha256. Needs only torch (this function is the reference for a device)."""
    deploy_dir = Path(deploy_dir)
    manifest = json.loads((deploy_dir / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{deploy_dir}: unknown export format {manifest.get('format')!r}")
    progs = []
    for side in ("device", "server"):
        path = deploy_dir / manifest[side]["file"]
        if _sha256(path) != manifest[side]["sha256"]:
            raise ValueError(f"{path} does not match the sha256 in {deploy_dir / MANIFEST}")
        progs.append(torch.export.load(path).module())
    return progs[0], progs[1], manifest


@click.command("export")
@click.option(
    "--split",
    "split_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="results/<exp>/splits/<layer>/model.pt",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="results/<exp>/deploy/<layer>/",
)
def export_command(split_path, out_dir):
    """Export a split's device half (head + encoder) and server half (decoder + tail) as
    torch.export programs plus manifest.json, runnable without isplit."""
    for path in export_split(split_path, out_dir):
        click.echo(str(path))
