"""The tables stages hand each other, read and written without torch.

Parquet files written by isplit carry the settings of the run that wrote them as JSON under
the key-value metadata key ``isplit`` (:func:`with_metadata`, :func:`read_metadata`): the CUI
stage reads the model's probe points, their activation sizes and the class names from there,
so it never loads the network.

``candidates_all.tsv`` (:func:`read_candidates`) has one row per probe point with typed flag
columns (``class_best`` a JSON list of class names); consumers test ``isplit_best``, ``cde`` or
membership in ``class_best`` instead of searching the human-readable ``reasons`` text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from isplit.io.files import write_bytes_if_changed

METADATA_KEY = b"isplit"

#: boolean flag columns of the candidate tables
FLAG_COLUMNS = ("allowed", "isplit_max", "isplit_best", "cde", "selected")


def with_metadata(schema, meta: dict):
    """``schema`` (a pyarrow schema) carrying ``meta`` as the ``isplit`` metadata."""
    return schema.with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def read_metadata(path: str | Path) -> dict:
    """The ``isplit`` JSON metadata of a Parquet file written here ({} if absent)."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    return json.loads(md[METADATA_KEY]) if METADATA_KEY in md else {}


def write_tsv(frame: pd.DataFrame, path: str | Path) -> bool:
    """Atomic, deterministic TSV; an identical existing file is left untouched (mtime kept, so
    a checkpoint rewritten with the same content reruns nothing downstream)."""
    buf = io.StringIO()
    frame.to_csv(buf, sep="\t", index=False, lineterminator="\n")
    return write_bytes_if_changed(path, buf.getvalue().encode())


def read_candidates(path: str | Path) -> pd.DataFrame:
    """A candidate table with typed columns: flags as bool, ``class_best`` as a list of class
    names (empty when the point is no class's best)."""
    df = pd.read_csv(path, sep="\t", keep_default_na=False)
    for col in FLAG_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(_as_bool)
    if "class_best" in df.columns:
        df["class_best"] = [json.loads(v) if v else [] for v in df["class_best"]]
    return df


def _as_bool(v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip()
    if s in ("True", "true", "1"):
        return True
    if s in ("False", "false", "0", ""):
        return False
    raise ValueError(f"not a boolean flag: {v!r}")
