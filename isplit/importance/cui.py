"""The CUI curve: mean per-image importance per probe point, over all images and per class.

I-SPLIT's "Cumulative Unit Importance" of layer l is the mean over images of the per-image
``cui[n, l]`` (:mod:`isplit.importance.gradcam`): the public code averages the maps pixel-wise over
images and then over pixels, which is the same number because everything is linear and the
maps are non-negative (docs/methods.md). Nothing accumulates across layers. Per-class curves
group the images by their *true* label (docs/methods.md); weighted by the class counts they
average back to the global curve.

``curve.parquet`` (long format; rows: group ``all`` first, then the classes in class order;
within a group by ``layer_index``):

============  =======  ==================================================================
layer_index   int64    position along the probe list (x of the curve); -1 = input point
layer         string   probe module name ("input" for the input point)
label         string   tick label of the probe point (from ``samples.parquet``'s
                       ``layer_label``; the module name when that column is absent)
group         string   "all", or the class name
class         int64    -1 for "all", else the class (label int)
n             int64    number of images in the group
mean          float64  mean over the group's images of ``cui[n, l]`` (the CUI)
std           float64  standard deviation over the group's images (ddof=1; NaN if n = 1)
log10_mean    float64  log10(mean) (−inf where the mean is 0)
============  =======  ==================================================================

Classes without images are left out. The file's Parquet key-value metadata ``isplit`` holds
the importance run's settings (from ``samples.parquet``) plus ``classes`` and ``input_point``.

The input point: the public code plots ``[CUI_1, CUI_1, CUI_2, ...]`` — a point for the input,
set equal to the first layer (docs/methods.md). With ``input_point=True`` (the default for
samples of the ``public-code`` variant) each group gets that row, ``layer_index = -1``, so the
curve can be drawn as published; :mod:`isplit.importance.candidates` never treats it as a
split point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from isplit.io.files import replacing
from isplit.io.tables import read_metadata, with_metadata

COLUMNS = ("layer_index", "layer", "label", "group", "class", "n", "mean", "std", "log10_mean")

SCHEMA = pa.schema(
    [
        pa.field("layer_index", pa.int64(), nullable=False),
        pa.field("layer", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("group", pa.string(), nullable=False),
        pa.field("class", pa.int64(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("std", pa.float64()),
        pa.field("log10_mean", pa.float64(), nullable=False),
    ]
)


def _log10(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(x)


def curve(
    samples: pd.DataFrame, classes: Sequence[str], *, input_point: bool = False
) -> pd.DataFrame:
    """The CUI curve of ``samples`` (``importance.extract`` output, or ``samples.parquet``).

    ``samples`` needs ``layer_index``, ``layer``, ``label`` (true class) and ``cui``;
    ``layer_label`` is used for tick labels when present. ``classes[k]`` names class ``k``.
    """
    missing = {"layer_index", "layer", "label", "cui"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples lack columns {sorted(missing)}")
    if samples.empty:
        raise ValueError("no samples: the importance table is empty")
    label_col = "layer_label" if "layer_label" in samples.columns else "layer"
    layers = (
        pd.DataFrame(
            {
                "layer_index": samples["layer_index"].to_numpy(),
                "layer": samples["layer"].astype(str).to_numpy(),
                "label": samples[label_col].astype(str).to_numpy(),
            }
        )
        .drop_duplicates("layer_index")
        .sort_values("layer_index", kind="stable")
        .reset_index(drop=True)
    )
    frames = []
    stats = [("all", -1, samples)]
    labels = samples["label"].to_numpy()
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels outside 0..{len(classes) - 1}: wrong class list?")
    for k, sub in samples.groupby("label", sort=True):
        stats.append((str(classes[int(k)]), int(k), sub))
    for group, k, sub in stats:
        agg = sub.groupby("layer_index", sort=True)["cui"].agg(["count", "mean", "std"])
        agg = agg.reindex(layers["layer_index"])
        if agg["count"].isna().any():
            raise ValueError(f"group {group!r} lacks some layers: incomplete samples table")
        part = layers.copy()
        part["group"] = group
        part["class"] = k
        part["n"] = agg["count"].to_numpy().astype(np.int64)
        part["mean"] = agg["mean"].to_numpy(np.float64)
        part["std"] = agg["std"].to_numpy(np.float64)
        part["log10_mean"] = _log10(part["mean"].to_numpy())
        if input_point:
            first = part.iloc[[0]].copy()
            first["layer_index"], first["layer"], first["label"] = -1, "input", "input"
            part = pd.concat([first, part], ignore_index=True)
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    out["layer_index"] = out["layer_index"].astype(np.int64)
    out["class"] = out["class"].astype(np.int64)
    return out[list(COLUMNS)]


def _classes_for(samples: pd.DataFrame, meta: dict) -> list[str]:
    if meta.get("classes"):
        return [str(c) for c in meta["classes"]]
    k = int(samples["label"].max()) + 1
    names = [str(i) for i in range(k)]
    if "class_name" in samples.columns:
        for lab, name in samples[["label", "class_name"]].drop_duplicates().itertuples(False):
            names[int(lab)] = str(name)
    return names


def run(
    *,
    samples_path: str | Path,
    out_path: str | Path,
    input_point: bool | None = None,
) -> pd.DataFrame:
    """``samples.parquet`` → ``curve.parquet`` (atomically). Class names come from the samples
    file's metadata (else its ``class_name`` column). ``input_point`` None = prepend it iff the
    samples come from the ``public-code`` variant."""
    samples_path, out_path = Path(samples_path), Path(out_path)
    meta = read_metadata(samples_path)
    cols = ["layer_index", "layer", "label", "cui"]
    have = set(pq.read_schema(samples_path).names)
    cols += [c for c in ("layer_label", "class_name") if c in have]
    samples = pd.read_parquet(samples_path, columns=cols)
    names = _classes_for(samples, meta)
    if input_point is None:
        input_point = meta.get("variant") == "public-code"
    table = curve(samples, names, input_point=bool(input_point))
    meta = {**meta, "classes": names, "input_point": bool(input_point)}
    with replacing(out_path) as tmp:
        table_pa = pa.Table.from_pandas(
            table, schema=with_metadata(SCHEMA, meta), preserve_index=False
        )
        pq.write_table(table_pa, tmp)
    return table
