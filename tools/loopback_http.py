"""A loopback HTTP server for download tests: in-memory files, with scripted misbehaviour.

Tests must not touch the internet, yet the downloader's interesting paths (resume after a drop,
timeouts, wrong bytes) need a real socket.  ``FileServer`` binds 127.0.0.1 on a free port, serves
``bytes`` registered by path, records every request (so a test can assert that a resume really
sent ``Range``), and misbehaves on demand:

* ``"normal"``: 200, or 206 for ``Range: bytes=N-`` (416 when N is past the end);
* ``"drop"``: the first request announces the full Content-Length but the connection is closed
  after half the body; later requests are served normally;
* ``"drop-norange"``: like ``"drop"`` but ``Range`` is always ignored (answers 200), as some
  servers do — the client must restart from zero;
* ``"stall"``: the first request sends half the body and then stops sending (until ``hang_s``
  or shutdown), so the client's socket timeout fires mid-body; later requests are normal;
* ``"hang"``: every request waits ``hang_s`` before answering (client timeout before headers);
* ``"outage"``: like ``"drop"``, then every request gets 503 for ``outage_s`` seconds after
  the drop (a server that is down for a while), then normal service;
* ``"404"`` / ``"500"``: that status for every request (unregistered paths get 404 too).

Every file has a strong ``ETag`` (from its content) and a ``Last-Modified``; a ``Range`` request
whose ``If-Range`` is not the current ETag gets the whole file (200), as RFC 9110 says.
``content_type`` sets the Content-Type (an HTML page: ``text/html``).

"Wrong bytes" needs no mode: register different content under the URL the test downloads;
registering new content under a path already served is "the file changed upstream".

Use as a context manager; ``close()`` releases hanging handlers and joins the server thread.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("normal", "drop", "drop-norange", "stall", "hang", "outage", "404", "500")
LAST_MODIFIED = "Mon, 02 Jan 2023 03:04:05 GMT"


@dataclass
class _Resource:
    data: bytes
    mode: str
    content_type: str = "application/octet-stream"
    outage_s: float = 0.0
    hits: int = 0
    dropped_at: float | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:16] + '"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass  # keep test output quiet

    def do_GET(self):
        owner = self.server.owner
        with owner.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            owner.requests.append({"path": self.path, "headers": headers})
            res = owner.files.get(self.path)
            hit = 0
            if res is not None:
                res.hits += 1
                hit = res.hits
        if res is None or res.mode == "404":
            self._status_only(404, "Not Found")
            return
        if res.mode == "500":
            self._status_only(500, "Internal Server Error")
            return
        if res.mode == "hang":
            owner.stop.wait(owner.hang_s)
            self._status_only(503, "Service Unavailable")
            return

        data = res.data
        first = hit == 1
        if first and res.mode in ("drop", "drop-norange", "stall", "outage"):
            res.dropped_at = time.monotonic()
            self._send_partial(res, stall=res.mode == "stall")
            return
        if res.mode == "outage" and time.monotonic() - res.dropped_at < res.outage_s:
            self._status_only(503, "Service Unavailable")
            return

        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range not in (res.etag, LAST_MODIFIED):
            m = None  # the client's copy is of another version: send the whole file
        if m and res.mode != "drop-norange":
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self._send_entity_headers(res)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _status_only(self, code: int, message: str) -> None:
        self.send_response(code, message)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send_entity_headers(self, res: _Resource) -> None:
        self.send_header("Content-Type", res.content_type)
        self.send_header("ETag", res.etag)
        self.send_header("Last-Modified", LAST_MODIFIED)

    def _send_partial(self, res: _Resource, *, stall: bool) -> None:
        """Announce all of the file but deliver half, then stall or hang up."""
        data = res.data
        self.send_response(200)
        self._send_entity_headers(res)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if stall:
            self.server.owner.stop.wait(self.server.owner.hang_s)
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    # Handler threads may be parked in a stall/hang; they must not keep the process alive.
    daemon_threads = True
    owner: FileServer


class FileServer:
    """Serve in-memory files on 127.0.0.1; see the module docstring for the modes."""

    def __init__(self, hang_s: float = 3.0):
        self.hang_s = hang_s
        self.files: dict[str, _Resource] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def add(
        self,
        path: str,
        data: bytes,
        mode: str = "normal",
        *,
        content_type: str = "application/octet-stream",
        outage_s: float = 0.0,
    ) -> str:
        """Register ``data`` under ``path`` (leading "/"), return its full URL."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        if not path.startswith("/"):
            path = "/" + path
        with self.lock:
            self.files[path] = _Resource(bytes(data), mode, content_type, outage_s)
        return self.url(path)

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_for(self, path: str) -> list[dict]:
        """The recorded requests for ``path``, oldest first (header names lower-cased)."""
        if not path.startswith("/"):
            path = "/" + path
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
