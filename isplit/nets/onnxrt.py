"""The split's halves as ONNX files, and running them in onnxruntime.

Why beside ``.pt2``: devices in this field run ONNX Runtime, TFLite/LiteRT or TensorRT, not
PyTorch; an ONNX file is what those toolchains start from. ``device.onnx`` is head + encoder
+ the 8-bit quantiser of the code (inputs ``image``; outputs ``code``, or ``q`` uint8,
``scale``, ``offset``), ``server.onnx`` the dequantiser + decoder + tail (those inputs,
output ``logits``), both with a symbolic batch dimension, checked with ``onnx.checker``.

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``, opset
:data:`OPSET`: 0.5 s a half here, against 10-15 s for the torch.export-based exporter (which
needs ``onnxscript``), which is the fallback when the first one refuses a model. The export is
refused unless onnxruntime reproduces the PyTorch split (:func:`check`).

:class:`OrtModule` wraps an ``InferenceSession`` so that ``isplit device`` / ``isplit serve``
call it like the torch half (torch tensors in, torch tensors out).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17
DEVICE_ONNX, SERVER_ONNX = "device.onnx", "server.onnx"
LOGIT_TOLERANCE = 1e-4  # float32 logits and codes, onnxruntime against PyTorch


def code_names(quant_bits: int | None) -> list[str]:
    return ["q", "scale", "offset"] if quant_bits else ["code"]


def export(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
) -> None:
    """``module`` as ONNX at ``path``, the first dimension of every input and output dynamic,
    checked by ``onnx.checker``."""
    import onnx

    dynamic = {n: {0: "batch"} for n in (*input_names, *output_names)}
    module = module.eval()
    names = {"input_names": list(input_names), "output_names": list(output_names)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its successor
            torch.onnx.export(module, tuple(inputs), str(path), dynamo=False,
                              opset_version=OPSET, dynamic_axes=dynamic, **names)  # fmt: skip
    except Exception:  # a model the TorchScript tracer cannot take: the torch.export route
        shapes = tuple({0: torch.export.Dim.AUTO} for _ in inputs)
        program = torch.onnx.export(module, tuple(inputs), dynamo=True, dynamic_shapes=shapes,
                                    verbose=False, **names)  # fmt: skip
        program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)


def session(path: str | Path, threads: int | None = 1):
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtModule:
    """An onnxruntime session called like a torch module: torch tensors in (in the order of
    the file's inputs), a tensor or a tuple of tensors out."""

    def __init__(self, path: str | Path, threads: int | None = 1):
        self.path = Path(path)
        self.session = session(path, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *args: torch.Tensor):
        feed = {n: a.detach().cpu().numpy() for n, a in zip(self.inputs, args, strict=True)}
        outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in self.session.run(None, feed)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def eval(self) -> OrtModule:
        return self


def check(device: OrtModule, server: OrtModule, dev_ref: nn.Module, srv_ref: nn.Module,
          x: torch.Tensor) -> dict:  # fmt: skip
    """Refuse ONNX halves that do not reproduce the torch halves on ``x``: float32 codes and
    logits within :data:`LOGIT_TOLERANCE`, 8-bit codes equal. Returns the differences."""
    with torch.no_grad():
        ref_code = dev_ref(x)
        ref_code = ref_code if isinstance(ref_code, tuple) else (ref_code,)
        ref = srv_ref(*ref_code)
    code = device(x)
    code = code if isinstance(code, tuple) else (code,)
    out = server(*code)
    diffs = {"logits": float((out - ref).abs().max())}
    for i, (a, b) in enumerate(zip(code, ref_code, strict=True)):
        if a.dtype != b.dtype or a.shape != b.shape:
            raise RuntimeError(f"ONNX device output {i}: {a.dtype} {tuple(a.shape)}, torch "
                               f"{b.dtype} {tuple(b.shape)}")  # fmt: skip
        if a.dtype == torch.uint8:
            diffs["codes_unequal"] = int((a != b).sum())
        else:
            diffs[f"code{i}"] = float((a - b).abs().max())
    bad = {k: v for k, v in diffs.items() if v > (0 if k == "codes_unequal" else LOGIT_TOLERANCE)}
    if bad:
        raise RuntimeError(f"ONNX halves disagree with the PyTorch split: {bad}")
    return diffs


def quantize_int8(src: str | Path, dst: str | Path, batches: Sequence[np.ndarray]) -> None:
    """``src`` with its convolutions and matrix products in int8 (onnxruntime's static QDQ
    quantisation: int8 per-channel weights, uint8 activations calibrated by min/max on
    ``batches`` of the first input). The code's own 8-bit quantiser (min, max, round) is left
    in float: only Conv, MatMul and Gemm are quantised."""
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.name = session(src).get_inputs()[0].name
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {self.name: x}

    prepared = Path(dst).with_suffix(".pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process, which is done here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # shape inference and graph optimisation first, as onnxruntime recommends
            q.quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
            _quantize(q, prepared, dst, Reader())
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)


def _quantize(q, src: Path, dst, reader) -> None:
    q.quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
    )
