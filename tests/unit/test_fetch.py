"""isplit.io.fetch against a loopback server: resume, checksums, failures, pip."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from isplit.errors import DownloadError
from isplit.io.fetch import (
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
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    reqs = server.requests_for("/f.bin")
    assert len(reqs) == 2
    assert "range" not in reqs[0]["headers"]
    assert reqs[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"
    assert leftovers(dest) == ["f.bin"]


def test_restart_when_server_ignores_range(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="drop-norange")
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert server.requests_for("/f.bin")[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"


def test_resume_after_timeout_mid_body(server, tmp_path):
    url = server.add("/f.bin", DATA, mode="stall")
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256=DATA_SHA, timeout=0.5, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert server.requests_for("/f.bin")[1]["headers"]["range"] == f"bytes={len(DATA) // 2}-"


def test_part_file_from_killed_process_is_resumed(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(DATA[:12_345])
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA
    (req,) = server.requests_for("/f.bin")
    assert req["headers"]["range"] == "bytes=12345-"
    assert leftovers(dest) == ["f.bin"]


def test_complete_part_file_answered_416(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(DATA)
    assert download(url, dest, sha256=DATA_SHA, progress=False) == DATA_SHA
    assert dest.read_bytes() == DATA


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url = server.add("/f.bin", b"not the bytes you are looking for")
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError) as ei:
        download(url, dest, sha256=DATA_SHA, progress=False)
    msg = str(ei.value)
    assert url in msg and DATA_SHA in msg and "mismatch" in msg
    assert leftovers(dest) == []


def test_corrupt_part_file_fails_checksum_and_is_removed(server, tmp_path):
    url = server.add("/f.bin", DATA)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"\0" * 1000)  # not a prefix of DATA
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
        download(url, dest, retries=2, progress=False)
    assert len(server.requests_for("/err.bin")) == 3
    assert leftovers(dest) == []


def test_timeout_is_clean(server, tmp_path):
    url = server.add("/slow.bin", DATA, mode="hang")
    dest = tmp_path / "slow.bin"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        download(url, dest, timeout=0.5, retries=1, progress=False)
    assert time.monotonic() - t0 < 2.9  # gave up on its own timeout, not the server's
    assert url in str(ei.value) and "timed out" in str(ei.value).lower()
    assert leftovers(dest) == []


def test_connection_refused_is_clean(tmp_path):
    with FileServer() as s:
        url = s.url("/gone.bin")
    dest = tmp_path / "gone.bin"
    with pytest.raises(DownloadError, match="gone.bin"):
        download(url, dest, timeout=0.5, retries=1, progress=False)
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
    with pytest.raises(DownloadError, match="checksum mismatch"):
        pip_download("demo-pkg==0.1", dest2, sha256=want, extra_args=local_index(links))
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
