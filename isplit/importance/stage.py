"""The importance stage: per-image layer Grad-CAM of one split of a prepared dataset, streamed
to Parquet.

Files written by :func:`run` (``samples_out``, ``channels_out``)
--------------------------------------------
``samples.parquet`` — one row per (image, probe point), sorted by ``sample`` then
``layer_index``:

==============  =======  ==============================================================
sample          int64    position of the image in loader order (0..N-1)
sample_id       string   the manifest's ``sample_id`` of that image
label           int64    true class, 0..K-1 (position in ``classes.json``)
class_name      string   ``classes[label]``
pred            int64    the model's top-1 class (same forward pass as the importance)
layer           string   probe module name (key of ``model.named_modules()``)
layer_index     int64    position along the probe list (x of the CUI curve), 0..L-1
layer_label     string   the probe point's tick label (e.g. ``block4_conv2``)
cui             float64  per-image importance ``cui[n, l]`` defined above (≥ 0)
==============  =======  ==============================================================

``channels.parquet`` — per-channel Grad-CAM statistics, one row per (layer, class, channel),
sorted by ``layer_index``, ``class``, ``channel``; classes without images are left out:

==============  =======  ==============================================================
layer           string   probe module name
layer_index     int64    position along the probe list
channel         int64    channel index c, 0..C_l-1
class           int64    true class (label int)
class_name      string   ``classes[class]``
n               int64    number of images of that class
mean_alpha      float64  mean over the images of α_c
mean_alpha_act  float64  mean over the images of mean_{h,w}(α_c · A_c) = α_c · mean_{h,w} A_c
==============  =======  ==============================================================

Both files carry the run's settings as JSON under the Parquet key-value metadata key
``isplit`` (model, classes, input, variant, target, channel_reduce, split, probe points with
their labels): :mod:`isplit.importance.cui` reads variant and class names there. Both are written
to temporary files with :class:`pyarrow.parquet.ParquetWriter` while batches stream (samples in
row groups of ``row_group_rows`` rows, so memory does not grow with the number of images) and
renamed into place only when complete.

The metadata also lists each probe point's activation shape and float32 bytes at the model's
input size, and the input's bytes: the CUI and candidate stages read the layer-size (CDE) curve
from there instead of loading the network.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from isplit.config import settings
from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.importance.gradcam import (
    CHANNELS_SCHEMA,
    SAMPLES_SCHEMA,
    ChannelStats,
    iter_batches,
    long_rows,
    resolve_layers,
)
from isplit.io.files import replacing
from isplit.io.tables import with_metadata
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    samples_out: str | Path,
    channels_out: str | Path,
    cfg: dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Load a fine-tuned ``model.pt``, run :func:`iter_batches` over one split of a prepared
    dataset and write ``samples_out`` and ``channels_out`` (``samples.parquet`` and
    ``channels.parquet`` below).

    Returns a summary: images, layers, seconds, images/s and the settings used.
    """
    c = settings("importance", cfg)
    set_determinism(seed, threads)
    dev = pick_device(device)
    target = c.resolved_target
    model, meta = models.load_model(model_path)
    classes = list(meta["classes"])
    input_cfg = settings("input", meta["input"])
    points = models.probe_points(model, c.variant, input_cfg.image_size)
    probes = resolve_layers(model, points)
    dataset = ManifestDataset(
        dataset_dir,
        c.split,
        transform_from_config(input_cfg),
        subset=c.max_images,
        seed=seed,
    )
    loader = DataLoader(
        dataset,
        batch_size=c.batch_size,
        shuffle=False,
        num_workers=c.num_workers,
    )
    sample_ids = dataset.frame["sample_id"].astype(str).to_numpy()
    run_meta = {
        "model": meta["model"],
        "classes": classes,
        "input": meta["input"],
        "variant": c.variant,
        "target": target,
        "channel_reduce": c.channel_reduce,
        "split": c.split,
        "max_images": c.max_images,
        "seed": seed,
        "probe_points": [
            {
                "index": p.index,
                "name": p.name,
                "label": p.label,
                "shape": list(p.shape),
                "channel_axis": p.channel_axis,
                "bytes": p.bytes,
            }
            for p in points
        ],
        "input_bytes": 4 * int(np.prod(input_cfg.shape())),
    }
    print(
        f"importance: {meta['model']} on {Path(dataset_dir).name}/{c.split}: "
        f"{len(dataset)} images, {len(points)} probe points, variant {c.variant}, "
        f"target {target}, channel_reduce {c.channel_reduce}, device {dev}, "
        f"threads {torch.get_num_threads()}",
        file=log,
        flush=True,
    )
    names = np.array([la.name for la in probes], dtype=object)
    labels_ = np.array([la.label for la in probes], dtype=object)
    cls_names = np.array(classes, dtype=object)
    stats = ChannelStats(len(classes))
    samples_path, channels_path = Path(samples_out), Path(channels_out)
    for path in (samples_path, channels_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    schema_s = with_metadata(SAMPLES_SCHEMA, run_meta)
    group_rows = max(1, c.row_group_rows)
    t0 = time.perf_counter()
    n_images = 0
    # both files or neither: the channels file is complete only after the last batch
    with replacing(samples_path) as tmp_s, replacing(channels_path) as tmp_c:
        with (
            pq.ParquetWriter(tmp_s, schema_s) as writer,
            tqdm(
                total=len(dataset), unit="img", file=log, mininterval=5.0, desc="importance"
            ) as bar,
        ):
            buffer: list[dict[str, np.ndarray]] = []
            buffered = 0
            for res in iter_batches(
                model,
                points,
                loader,
                target=target,
                channel_reduce=c.channel_reduce,
                variant=c.variant,
                device=dev,
                channel_stats=stats,
            ):
                rows = long_rows(res, probes)
                buffer.append(rows)
                buffered += len(rows["cui"])
                n_images += len(res.sample)
                bar.update(len(res.sample))
                if buffered >= group_rows:
                    writer.write_table(
                        _samples_table(buffer, names, labels_, cls_names, sample_ids, schema_s)
                    )
                    buffer, buffered = [], 0
            if buffer:
                writer.write_table(
                    _samples_table(buffer, names, labels_, cls_names, sample_ids, schema_s)
                )
        seconds = time.perf_counter() - t0
        schema_c = with_metadata(CHANNELS_SCHEMA, run_meta)
        with pq.ParquetWriter(tmp_c, schema_c) as writer:
            for table in stats.tables(probes, classes, schema_c):
                writer.write_table(table)
    summary = {
        "n_images": n_images,
        "n_layers": len(points),
        "seconds": seconds,
        "images_per_s": n_images / seconds if seconds > 0 else float("nan"),
        "variant": c.variant,
        "target": target,
        "channel_reduce": c.channel_reduce,
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }
    print(
        f"importance: {n_images} images in {seconds:.1f} s ({summary['images_per_s']:.1f} img/s)",
        file=log,
        flush=True,
    )
    return summary


def _samples_table(parts, names, labels_, cls_names, sample_ids, schema) -> pa.Table:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    li, pos = cols["layer_index"], cols["pos"]
    return pa.table(
        {
            "sample": pa.array(cols["sample"]),
            "sample_id": pa.array(sample_ids[cols["sample"]].tolist(), pa.string()),
            "label": pa.array(cols["label"]),
            "class_name": pa.array(cls_names[cols["label"]].tolist(), pa.string()),
            "pred": pa.array(cols["pred"]),
            "layer": pa.array(names[pos].tolist(), pa.string()),
            "layer_index": pa.array(li),
            "layer_label": pa.array(labels_[pos].tolist(), pa.string()),
            "cui": pa.array(cols["cui"]),
        },
        schema=schema,
    )
