"""isplit.io.fetch against a loopback server: resume, checksums, failures, pip."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from isplit.errors import DownloadError
from isplit.io.fetch import (
    archive_kind,
    checksum_path,
    download,
    extract_member,
    pip_download,
    record_checksum,
)
from isplit.io.files import sha256_file
from tools import wheels
from tools.loopback_http import FileServer

DATA = os.urandom(300_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
FAST = {"backoff_s": 0.05, "progress": False}  # tests that are not about the back-off


def etag(data: bytes) -> str:
    """The ETag the loopback server gives ``data``."""
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


def left_partial(dest, data: bytes, url: str, tag: str | None = None):
    """A ``.part`` as an earlier run leaves it: the bytes, and the record tying them to ``url``."""
    dest.with_name(dest.name + ".part").write_bytes(data)
    record = {"url": url, "etag": tag, "last_modified": None}
    dest.with_name(dest.name + ".part.json").write_text(json.dumps(record))


@pytest.fixture
def server():
    with FileServer(hang_s=3.0) as s:
        yield s


def leftovers(dest):
    """Everything next to ``dest`` that shares its name (dest, .part, temp files)."""
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name))


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(DATA)
    assert sha256_file(p) == DATA_SHA


def test_plain_download_with_hash(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "sub" / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert leftovers(dest) == ["f.bin"]
    # A second call with a known hash and a good file does not touch the network.
    n = len(server.requests)
    assert download(url, dest, sha256=DATA_SHA.upper(), progress=False) == DATA_SHA
    assert len(server.requests) == n


def test_resume_after_dropped_connection(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="drop")
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, **FAST) == DATA_SHA
    assert dest.read_bytes() == DATA
    reqs = server.requests_for("/f.bin")
    assert len(reqs) == 2
    assert "range" not in reqs[0]["headers"]
    assert reqs[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"
    assert reqs[1]["headers"]["if-range"] == etag(DATA)  # only if the file is the same
    assert leftovers(dest) == ["f.bin"]


def test_restart_when_server_ignores_range(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="drop-norange")
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, **FAST) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert server.requests_for("/f.bin")[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"


def test_resume_after_timeout_mid_body(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="stall")
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, timeout=0.5, **FAST) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert server.requests_for("/f.bin")[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"


def test_part_file_from_killed_process_is_resumed(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    left_partial(dest, DATA[:12_345], url, etag(DATA))
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    (req,) = server.requests_for("/f.bin")
    assert req["headers"]["range"] == "bytes=12345-"
    assert req["headers"]["if-range"] == etag(DATA)
    assert leftovers(dest) == ["f.bin"]


def test_complete_part_file_answered_416(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    left_partial(dest, DATA, url, etag(DATA))
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert leftovers(dest) == ["f.bin"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url = server.add("/f.bin", b"not the bytes you are looking for")
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError) as ei:
        download(url, dest, sha256=DATA_SHA, progress=False)
    msg = str(ei.value)
    assert url in msg and DATA_SHA in msg and "mismatch" in msg
    assert "nothing was recorded" in msg and "check the URL" in msg
    assert leftovers(dest) == []


def test_corrupt_part_file_fails_checksum_and_is_removed(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    left_partial(dest, b"\0" * 1000, url)  # not a prefix of DATA, and no ETag to tell
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(url, dest, sha256=DATA_SHA, progress=False)
    assert leftovers(dest) == []


def test_404_is_clean(server, tmp_path):
    dest = tmp_path / "missing.bin"
    with pytest.raises(DownloadError) as ei:
        download(server.url("/missing.bin"), dest, progress=False)
    assert "HTTP 404" in str(ei.value) and server.url("/missing.bin") in str(ei.value)
    assert leftovers(dest) == []
    assert len(server.requests_for("/missing.bin")) == 1  # 4xx is final: no retry


def test_stale_dest_is_replaced_or_removed(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    assert download(url, dest, progress=False) == DATA_SHA and dest.read_bytes() == DATA
    dest.write_bytes(b"stale")
    with pytest.raises(DownloadError):
        download(server.url("/nope"), dest, progress=False)
    assert leftovers(dest) == []


def test_bad_url_is_reported_without_retries(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="nosuchscheme"):
        download("nosuchscheme://x/y", tmp_path / "y", progress=False)
    with pytest.raises(DownloadError, match="no host"):
        download("http:///y", tmp_path / "y", progress=False)
    assert time.monotonic() - t0 < 0.5


def test_500_is_retried_then_fails(server, tmp_path):
    url = server.add("/err.bin", DATA, mode="500")
    dest = tmp_path / "err.bin"
    with pytest.raises(DownloadError, match="HTTP 500"):
        download(url, dest, retries=2, **FAST)
    assert len(server.requests_for("/err.bin")) == 3
    assert leftovers(dest) == []


def test_timeout_is_clean(server, tmp_path):
    url = server.add("/slow.bin", DATA, mode="hang")
    dest = tmp_path / "slow.bin"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        download(url, dest, timeout=0.5, retries=1, **FAST)
    assert time.monotonic() - t0 < 2.9  # gave up on its own timeout, not the server's
    assert url in str(ei.value) and "timed out" in str(ei.value).lower()
    assert leftovers(dest) == []


def test_connection_refused_is_clean(tmp_path):
    with FileServer() as s:
        url = s.url("/gone.bin")
    dest = tmp_path / "gone.bin"
    with pytest.raises(DownloadError, match="gone.bin"):
        download(url, dest, timeout=0.5, retries=1, **FAST)
    assert leftovers(dest) == []


def test_checksum_record_is_sha256sum_format(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    digest = download(url, dest, progress=False)
    record = record_checksum(dest, digest)
    assert record == checksum_path(dest) == tmp_path / "f.bin.sha256"
    assert record.read_text() == f"{DATA_SHA}  f.bin\n"
    if shutil.which("sha256sum"):  # the coreutils tool accepts the record as it is
        check = subprocess.run(["sha256sum", "-c", record.name], cwd=tmp_path, check=False)
        assert check.returncode == 0


def test_invalid_sha_argument(server, tmp_path):
    url = server.add("/f.bin", DATA)
    with pytest.raises(DownloadError, match="64 hex"):
        download(url, tmp_path / "f.bin", sha256="abc", progress=False)


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    url = server.add("/f.bin", DATA)
    download(url, tmp_path / "f.bin", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "f.bin" in err


# --------------------------------------------------------------------------- pip


def make_wheel(directory, name="demo_pkg", version="0.1", payload=b"x" * 100):
    return wheels.make_wheel(
        directory, name, version, {f"{name}/__init__.py": b"", f"{name}/data/blob.bin": payload}
    )


def local_index(directory):
    return ("--no-index", "--find-links", str(directory))


def test_pip_download_local_wheel_and_pinned_hash(tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    wheel = make_wheel(links)
    want = sha256_file(wheel)
    dest = tmp_path / "dl" / "demo.whl"

    got = pip_download("demo-pkg==0.1", dest, sha256=want, extra_args=local_index(links))
    assert got == want and dest.read_bytes() == wheel.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo.whl"]

    # Same requirement, different wheel content: the pinned hash catches it.
    make_wheel(links, payload=b"y" * 100)
    dest2 = tmp_path / "dl" / "demo2.whl"
    origin = "the hash pinned for demo-pkg==0.1"
    with pytest.raises(DownloadError, match="checksum mismatch") as ei:
        pip_download(
            "demo-pkg==0.1", dest2, sha256=want, sha256_origin=origin, extra_args=local_index(links)
        )
    assert f"(from {origin})" in str(ei.value) and f"update {origin}" in str(ei.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo.whl"]


def test_pip_download_failure_names_requirement(tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links)
    dest = tmp_path / "demo.whl"
    with pytest.raises(DownloadError) as ei:
        pip_download("demo-pkg==9.9", dest, extra_args=local_index(links))
    assert "demo-pkg==9.9" in str(ei.value) and "No matching distribution" in str(ei.value)
    assert list(tmp_path.iterdir()) == [links]


def test_extract_member(tmp_path):
    wheel = make_wheel(tmp_path, payload=b"payload!")
    dest = tmp_path / "out" / "blob.bin"
    digest = extract_member(wheel, "data/blob.bin", dest)
    assert dest.read_bytes() == b"payload!"
    assert digest == hashlib.sha256(b"payload!").hexdigest()
    with pytest.raises(DownloadError, match="exactly one"):
        extract_member(wheel, "nope.bin", tmp_path / "x")
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"PK\3\4 garbage")
    with pytest.raises(DownloadError, match="bad.whl"):
        extract_member(bad, "data/blob.bin", tmp_path / "y")
    assert not (tmp_path / "y").exists() and not (tmp_path / "y.part").exists()


# --------------------------------------------------------------------------- hostile answers

PORTAL = b"<!DOCTYPE html><html><body>Please log in to the hotel Wi-Fi</body></html>"


def test_html_page_is_never_saved_nor_recorded(server, tmp_path):
    """A captive portal's page, served 200 text/html, is refused before its
    body is saved; the dataset download records no hash for it."""
    from isplit.data.sources import download as download_dataset

    url = server.add("/n.tar.gz", PORTAL, content_type="text/html; charset=utf-8")
    dest = tmp_path / "nm" / "notMNIST_small.tar.gz"
    with pytest.raises(DownloadError, match="HTML page") as ei:
        download_dataset({"source": "notmnist", "url": url}, dest, timeout=5)
    assert "captive portal" in str(ei.value)
    assert leftovers(dest) == []  # no archive, no .part, no .sha256


@pytest.mark.parametrize(
    ("name", "body", "problem"),
    [
        ("a.zip", PORTAL, "looks like an HTML page"),  # served as octet-stream
        ("a.tar.gz", b"PK\3\4" + DATA[:1000], "not a gzip file"),
        ("a.zip", b"PK\3\4" + DATA[:1000], "does not open as a zip"),  # no central directory
        ("a.tar.gz", gzip.compress(DATA)[:-100], "does not open as a gzip"),  # truncated
    ],
)
def test_wrong_or_broken_archive_is_refused(server, tmp_path, name, body, problem):
    url = server.add("/" + name, body)
    dest = tmp_path / name
    with pytest.raises(DownloadError, match=problem) as ei:
        download(url, dest, kind=archive_kind(name), progress=False)
    assert "nothing was recorded" in str(ei.value)
    assert leftovers(dest) == []


def test_checksum_error_names_the_config_key(server, tmp_path):
    from isplit.data.sources import download as download_dataset

    data = gzip.compress(DATA)
    cfg = {"source": "notmnist", "url": server.add("/n.tar.gz", data), "sha256": "0" * 64}
    dest = tmp_path / "my-nm" / "notMNIST_small.tar.gz"
    with pytest.raises(DownloadError, match="checksum mismatch") as ei:
        download_dataset(cfg, dest, timeout=5)
    assert "datasets.my-nm.sha256" in str(ei.value)
    assert leftovers(dest) == []


def test_partial_file_of_another_url_is_not_resumed(server, tmp_path):
    """A .part left by URL A (the config changed since) is discarded: the
    download of URL B starts from zero instead of gluing half of each file."""
    other = os.urandom(len(DATA))
    url_a, url_b = server.add("/a.bin", other), server.add("/b.bin", DATA)
    dest = tmp_path / "f.bin"
    left_partial(dest, other[:100_000], url_a, etag(other))
    assert download(url_b, dest, progress=False) == DATA_SHA  # no hash to catch a mix
    assert dest.read_bytes() == DATA
    (req,) = server.requests_for("/b.bin")
    assert "range" not in req["headers"]


def test_partial_file_of_an_older_version_restarts(server, tmp_path):
    """Same URL, but the file changed upstream: If-Range carries the old ETag, the server sends
    the whole new file, and that is what is kept."""
    old = os.urandom(len(DATA))
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    left_partial(dest, old[:100_000], url, etag(old))
    assert download(url, dest, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    (req,) = server.requests_for("/f.bin")
    assert req["headers"]["range"] == "bytes=100000-" and req["headers"]["if-range"] == etag(old)


def test_outage_is_waited_out_with_exponential_backoff(server, tmp_path):
    """Half the file, then 3.5 s of 503s: with the default retries the
    download waits the outage out (1, 2, 4 s) and resumes the partial file."""
    url = server.add("/f.bin", DATA, mode="outage", outage_s=3.5)
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    reqs = server.requests_for("/f.bin")
    assert len(reqs) >= 3  # the drop, at least one 503, the resume
    assert all(r["headers"]["range"] == f"bytes={len(DATA) // 2}-" for r in reqs[1:])


def test_final_failure_keeps_the_partial_file_for_the_next_run(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="outage", outage_s=600)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError) as ei:
        download(url, dest, sha256=DATA_SHA, retries=2, **FAST)
    msg = str(ei.value)
    assert "HTTP 503" in msg and f"{len(DATA) // 2:,} bytes received are kept" in msg
    assert "next run resumes" in msg
    assert leftovers(dest) == ["f.bin.part", "f.bin.part.json"]
    server.add("/f.bin", DATA)  # the server is back
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert server.requests_for("/f.bin")[-1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"
    assert leftovers(dest) == ["f.bin"]


def test_retry_budget_bounds_the_time_without_progress(server, tmp_path):
    url = server.add("/err.bin", DATA, mode="500")
    dest = tmp_path / "err.bin"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="retry budget 1 s"):
        download(url, dest, retries=1000, retry_budget_s=1.0, backoff_s=0.1, progress=False)
    assert time.monotonic() - t0 < 10  # a guard against hanging, not a measurement
    assert len(server.requests_for("/err.bin")) >= 2  # retried, then stopped by the budget
