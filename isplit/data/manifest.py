"""The manifest format of a prepared dataset, written down once.

``manifest.parquet`` columns (exact names, order and Arrow types):

=============  ======  ===============================================================
sample_id      string  unique and stable across re-preparations of the same archive
path           string  file relative to the dataset dir; null for array datasets
index          int64   row in ``images.npy``; -1 for file datasets
label          int64   0..K-1, position in ``classes.json``
class_name     string  ``classes.json[label]``
split          string  "train" | "val" | "test"
=============  ======  ===============================================================

Rows are sorted by split (train, val, test) then ``sample_id`` so that the same inputs always
give the same file, whatever order the archive listed its members in.  The schema is written
explicitly (not inferred from pandas) so that an all-null ``path`` column is still a string
column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("sample_id", "path", "index", "label", "class_name", "split")
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    sample_id: str
    class_name: str
    path: str | None = None
    index: int = -1
    split: str | None = None  # None until a split is assigned
    label: int = -1  # filled in from the class list when the dataset is finished
    # sha256 of the decoded pixels (:func:`isplit.data.splits.pixel_digest`): equal digests are
    # exact duplicates, which the splitter keeps in one split.  Not written to the manifest.
    digest: str | None = None
    # the split the per-sample splitter would have chosen had duplicates not been grouped; only
    # for the report's "before" counts (None: the split was not drawn, e.g. an official one)
    ungrouped_split: str | None = None


def arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("index", pa.int64(), nullable=False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field("class_name", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
        ]
    )


def sort_key(sample: Sample) -> tuple[int, str]:
    return SPLITS.index(sample.split), sample.sample_id


def write_manifest(samples: list[Sample], path) -> None:
    """Write ``samples`` (labels and splits assigned) as ``manifest.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(samples, key=sort_key)
    table = pa.table(
        {
            "sample_id": [s.sample_id for s in rows],
            "path": [s.path for s in rows],
            "index": [s.index for s in rows],
            "label": [s.label for s in rows],
            "class_name": [s.class_name for s in rows],
            "split": [s.split for s in rows],
        },
        schema=arrow_schema(),
    )
    pq.write_table(table, Path(path))
