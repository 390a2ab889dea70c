"""What a download must be before it is accepted: the expected format (magic bytes, and it
opens as that archive) and the expected sha256; and the record of the hash it was verified
with, written beside it (``<file>.sha256``) only once it passed. See :mod:`isplit.io.fetch`.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from pathlib import Path

from isplit.errors import DownloadError
from isplit.io.files import write_text

_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# The formats a download may be expected to have, by the start of the file.
MAGIC = {"zip": (b"PK\x03\x04", b"PK\x05\x06"), "gzip": (b"\x1f\x8b",)}


class BadContent(DownloadError):
    """What arrived is not the file (deleted, never resumed)."""


# --------------------------------------------------------------------------- checksums


def checksum_path(path) -> Path:
    """``<file>.sha256`` beside a download: the hash it was verified with, in the format of
    ``sha256sum`` (``sha256sum -c`` checks it)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def record_checksum(path, digest: str) -> Path:
    """Write :func:`checksum_path` of ``path`` (atomically)."""
    out = checksum_path(path)
    write_text(out, f"{digest}  {Path(path).name}\n")
    return out


def expected_hash(sha256: str | None, key: str) -> str | None:
    """``sha256`` normalised (lower case), None when not given; ``key`` names it in errors."""
    if sha256:
        sha256 = sha256.strip().lower()
        if not _HEX64.match(sha256):
            raise DownloadError(f"{key}: sha256 {sha256!r} is not 64 hex digits")
        return sha256
    return None


def check_hash(what: str, actual: str, expected: str | None, origin: str | None) -> None:
    """Raise :class:`BadContent` saying where ``expected`` comes from (``origin``: a config
    key, a pinned constant) and what to do, unless ``actual`` is it (or nothing is expected)."""
    if expected is not None and actual != expected:
        origin = origin or "the sha256 passed by the caller"
        raise BadContent(
            f"checksum mismatch for {what}: expected sha256 {expected} (from {origin}), got "
            f"{actual}. The file was discarded and nothing was recorded, so the next run "
            f"downloads it anew. If the file changed upstream on purpose, check the new one "
            f"and update {origin}; otherwise the source served the wrong file: check the URL."
        )


# --------------------------------------------------------------------------- content


def archive_kind(name: str) -> str | None:
    """The format a download named ``name`` must have: "zip" (``.zip``, ``.whl``), "gzip"
    (``.gz``, ``.tgz``) or None (not checked)."""
    name = name.lower()
    if name.endswith((".zip", ".whl")):
        return "zip"
    if name.endswith((".gz", ".tgz")):
        return "gzip"
    return None


def opens_as(path: Path, kind: str) -> str | None:
    """Why ``path`` is not a readable ``kind`` archive, or None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith(MAGIC[kind]):
        looks = " (it looks like an HTML page)" if b"<html" in head.lower() else ""
        return f"it is not a {kind} file: it starts with {head[:16]!r}{looks}"
    try:
        if kind == "zip":
            with zipfile.ZipFile(path):
                pass  # the central directory, at the end, was read: not truncated
        else:
            with gzip.open(path, "rb") as stream:  # every member, to the end, output dropped
                while stream.read(_CHUNK):
                    pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        return f"it does not open as a {kind} archive: {e}"
    return None
