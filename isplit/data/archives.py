"""Reading zip and tar archives defensively.

* Members are read one at a time and written under names *we* build from validated path
  components, never via ``extractall``, so a hostile ``../`` or absolute member name cannot
  write outside the dataset directory.
* Read errors (bad magic, truncated file, CRC or zlib errors) become :class:`DatasetError`
  naming the archive: a damaged archive must be re-downloaded, not half-used.  Errors raised
  while *writing* the output are left alone, so a full disk is not reported as a bad archive.
* macOS junk (``__MACOSX/``, ``._*`` resource forks, ``.DS_Store``) and other hidden entries
  are recognised by :func:`is_junk`; sources ignore them and only count them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isplit.data import DatasetError

_JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


def is_junk(member: str) -> bool:
    """True for OS metadata entries that are never data (``__MACOSX``, hidden files)."""
    return any(p in _JUNK_NAMES or p.startswith(".") for p in member.split("/") if p)


def safe_component(name: str) -> bool:
    """A single, harmless path component (no separators, not ``.``/``..``, not empty)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def split_member(name: str) -> list[str]:
    """Path components of a member name (``./`` prefixes and empty parts dropped)."""
    return [p for p in name.split("/") if p and p != "."]


@contextmanager
def open_zip(archive: Path) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(archive)
    except _READ_ERRORS as e:
        raise DatasetError(
            f"{archive} is not a readable zip archive ({e}); delete and re-download it"
        ) from e
    with zf:
        yield zf


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> bytes:
    try:
        return zf.read(info)
    except _READ_ERRORS as e:
        raise DatasetError(
            f"{archive} is damaged: reading member {info.filename!r} failed ({e}); "
            "delete and re-download it"
        ) from e


def _open_decompressed(archive: Path):
    # The gzip/bz2/lzma modules raise EOFError on a truncated stream; tarfile's own "r|gz"
    # decoder does not, and a cut that lands between tar headers then looks like a clean end.
    with open(archive, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(archive, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(archive, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def iter_tar_files(archive: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, content)`` for every regular file, streaming (gz, bz2, xz or none).

    Streaming mode reads the archive once, front to back: notMNIST_large has half a million
    members, and random access into a .tar.gz would decompress it again for each.  After the
    last member the rest of the stream is drained so that truncation and CRC errors surface.
    """

    def damaged(e: Exception) -> DatasetError:
        return DatasetError(
            f"{archive} is damaged or truncated ({type(e).__name__}: {e}); "
            "delete and re-download it"
        )

    try:
        raw = _open_decompressed(archive)
    except _READ_ERRORS as e:
        raise damaged(e) from e
    with raw:
        try:
            tf = tarfile.open(fileobj=raw, mode="r|")
        except _READ_ERRORS as e:
            raise damaged(e) from e
        with tf:
            it = iter(tf)
            while True:
                try:
                    member = next(it, None)
                    if member is None:
                        while raw.read(1 << 20):
                            pass
                        return
                    if not member.isfile():
                        continue
                    f = tf.extractfile(member)
                    data = f.read() if f is not None else b""
                except _READ_ERRORS as e:
                    raise damaged(e) from e
                yield member.name, data
