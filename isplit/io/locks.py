"""Locks that leave nothing behind: an flock on a directory itself (no ``.lock`` file to
clean up), released by the kernel when the process holding it dies, however it dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def directory_lock(directory: Path):
    """An exclusive flock on ``directory`` for the duration of the block (waits for it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
