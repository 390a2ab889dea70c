"""Whole files or nothing: every output is written to a temporary sibling and renamed.

A job killed mid-write (or failing half way) must not leave a truncated file that a rerun, or
Snakemake's mtime check, would take for a finished one. ``os.replace`` within one directory is
atomic on POSIX file systems.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on an
    exception it is removed and ``path`` is left as it was. The temp name keeps the suffix,
    for writers that pick the format from it (matplotlib, pandas)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj, **kwargs) -> None:
    write_text(path, json.dumps(obj, indent=2, **kwargs) + "\n")


def write_bytes_if_changed(path: str | Path, data: bytes) -> bool:
    """Leave an identical file untouched (keeps its mtime: no downstream rerun)."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return True


def write_table(df, path: str | Path) -> None:
    """A data frame as Parquet or CSV (by suffix), whole or not at all."""
    path = Path(path)
    with replacing(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def work_dir(output: str | Path, what: str) -> Path:
    """``.<stem>-<what>/`` beside ``output``: where a job keeps what lets a rerun after a kill
    resume (checkpoints, finished parts). No rule declares it, so the job removes it once its
    outputs are written; hidden, so a directory listing shows the outputs only."""
    output = Path(output)
    path = output.parent / f".{output.stem}-{what}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
