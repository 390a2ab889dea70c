"""The remote-computing options: the raw camera frame and JPEG at several qualities.

For every validation and test image: its raw size (H×W×C bytes of the source image, as the
camera holds it), and for each JPEG quality the size of the encoded frame (Pillow's libjpeg,
4:2:0 chroma subsampling for colour, none for grey, no metadata) and the fine-tuned model's
prediction on the decoded frame, resized and normalised exactly as in training. The raw option
is lossless: its predictions are the model's own.

``camera.parquet``: one row per option (``raw``, ``jpeg90``, …) with ``quality`` (NaN for raw),
``bytes_mean``, ``bytes_p50``, ``bytes_p95``, ``bytes_max`` over the validation images (the
frame sizes the latency stage sends and the recommendation chooses with: never measured on
test data), ``n`` (validation images),
``frame_shape`` (C, H, W of the source, JSON), ``encode_flops`` (an estimate of the device's
work to produce the option; :data:`JPEG_FLOPS_PER_PIXEL`), ``resize_flops`` (the server's, or
for a split the device's, work to resize the frame to the network's input;
:func:`resize_flops`), and for each ``metric`` in (``top1``, ``balanced_accuracy``) the test
value with its 95 % interval (``<metric>``, ``_lo``, ``_hi``) and the validation value
(``val_<metric>``…). ``camera_predictions.parquet`` holds the per-image predictions
(``option, split, sample_id, label, pred, bytes``).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from isplit.config import settings
from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.evaluation import resample
from isplit.evaluation.stats import Correctness, interval_from
from isplit.io.files import write_table
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism

#: a rough cost of baseline JPEG encoding on an embedded CPU, per pixel and channel: colour
#: conversion, an 8×8 DCT (~2 × 64 multiply-adds per pixel with a fast DCT, less), quantisation
#: and Huffman coding. An estimate, stated as such: no device was measured.
JPEG_FLOPS_PER_PIXEL = 40


def resize_flops(frame_shape, input_size: int) -> int:
    """Work of an antialiased resize of a C×H×W frame to ``input_size``² (two separable passes,
    each output value a weighted sum of ~2·(in/out) inputs; a multiply-add counts 2)."""
    c, h, w = (int(v) for v in frame_shape)
    taps_h, taps_w = max(2, 2 * h // input_size), max(2, 2 * w // input_size)
    return int(2 * c * (input_size * w * taps_h + input_size * input_size * taps_w))


def _jpeg(frame: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """(encoded bytes, decoded frame) of a C×H×W uint8 frame."""
    img = Image.fromarray(frame[0] if frame.shape[0] == 1 else frame.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), optimize=False)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as back:
        arr = np.asarray(back)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return data, arr


@torch.no_grad()
def _predict(model, frames: list[np.ndarray], transform, device, batch: int = 128) -> np.ndarray:
    out = []
    for i in range(0, len(frames), batch):
        x = torch.stack([transform(torch.from_numpy(f.copy())) for f in frames[i : i + batch]])
        out.append(model(x.to(device)).argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    out_path: str | Path,
    predictions_path: str | Path,
    qualities: list[int],
    eval_subset: int | None,
    seed: int,
    n_boot: int = 1000,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> pd.DataFrame:
    """Write ``camera.parquet`` and ``camera_predictions.parquet`` (module docstring)."""
    set_determinism(seed, threads)
    dev = pick_device(device)
    model, meta = models.load_model(model_path)
    model.eval().to(dev)
    inp = settings("input", meta["input"])
    transform = transform_from_config(inp)
    k = len(meta["classes"])
    t0 = time.perf_counter()
    rows, preds = [], []
    shapes = set()
    for split in ("val", "test"):
        ds = ManifestDataset(dataset_dir, split, None, subset=eval_subset, seed=seed)
        frames = [ds.raw(i).numpy() for i in range(len(ds))]
        shapes |= {f.shape for f in frames}
        ids, labels = ds.frame["sample_id"].astype(str).to_numpy(), ds.labels
        options = {"raw": (frames, [f.size for f in frames])}
        for q in qualities:
            coded = [_jpeg(f, q) for f in frames]
            options[f"jpeg{q}"] = ([d for _, d in coded], [len(b) for b, _ in coded])
        for name, (decoded, nbytes) in options.items():
            pred = _predict(model, decoded, transform, dev)
            preds.append(
                pd.DataFrame(
                    {
                        "option": name,
                        "split": split,
                        "sample_id": ids,
                        "label": labels,
                        "pred": pred,
                        "bytes": np.asarray(nbytes, np.int64),
                    }
                )  # fmt: skip
            )
        print(f"camera: {split} scored in {time.perf_counter() - t0:.1f} s", file=log, flush=True)
    table = pd.concat(preds, ignore_index=True)
    frame_shape = max(shapes)  # the largest source frame: what a fixed camera must handle
    for name in table["option"].unique():
        sub = table[table["option"] == name]
        val_bytes = sub.loc[sub["split"] == "val", "bytes"].to_numpy()
        row = {
            "option": name,
            "quality": float(name[4:]) if name.startswith("jpeg") else float("nan"),
            "bytes_mean": float(val_bytes.mean()),
            "bytes_p50": float(np.percentile(val_bytes, 50)),
            "bytes_p95": float(np.percentile(val_bytes, 95)),
            "bytes_max": float(val_bytes.max()),
            "n": int(len(val_bytes)),
            "frame_shape": json.dumps(list(frame_shape)),
            "encode_flops": 0
            if name == "raw"
            else JPEG_FLOPS_PER_PIXEL * int(np.prod(frame_shape)),
            "resize_flops": resize_flops(frame_shape, inp.image_size),
        }
        for split, prefix in (("test", ""), ("val", "val_")):
            part = sub[sub["split"] == split]
            c = Correctness(
                (part["pred"].to_numpy() == part["label"].to_numpy()).astype(float)[None, None],
                part["label"].to_numpy(np.int64),
                k,
            )
            for metric in resample.METRICS:
                point, boot = resample.bootstrap(c, metric, n_boot, seed)
                row[prefix + metric] = float(point[0])
                row[prefix + metric + "_lo"], row[prefix + metric + "_hi"] = interval_from(
                    point[0], boot[:, 0]
                )
        rows.append(row)
        print(
            f"camera {name}: {row['bytes_mean']:.0f} B per frame (validation mean), top-1 "
            f"{row['top1']:.4f}, balanced {row['balanced_accuracy']:.4f}",
            file=log,
            flush=True,
        )
    out = pd.DataFrame(rows)
    write_table(table, predictions_path)
    write_table(out, out_path)
    return out
