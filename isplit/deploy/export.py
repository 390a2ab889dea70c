"""Export a trained split as two self-contained programs: device (head + encoder) and server
(decoder + tail), so an embedded device can run its half without isplit: as ``torch.export``
programs (``.pt2``) and as ONNX files (``device.onnx``, ``server.onnx``,
:mod:`isplit.nets.onnxrt`), both checked against the split model.

Format: ``torch.export`` (``.pt2``, written with :func:`torch.export.save`). Why this and not
TorchScript: on torch 2.14 ``torch.jit.trace``/``script`` raise a ``FutureWarning`` announcing
their removal, whereas ``torch.export`` is the supported path; it captures VGG, ResNet and
MobileNetV2 parts (plain convolutions, eval-mode BatchNorm, in-place ReLU, residual adds,
flatten) as one ATen graph without Python control flow, it keeps the batch dimension symbolic
(``Dim``), and the same ``.pt2`` is the input of AOTInductor when a device wants a compiled
shared library. Loading needs only ``torch``: ``torch.export.load(path).module()(x)``.

What crosses the cut is exactly what :mod:`isplit.deploy.wire` sends:

* no quantisation: the encoder output (or the raw activation for a split without bottleneck),
  float32, ``(B, *code_shape)``;
* ``quant_bits`` = b (1..8): the quantiser of :class:`isplit.nets.bottlenecks.Quantize`
  applied on the device — per image ``offset = min``, ``scale = max(max − min, 1e-12) / (2^b − 1)``,
  ``q = clamp(round((z − offset) / scale), 0, 2^b − 1)`` as uint8 — and undone on the server as
  ``z = q · scale + offset``. So the device program returns ``(q, scale, offset)`` and the
  server program takes them, instead of the dequantised float tensor the training graph passes
  along. (Bit packing below 8 bits is a wire matter, done by :mod:`isplit.deploy.wire`.)

The split model computes ``z + (q·scale + offset − z)`` (straight-through form for training);
the exported pair computes ``q·scale + offset``: equal up to one float32 rounding, hence
``allclose`` rather than bitwise equality of the logits.

``manifest.json`` names the files (with sha256), the input (shape, layout, preprocessing), the
code (shape, dtype, quantisation, bytes per image), the classes and the split's digest (the
identity :mod:`isplit.deploy.wire`'s hello carries), so the halves can be matched without isplit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from isplit import __version__
from isplit.config import settings
from isplit.data.loader import IMAGENET_MEAN, IMAGENET_STD
from isplit.io.files import sha256_file
from isplit.nets import onnxrt
from isplit.nets.split import DeviceHalf, ServerHalf, SplitModel, load_split

FORMAT = "torch.export"
FORMAT_VERSION = 2  # 2: with the ONNX halves
DEVICE_FILE = "device.pt2"
SERVER_FILE = "server.pt2"
MANIFEST = "manifest.json"
EXAMPLE_BATCH = 2
RUNTIMES = ("torch", "onnx")  # an example batch > 1, so the exported batch dimension stays symbolic


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


def split_identity(split: SplitModel, meta: dict) -> dict:
    """What both ends of a split must agree on (the serve hello and the export manifest)."""
    bits = split.bottleneck.quant_bits
    shape = split.bottleneck.code_shape
    return {
        "model": meta["model"],
        "layer": meta["layer"],
        "code_shape": list(shape),
        "dtype": "uint8" if bits else "float32",
        "quant_bits": int(bits) if bits else None,
        "payload_bytes": split.transmitted_bytes(),
        "num_classes": int(meta["num_classes"]),
        "digest": state_digest(split),
    }


def input_spec(meta: dict) -> dict:
    inp = settings("input", meta["input"])
    norm = inp.normalize
    return {
        "shape": list(inp.shape()),
        "dtype": "float32",
        "layout": "NCHW",
        "image_size": inp.image_size,
        "grayscale_to_rgb": inp.grayscale_to_rgb,
        "normalize": norm,
        "mean": list(IMAGENET_MEAN) if norm == "imagenet" else None,
        "std": list(IMAGENET_STD) if norm == "imagenet" else None,
        "preprocess": "resize to image_size x image_size (squash, antialias), scale to [0, 1], "
        "replicate grey to 3 channels, then (x - mean) / std when normalize is imagenet",
    }


# --------------------------------------------------------------------------- export


def export_parts(split: SplitModel, input_shape: Sequence[int]):
    """``torch.export`` programs of the device and server halves, batch dimension dynamic."""
    from torch.export import Dim

    split.eval()
    device, server = DeviceHalf(split).eval(), ServerHalf(split).eval()
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


def export_onnx(split: SplitModel, input_shape: Sequence[int], out_dir: Path) -> dict:
    """``device.onnx`` and ``server.onnx`` of ``split`` in ``out_dir``, run in onnxruntime
    against the torch halves (:func:`isplit.nets.onnxrt.check`); returns the differences."""
    device, server = DeviceHalf(split).eval(), ServerHalf(split).eval()
    x = torch.randn(EXAMPLE_BATCH, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        code = device(x)
    code = code if isinstance(code, tuple) else (code,)
    names = onnxrt.code_names(split.bottleneck.quant_bits)
    onnxrt.export(device, (x,), out_dir / onnxrt.DEVICE_ONNX, ["image"], names)
    onnxrt.export(server, code, out_dir / onnxrt.SERVER_ONNX, names, ["logits"])
    probe = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(0))
    return onnxrt.check(
        onnxrt.OrtModule(out_dir / onnxrt.DEVICE_ONNX),
        onnxrt.OrtModule(out_dir / onnxrt.SERVER_ONNX),
        device,
        server,
        probe,
    )


def export_split(split_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Export ``results/<exp>/splits/<layer>/model.pt`` into ``out_dir`` (e.g.
    ``results/<exp>/deploy/<layer>/``): ``device.pt2``, ``server.pt2``, ``device.onnx``,
    ``server.onnx``, ``manifest.json``.

    Atomic: the programs are checked against the split model, everything is written into a
    temporary sibling directory, then renamed into place; ``out_dir`` never holds a partial
    export (an older one is moved aside first and deleted after).
    """
    split_path, out_dir = Path(split_path), Path(out_dir)
    split, meta = load_split(split_path)
    shape = settings("input", meta["input"]).shape()
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
        code_io = onnxrt.code_names(bits)
        onnx_check = export_onnx(split, shape, tmp)
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
                "sha256": sha256_file(tmp / DEVICE_FILE),
                "inputs": ["image"],
                "outputs": code_io,
            },
            "server": {
                "file": SERVER_FILE,
                "sha256": sha256_file(tmp / SERVER_FILE),
                "inputs": code_io,
                "outputs": ["logits"],
            },
            "onnx": {
                "opset": onnxrt.OPSET,
                "device": {
                    "file": onnxrt.DEVICE_ONNX,
                    "sha256": sha256_file(tmp / onnxrt.DEVICE_ONNX),
                    "inputs": ["image"],
                    "outputs": code_io,
                },
                "server": {
                    "file": onnxrt.SERVER_ONNX,
                    "sha256": sha256_file(tmp / onnxrt.SERVER_ONNX),
                    "inputs": code_io,
                    "outputs": ["logits"],
                },
                "max_abs_diff_vs_torch": onnx_check,
            },
            "identity": ident,
            "usage": "prog = torch.export.load(file).module(); "
            "code = device(image_batch); logits = server(*code) (or server(code)); "
            "ONNX: onnxruntime.InferenceSession(file).run(None, {name: array})",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [
        out_dir / f
        for f in (DEVICE_FILE, SERVER_FILE, onnxrt.DEVICE_ONNX, onnxrt.SERVER_ONNX, MANIFEST)
    ]


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


def load_exported(
    deploy_dir: str | Path, runtime: str = "torch", threads: int | None = 1
) -> tuple[nn.Module, nn.Module, dict]:
    """``(device program, server program, manifest)`` of an export, files checked against the
    manifest's sha256. ``runtime`` ``torch`` loads the ``.pt2`` programs (needs only torch:
    this function is the reference for a device), ``onnx`` the ONNX files in onnxruntime."""
    deploy_dir = Path(deploy_dir)
    manifest = json.loads((deploy_dir / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{deploy_dir}: unknown export format {manifest.get('format')!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
    files = manifest if runtime == "torch" else manifest.get("onnx")
    if files is None:
        raise ValueError(f"{deploy_dir} holds no ONNX halves (exported by an older isplit)")
    progs = []
    for side in ("device", "server"):
        path = deploy_dir / files[side]["file"]
        if sha256_file(path) != files[side]["sha256"]:
            raise ValueError(f"{path} does not match the sha256 in {deploy_dir / MANIFEST}")
        if runtime == "torch":
            progs.append(torch.export.load(path).module())
        else:
            progs.append(onnxrt.OrtModule(path, threads))
    return progs[0], progs[1], manifest
