"""Whole files or nothing: every output is written to a temporary sibling and renamed.

A job killed mid-write (or failing half way) must not leave a truncated file that a rerun, or
Snakemake's mtime check, would take for a finished one. ``os.replace`` within one directory is
atomic on POSIX file systems.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on an
    exception it is removed and ``path`` is left as it was. The temp name keeps the suffix,
    for writers that pick the format from it (matplotlib)."""
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
