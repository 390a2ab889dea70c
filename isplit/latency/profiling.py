"""Timing a split's parts on the machine that runs this: the compute table (PyTorch, per part)
and the measured device profile (onnxruntime, the device half as one program, float32 and
int8: :func:`run_measured`).

Measurement protocol (:func:`run`): batch 1, ``torch.inference_mode``, ``warmup`` untimed calls,
then ``repeats`` timed calls with ``time.perf_counter``; the parts of one split are timed in
round-robin so a burst of load on the shared machine hits all of them alike. The input is a
seeded random image; each part receives the real output of the previous part.

The table's format is :mod:`isplit.latency.compute`'s; run on the real device (``isplit
profile``), the same file is a measured device table for the workflow.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from isplit.config import settings
from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.evaluation.metrics import classification_metrics
from isplit.io.files import write_table
from isplit.latency.compute import DEVICE_HALF, FULL, LC, PARTS, RC
from isplit.nets import models, onnxrt
from isplit.nets.split import load_split, parts


def _time_round_robin(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int):
    """Median, p95 and count of each callable's wall time, calls interleaved."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: np.empty(repeats) for k in fns}
    for r in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k][r] = time.perf_counter() - t0
    return {k: (float(np.median(v)), float(np.percentile(v, 95)), len(v)) for k, v in times.items()}


def _chain_calls(parts: Mapping, x) -> dict[str, Callable]:
    """One closure per part, each fed with the previous part's real output."""
    calls = {}
    for name, module in parts.items():
        y = module(x)
        calls[name] = partial(module, x)
        x = y
    return calls


def run(
    *,
    model_path: str | Path,
    split_paths: Mapping[str, str | Path],
    out_path: str | Path,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Time head/encoder/decoder/tail of every split model and the whole fine-tuned model.

    ``split_paths``: layer name → ``model.pt`` written by :func:`isplit.train.retrain.run`.
    ``threads``: torch intra-op threads while timing (1 by default: an embedded-like single
    core, and stable timings on a shared machine); the previous setting is restored afterwards.
    Writes ``out_path`` (Parquet) atomically and returns it as a DataFrame.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    prev_threads = torch.get_num_threads()
    rows = []
    try:
        if threads:
            torch.set_num_threads(int(threads))
        model, meta = models.load_model(model_path)
        size = int(meta["input"]["image_size"])
        model_name = str(meta["model"])
        shape = settings("input", meta["input"]).shape()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, *shape, generator=g)
        with torch.inference_mode():
            model.eval()
            stats = _time_round_robin({FULL: partial(model, x)}, repeats, warmup)[FULL]
        for layer in (LC, RC):
            rows.append((layer, FULL, *stats))
        del model
        for layer, path in split_paths.items():
            split, smeta = load_split(path)  # one at a time: VGG16 splits are 0.5 GB each
            if int(smeta["input"]["image_size"]) != size or smeta["model"] != model_name:
                raise ValueError(f"split {path} is not of {model_name} at {size} px")
            with torch.inference_mode():
                calls = _chain_calls(parts(split.eval()), x)
                for part, st in _time_round_robin(calls, repeats, warmup).items():
                    rows.append((layer, part, *st))
    finally:
        torch.set_num_threads(prev_threads)
    df = pd.DataFrame(rows, columns=["layer", "part", "median_s", "p95_s", "n"])
    df.insert(0, "input_size", size)
    df.insert(0, "model", model_name)
    df["threads"] = int(threads or prev_threads)
    order = {n: i for i, n in enumerate([*split_paths, LC, RC, *PARTS, FULL])}
    df = df.sort_values(["layer", "part"], key=lambda s: s.map(order))
    df = df.reset_index(drop=True)
    write_table(df, out_path)
    return df


# --------------------------------------------------------------------------- measured (ONNX)


def _batches(dataset, batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    xs, ys = [], []
    for i in range(0, len(dataset), batch_size):
        items = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        xs.append(torch.stack([x for x, _ in items]).numpy())
        ys.append(np.array([int(y) for _, y in items]))
    return xs, (np.concatenate(ys) if ys else np.zeros(0, np.int64))


def _scores(predict, sets, k: int) -> dict:
    """Top-1 and balanced accuracy of ``predict`` (a batch → class indices) on each split."""
    out = {}
    for split, (xs, y) in sets.items():
        pred = np.concatenate([predict(x) for x in xs]) if xs else np.zeros(0, np.int64)
        m = classification_metrics(y, pred, k)
        out.update({f"{split}_top1": m["top1"], f"{split}_balanced_accuracy":
                    m["balanced_accuracy"], f"n_{split}": len(y)})  # fmt: skip
    return out


def _run(sess, x):
    return sess.run(None, {sess.get_inputs()[0].name: x})


def run_measured(
    *,
    model_path: str | Path,
    deploy_dirs: Mapping[str, str | Path],
    dataset_dir: str | Path,
    out_path: str | Path,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = 1,
    eval_images: int | None = None,
    calibration_images: int = 64,
    seed: int = 0,
) -> pd.DataFrame:
    """This machine as the device: median and p95 batch-1 time of each candidate's device half
    (``device.onnx`` of its export) and of the whole model (``LC``) in onnxruntime, in float32
    and with onnxruntime's int8 quantisation (:func:`isplit.nets.onnxrt.quantize_int8`,
    calibrated on ``calibration_images`` training images), and the accuracy of the split with
    each device half (server half in float32) on ``eval_images`` validation and test images.

    Rows: ``part`` ``device`` (the device half as one program) or ``full`` (LC), ``precision``
    ``fp32`` or ``int8``; an int8 variant that onnxruntime cannot make has NaN times and its
    reason in ``note``. Written to ``out_path`` in the compute table format
    (:mod:`isplit.latency.compute`; ``latency.device: measured`` reads the fp32 rows)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    model, meta = models.load_model(model_path)
    inp = settings("input", meta["input"])
    k = int(meta["num_classes"])
    transform = transform_from_config(inp)
    sets = {
        s: _batches(ManifestDataset(dataset_dir, s, transform, subset=eval_images, seed=seed))
        for s in ("val", "test")
    }
    cal = ManifestDataset(dataset_dir, "train", transform, subset=calibration_images, seed=seed)
    calibration = _batches(cal, 16)[0]
    x1 = torch.randn(1, *inp.shape(), generator=torch.Generator().manual_seed(seed)).numpy()
    rows = []
    with tempfile.TemporaryDirectory(prefix="isplit-measured-") as tmp:
        full = Path(tmp) / "full.onnx"
        onnxrt.export(model.eval(), (torch.from_numpy(x1),), full, ["image"], ["logits"])
        del model
        programs = {LC: (full, None)}
        for layer, d in deploy_dirs.items():
            programs[layer] = (Path(d) / onnxrt.DEVICE_ONNX, Path(d) / onnxrt.SERVER_ONNX)
        for layer, (device_file, server_file) in programs.items():
            server = onnxrt.session(server_file, threads) if server_file else None
            variants = {"fp32": (device_file, "")}
            int8 = Path(tmp) / f"{len(rows)}-int8.onnx"
            try:
                onnxrt.quantize_int8(device_file, int8, calibration)
                variants["int8"] = (int8, "")
            except Exception as e:  # noqa: BLE001 - reported per row, the others still timed
                variants["int8"] = (None, f"int8 quantisation failed: {type(e).__name__}: {e}")
            for precision, (path, note) in variants.items():
                row = {"layer": layer, "part": FULL if layer == LC else DEVICE_HALF,
                       "precision": precision, "note": note}  # fmt: skip
                if path is None:
                    rows.append({**row, "median_s": np.nan, "p95_s": np.nan, "n": 0})
                    continue
                sess = onnxrt.session(path, threads)
                med, p95, n = _time_round_robin({0: partial(_run, sess, x1)}, repeats, warmup)[0]

                def predict(x, sess=sess, server=server):
                    out = _run(sess, x)
                    return (_run_named(server, out) if server else out[0]).argmax(1)

                rows.append({**row, "median_s": med, "p95_s": p95, "n": n,
                             **_scores(predict, sets, k)})  # fmt: skip
    df = pd.DataFrame(rows)
    df.insert(0, "input_size", inp.image_size)
    df.insert(0, "model", str(meta["model"]))
    df["runtime"] = "onnxruntime"
    df["threads"] = int(threads or 0)
    write_table(df, out_path)
    return df


def _run_named(server, outputs) -> np.ndarray:
    feed = {i.name: o for i, o in zip(server.get_inputs(), outputs, strict=True)}
    return server.run(None, feed)[0]
