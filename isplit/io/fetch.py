"""Robust downloads: resumable HTTP(S) with checksums, and wheel fetching through pip.

Why not a library (requests, the Snakemake HTTP storage plugin)?  The datasets we need are
large single files (Tiny-ImageNet 248 MB, Chest X-Ray 1.2 GB) on servers that drop
connections, and the workflow has to survive that without re-fetching from zero.  The standard
library's ``urllib`` is enough for this, keeps the package light, and lets the behaviour be
exactly what the tests pin down:

* The body is streamed to ``<dest>.part``, tied to its source by ``<dest>.part.json`` (the URL
  and the server's ``ETag``/``Last-Modified``, written atomically before the first byte).  After
  a dropped connection, a short read (fewer bytes than Content-Length: ``http.client`` does
  *not* raise for that when reading in chunks, it just returns ``b""``), a socket timeout
  mid-body or a transient 5xx, the next attempt asks for ``Range: bytes=<have>-`` with
  ``If-Range: <ETag or Last-Modified>`` and appends if the server answers 206; a 200 means the
  server ignores ranges or the file changed, so the file restarts from zero.  A ``.part`` left by
  an earlier, killed or failed run is resumed the same way, but only from the same URL: one
  from another URL (the config changed) or without its record is discarded.
* Attempts back off exponentially (1, 2, 4 … s, at most 60 s). ``retries`` counts attempts
  that made no progress (an attempt that grew the ``.part`` resets it), and ``retry_budget_s``
  bounds the time without progress, waits included: a flaky but working server finishes a big
  file, an outage of a few minutes is waited out, a dead server fails in bounded time.  Then
  the ``.part`` is *kept* (the error says so) and the next run resumes it.
* What arrived is checked before it is accepted: an HTML answer (``Content-Type: text/html``:
  a captive portal, a login page, an expired signed link) is refused before its body is
  saved, and a file expected to be a zip (``.zip``, ``.whl``) or gzip (``.tar.gz``, ``.tgz``,
  ``.gz``) archive must start with that format's magic bytes and open as one (a zip's central
  directory is read; a gzip stream is decompressed to its end) before it is hashed.
* Integrity is checked against an explicit sha256 (pinned in the code for the offline data and
  weights, or configured per dataset). The hash a download was verified with is written beside
  it (:func:`record_checksum`, ``<file>.sha256``), a declared output of the download rule, so
  nothing outside the workflow's files records state: a failed or refused download leaves no
  record to clear, and a checksum error names where the expected hash comes from.
* Every failure raises :class:`DownloadError` naming the URL or file and the cause, and leaves
  nothing at ``dest``, so Snakemake never sees a half-written output.  Wrong content (HTML,
  wrong format, checksum mismatch) is deleted; a partial download is kept for the next run.

``pip_download`` fetches a wheel with the machine's own pip configuration (index, mirrors,
certificates, proxies), which is how PyPI-hosted data such as ``animal-mnist`` is reached; the
package is never installed or imported.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from isplit.errors import DownloadError
from isplit.io.files import sha256_file, write_json
from isplit.io.locks import directory_lock

# the checks and the wheels live beside this module; their names are this module's API too
from isplit.io.verify import (
    MAGIC,
    BadContent,
    archive_kind,
    check_hash,
    checksum_path,
    expected_hash,
    opens_as,
    record_checksum,
)
from isplit.io.wheels import extract_member, pip_download

__all__ = [
    "DownloadError",
    "archive_kind",
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
MAX_BACKOFF_S = 60.0


class _Retryable(Exception):
    """Internal: this attempt failed in a way another attempt may fix."""


# --------------------------------------------------------------------------- HTTP


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200" -> 100
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _range_total(value: str | None) -> int | None:
    # "bytes */200" (416 answer) or "bytes 100-199/200" -> 200
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _part_record(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_record(part: Path) -> dict | None:
    try:
        record = json.loads(_part_record(part).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _part_record(part).unlink(missing_ok=True)


def _if_range(record: dict) -> str | None:
    """The validator to resume with: a strong ETag, else Last-Modified (RFC 9110 §13.1.5:
    If-Range takes no weak ETag), else None (a plain Range: the hash check is the guard)."""
    etag = record.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return record.get("last_modified")


def _attempt(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One GET; raises _Retryable for conditions that a further attempt may fix."""
    have = part.stat().st_size if part.exists() else 0
    record = _read_record(part) or {}
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = _if_range(record)
        if validator:
            headers["If-Range"] = validator
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
            _discard(part)
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
        if resp.headers.get_content_type() == "text/html":
            # Never a data file: a captive portal, a login page, an expired signed link. Not
            # saved; a .part from this URL is kept, since the portal may go away.
            raise DownloadError(
                f"{url} answered with an HTML page (Content-Type text/html), not the file: a "
                "captive portal, a login page or an expired link? Open the URL in a browser, "
                "or configure a direct link (datasets.<name>.url); the page was not saved"
            )
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            etag = resp.headers.get("ETag")
            if start != have or (etag and record.get("etag") and etag != record["etag"]):
                _discard(part)
                raise _Retryable(
                    f"server answered range {have}- with Content-Range "
                    f"{resp.headers.get('Content-Range')!r} and ETag {etag!r}; restarting"
                )
            mode = "ab"
        else:
            # 200: the server ignored the Range header, the file changed (If-Range), or there
            # was nothing to resume: start over, tied to this URL and version of the file.
            have, mode = 0, "wb"
            write_json(
                _part_record(part),
                {
                    "url": url,
                    "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified"),
                },
            )
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
            _discard(part)
            raise _Retryable(f"received {got} bytes, more than the announced {total}; restarting")


def download(
    url: str,
    dest,
    *,
    sha256: str | None = None,
    sha256_origin: str | None = None,
    kind: str | None = None,
    timeout: float = 60.0,
    retries: int = 10,
    retry_budget_s: float = 300.0,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``dest`` (atomically) and return the file's sha256.

    ``sha256``: the expected hash; ``sha256_origin`` says where it comes from (a config key, a
    pinned constant), for the error message. ``kind``: "zip" or "gzip" when the file must be
    such an archive (:func:`archive_kind`). ``timeout`` is the socket timeout of one
    connect/read, not a limit on the whole transfer. Failed attempts are retried after
    ``backoff_s``, doubling each time (at most :data:`MAX_BACKOFF_S`), while there were at most
    ``retries`` of them in a row and ``retry_budget_s`` seconds since the last new byte. See
    the module docstring for resume, content and checksum rules.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind is not None and kind not in MAGIC:
        raise ValueError(f"kind must be one of {sorted(MAGIC)} or None, got {kind!r}")
    # One writer per destination: concurrent processes would append to one .part and could
    # verify (and record) the hash of a mixed-up file.
    with directory_lock(dest.parent):
        return _download(
            url,
            dest,
            expected_hash(sha256, url),
            sha256_origin,
            kind,
            timeout,
            retries,
            retry_budget_s,
            backoff_s,
            progress,
        )


def _kept_note(part: Path) -> str:
    size = part.stat().st_size if part.exists() else 0
    if not size:
        _discard(part)
        return "nothing was saved"
    return (
        f"the {size:,} bytes received are kept in {part} and the next run resumes from there "
        "(delete it, and its .json beside it, to start over)"
    )


def _download(
    url, dest: Path, expected, origin, kind, timeout, retries, budget_s, backoff_s, progress
) -> str:
    part = dest.with_name(dest.name + ".part")
    if expected is not None and dest.exists() and sha256_file(dest) == expected:
        return expected
    # An unverified file at dest is stale: drop it now so that a failure leaves nothing there.
    dest.unlink(missing_ok=True)
    if part.exists() and (_read_record(part) or {}).get("url") != url:
        _discard(part)  # another source's bytes (or unknown ones): never glue two files
    try:
        failures = 0
        best = part.stat().st_size if part.exists() else 0
        progress_at = time.monotonic()
        while True:
            try:
                _attempt(url, part, timeout, progress, dest.name)
                break
            except _Retryable as e:
                size = part.stat().st_size if part.exists() else 0
                if size > best:
                    best, failures, progress_at = size, 0, time.monotonic()
                else:
                    failures += 1
                delay = min(backoff_s * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)
                stalled = time.monotonic() - progress_at
                if failures > retries or stalled + delay > budget_s:
                    raise DownloadError(
                        f"download of {url} failed: {e}; gave up after {failures} attempt(s) "
                        f"in a row without progress over {stalled:.0f} s (retries {retries}, "
                        f"retry budget {budget_s:g} s)"
                    ) from e
                time.sleep(delay)
        if not part.exists():
            raise DownloadError(f"download of {url} produced no file")
    except BadContent:
        _discard(part)
        raise
    except DownloadError as e:
        raise DownloadError(f"{e}; {_kept_note(part)}") from e.__cause__
    except Exception as e:  # local trouble: disk full, permissions
        _discard(part)
        raise DownloadError(f"download of {url} to {dest} failed: {type(e).__name__}: {e}") from e
    try:
        problem = opens_as(part, kind) if kind else None
        if problem:
            raise BadContent(
                f"{url} did not send the expected {kind} archive: {problem}. The file was "
                "discarded and nothing was recorded. Is the URL a direct link to the file (not "
                "a download page), and still valid?"
            )
        actual = sha256_file(part)
        check_hash(url, actual, expected, origin)
        os.replace(part, dest)
        _part_record(part).unlink(missing_ok=True)
    except Exception:  # wrong content, or it cannot be read; Ctrl-C keeps a complete .part
        _discard(part)
        raise
    return actual
