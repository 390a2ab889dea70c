"""Reading zip and tar archives defensively.

* Members are read one at a time and written under names *we* build from validated path
  components, never via ``extractall``, so a hostile ``../`` or absolute member name cannot
  write outside the dataset directory.
* Sizes are bounded (:class:`ArchiveLimits`): a member larger than ``max_member_bytes``, more
  than ``max_total_bytes`` unpacked in all, or an unpacked/packed ratio above ``max_ratio``
  (once more than :data:`RATIO_FLOOR_BYTES` are unpacked: small files compress well and harm
  nothing) stops the preparation with :class:`ArchiveLimitError` before the bytes are read. A
  zip's central directory states every member's size, and :mod:`zipfile` never returns more
  than it states, so zips are checked once, when opened; a tar stream is checked at every
  member header and while it is decompressed. Images are streamed to disk
  (:func:`open_zip_member`, :func:`iter_tar_files`), never held whole in memory; only small
  metadata is read into memory (:func:`read_zip_member`, at most ``max_member_bytes``).
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
from dataclasses import dataclass
from pathlib import Path

from isplit.config import settings
from isplit.data import DatasetError

_JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError)
_CHUNK = 1 << 20
MB = 1_000_000
# Below this many unpacked bytes the compression ratio is not judged: a few megabytes of
# well-compressing text or headers are harmless whatever their ratio.
RATIO_FLOOR_BYTES = 16 * MB


class ArchiveLimitError(DatasetError):
    """An archive unpacks to more than :class:`ArchiveLimits` allow (a decompression bomb, or
    limits set too low for a genuine archive: the message names the setting)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may unpack to: :func:`archive_limits` makes them from the config."""

    max_member_bytes: int
    max_total_bytes: int
    max_ratio: float


def archive_limits(downloads=None) -> ArchiveLimits:
    """The limits set in the ``downloads`` config section (a mapping or its settings; None:
    the schema's defaults, far above the real datasets: their largest member is a few MB, the
    largest archive, Chest X-Ray, unpacks to about 1.2 GB, and images compress by less than 5)."""
    s = settings("downloads", downloads)
    return ArchiveLimits(
        max_member_bytes=int(s.max_member_mb * MB),
        max_total_bytes=int(s.max_unpacked_mb * MB),
        max_ratio=float(s.max_ratio),
    )


def _too_large(archive: Path, what: str, size: int, limit: float, setting: str) -> None:
    raise ArchiveLimitError(
        f"{archive}: {what} unpacks to {size / MB:,.1f} MB, over the limit of "
        f"{limit / MB:,.1f} MB: a decompression bomb, or a damaged archive. If the archive is "
        f"genuine, raise downloads.{setting} in the config"
    )


def _check_ratio(archive: Path, what: str, unpacked: int, packed: int, limits) -> None:
    if unpacked > RATIO_FLOOR_BYTES and unpacked > limits.max_ratio * max(packed, 1):
        raise ArchiveLimitError(
            f"{archive}: {what} unpacks to {unpacked / MB:,.1f} MB from {packed / MB:,.3f} MB, "
            f"a ratio over the limit of {limits.max_ratio:g}: a decompression bomb. If the "
            "archive is genuine, raise downloads.max_ratio in the config"
        )


def is_junk(member: str) -> bool:
    """True for OS metadata entries that are never data (``__MACOSX``, hidden files)."""
    return any(p in _JUNK_NAMES or p.startswith(".") for p in member.split("/") if p)


def safe_component(name: str) -> bool:
    """A single, harmless path component (no separators, not ``.``/``..``, not empty)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def split_member(name: str) -> list[str]:
    """Path components of a member name (``./`` prefixes and empty parts dropped)."""
    return [p for p in name.split("/") if p and p != "."]


def _damaged(archive: Path, e: Exception, member: str | None = None) -> DatasetError:
    where = f"reading member {member!r} failed" if member else "it cannot be read"
    return DatasetError(
        f"{archive} is damaged or truncated: {where} ({type(e).__name__}: {e}); "
        "delete and re-download it"
    )


class MemberReader:
    """A member's bytes as a binary stream (``read``), whose read errors are
    :class:`DatasetError` naming the archive and member: copy it with ``shutil.copyfileobj``."""

    def __init__(self, raw, archive: Path, name: str):
        self._raw, self._archive, self.name = raw, archive, name

    def read(self, n: int = -1) -> bytes:
        try:
            return self._raw.read(n)
        except ArchiveLimitError:
            raise
        except _READ_ERRORS as e:
            raise _damaged(self._archive, e, self.name) from e

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- zip


def check_zip(zf: zipfile.ZipFile, archive: Path, limits: ArchiveLimits) -> None:
    """Every member's stated size, their sum and the ratios against ``limits``."""
    total = 0
    for info in zf.infolist():
        if info.file_size > limits.max_member_bytes:
            _too_large(
                archive,
                f"member {info.filename!r}",
                info.file_size,
                limits.max_member_bytes,
                "max_member_mb",
            )
        _check_ratio(
            archive, f"member {info.filename!r}", info.file_size, info.compress_size, limits
        )
        total += info.file_size
    if total > limits.max_total_bytes:
        _too_large(archive, "the archive", total, limits.max_total_bytes, "max_unpacked_mb")
    _check_ratio(archive, "the archive", total, archive.stat().st_size, limits)


@contextmanager
def open_zip(archive: Path, limits: ArchiveLimits | None = None) -> Iterator[zipfile.ZipFile]:
    """The zip file, its sizes checked against ``limits`` (None: :func:`archive_limits`)."""
    archive = Path(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except _READ_ERRORS as e:
        raise DatasetError(
            f"{archive} is not a readable zip archive ({e}); delete and re-download it"
        ) from e
    with zf:
        check_zip(zf, archive, limits or archive_limits())
        yield zf


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> bytes:
    """A member's bytes, in memory: for small metadata (text, pickles); images go through
    :func:`open_zip_member`. Bounded by the limit :func:`open_zip` checked."""
    try:
        return zf.read(info)
    except _READ_ERRORS as e:
        raise _damaged(archive, e, info.filename) from e


def open_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> MemberReader:
    """A member as a stream (:class:`MemberReader`), to be copied to disk in chunks."""
    try:
        return MemberReader(zf.open(info), archive, info.filename)
    except _READ_ERRORS as e:
        raise _damaged(archive, e, info.filename) from e


# --------------------------------------------------------------------------- tar


class _Metered:
    """The decompressed stream of a tar archive, counting what comes out of it against the
    total and ratio limits as it is read (tarfile reads through it, skipped members too)."""

    def __init__(self, packed, unpacked, archive: Path, limits: ArchiveLimits):
        self._packed, self._unpacked = packed, unpacked
        self._archive, self._limits = archive, limits
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._unpacked.read(n)
        self.count += len(data)
        if self.count > self._limits.max_total_bytes:
            _too_large(
                self._archive,
                "the archive",
                self.count,
                self._limits.max_total_bytes,
                "max_unpacked_mb",
            )
        _check_ratio(self._archive, "the archive", self.count, self._packed.tell(), self._limits)
        return data


def _open_decompressed(packed):
    # The gzip/bz2/lzma modules raise EOFError on a truncated stream; tarfile's own "r|gz"
    # decoder does not, and a cut that lands between tar headers then looks like a clean end.
    magic = packed.read(6)
    packed.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=packed, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(packed, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(packed, "rb")
    return packed


def iter_tar_files(
    archive: Path, limits: ArchiveLimits | None = None
) -> Iterator[tuple[str, MemberReader]]:
    """Yield ``(member name, stream of its content)`` for every regular file (gz, bz2, xz or
    none). The stream is valid until the next member is asked for; a member not read is
    skipped. Sizes are checked against ``limits`` (None: :func:`archive_limits`).

    Streaming mode reads the archive once, front to back: notMNIST_large has half a million
    members, and random access into a .tar.gz would decompress it again for each.  After the
    last member the rest of the stream is drained so that truncation and CRC errors surface.
    """
    archive, limits = Path(archive), limits or archive_limits()
    try:
        packed = open(archive, "rb")
    except OSError as e:
        raise _damaged(archive, e) from e
    with packed:
        try:
            raw = _Metered(packed, _open_decompressed(packed), archive, limits)
            tf = tarfile.open(fileobj=raw, mode="r|")
        except ArchiveLimitError:
            raise
        except _READ_ERRORS as e:
            raise _damaged(archive, e) from e
        with tf:
            it = iter(tf)
            while True:
                try:
                    member = next(it, None)
                    if member is None:
                        while raw.read(_CHUNK):
                            pass
                        return
                    if not member.isfile():
                        continue
                    if member.size > limits.max_member_bytes:
                        _too_large(
                            archive,
                            f"member {member.name!r}",
                            member.size,
                            limits.max_member_bytes,
                            "max_member_mb",
                        )
                    f = tf.extractfile(member)
                except ArchiveLimitError:
                    raise
                except _READ_ERRORS as e:
                    raise _damaged(archive, e) from e
                yield member.name, MemberReader(f, archive, member.name)
