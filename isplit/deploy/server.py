"""``isplit serve``: the server half (decoder + tail) of a split, answering each frame with its
class over the protocol of :mod:`isplit.deploy.wire`.

Connections are served concurrently, one thread each, at most ``Limits.max_connections`` at a
time (a device over the limit gets REFUSE "server busy" at once, not a wait). Every connection
has deadlines, not only per-read timeouts: the whole HELLO within ``handshake_s`` of the accept,
each whole message within ``message_s`` of its first byte, and at most ``idle_s`` between
messages. So an idle or trickling peer holds one slot for a bounded time and never the others.

Inference is shared: one module, read-only (eval mode, ``no_grad``), and one lock around the
forward. Why a lock and not concurrent forwards: on a CPU, torch's intra-op threads already use
the cores for one frame, so concurrent forwards only oversubscribe them (and an exported program
makes no promise about concurrent calls); the lock is held for the forward alone, never while
reading or writing a socket, so a slow peer cannot hold it. A frame therefore waits at most for
the forwards queued before it, one per connection.

Any malformed message (see :func:`isplit.deploy.wire.json_body`, :func:`~isplit.deploy.wire.
hello_problem`) ends that connection with a REFUSE naming the problem, where the socket still
takes it; any other failure of one connection is logged and ends that connection only. What
the server trusts (and does not): ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from isplit.deploy.wire import (
    ACCEPT,
    BYE,
    FRAME,
    FRAME_MSG,
    HEADER,
    HELLO,
    MAX_CONTROL_BYTES,
    REFUSE,
    RESULT,
    RESULT_MSG,
    Half,
    ProtocolError,
    compare_identity,
    decode_payload,
    hello_body,
    hello_problem,
    json_body,
    nodelay,
    recv_exact,
    recv_header,
    recv_msg,
    send_msg,
)
from isplit.io.files import write_table

REFUSE_SEND_S = 1.0  # a REFUSE is a courtesy: a peer that does not read it is not waited for


@dataclass(frozen=True)
class Limits:
    """How much of the server one connection may hold, and for how long (seconds)."""

    max_connections: int = 16
    handshake_s: float = 10.0  # accept -> whole HELLO received
    message_s: float = 30.0  # first byte of a message -> all of it (a frame at a slow link)
    idle_s: float = 60.0  # end of one message -> first byte of the next

    def __post_init__(self):
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        for name in ("handshake_s", "message_s", "idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def _refuse(conn: socket.socket, problem: str, linger_s: float = REFUSE_SEND_S) -> None:
    """Send REFUSE, then read and drop what the peer still sends for up to ``linger_s``: a
    socket closed with unread bytes answers with a reset, which can destroy the REFUSE in the
    peer's receive queue before it reads it."""
    with contextlib.suppress(OSError):
        conn.settimeout(REFUSE_SEND_S)
        send_msg(conn, REFUSE, json.dumps({"error": problem}).encode())
        conn.shutdown(socket.SHUT_WR)
        end = time.monotonic() + linger_s
        drained = 0
        while drained < MAX_CONTROL_BYTES and (left := end - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)


def _handshake_problem(hello: dict, ident: dict, secret: str | None) -> str | None:
    problem = hello_problem(hello)
    if problem is None and secret is not None:
        given = hello.get("secret")
        # compare_digest: the time taken must not tell how much of a guess was right
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), secret.encode()):
            # checked before the identity, so an unauthenticated peer learns nothing of the split
            return "authentication failed: the HELLO does not carry the server's shared secret"
    return problem or compare_identity(hello, ident)


def handle_connection(
    conn: socket.socket,
    half: Half,
    *,
    connection: int = 0,
    log=None,
    limits: Limits = Limits(),
    secret: str | None = None,
    model_lock: threading.Lock | None = None,
) -> list:
    """Serve one device: handshake, then answer frames until BYE. Returns one row per frame.

    Raises :class:`ProtocolError` or ``TimeoutError`` (after sending REFUSE), or ``OSError``."""
    ident = half.identity
    model_lock = model_lock or threading.Lock()
    rows: list[dict] = []
    try:
        kind, body = recv_msg(conn, deadline=time.monotonic() + limits.handshake_s)
        if kind != HELLO:
            raise ProtocolError(f"expected HELLO (type {HELLO}), got type {kind}")
        problem = _handshake_problem(json_body(body), ident, secret)
        if problem:
            _refuse(conn, problem)
            if log:
                print(f"isplit serve: refused a device: {problem}", file=log, flush=True)
            return []
        conn.settimeout(limits.message_s)
        send_msg(conn, ACCEPT, json.dumps(hello_body(ident)).encode())
        expect = FRAME.size + int(ident["payload_bytes"])
        while True:
            kind, n, deadline, t_first = recv_header(
                conn, idle_s=limits.idle_s, message_s=limits.message_s
            )
            if kind == BYE:
                if n > MAX_CONTROL_BYTES:
                    raise ProtocolError(
                        f"BYE of {n} bytes exceeds the limit of {MAX_CONTROL_BYTES}"
                    )
                recv_exact(conn, n, deadline)
                conn.settimeout(limits.message_s)
                send_msg(conn, BYE, json.dumps({"frames": len(rows)}).encode())
                return rows
            if kind != FRAME_MSG or n != expect:
                raise ProtocolError(
                    f"expected FRAME of {expect} bytes, got type {kind} of {n} bytes"
                )
            body = recv_exact(conn, n, deadline)
            t_recv = time.monotonic()
            fid, t_capture, t_ready = FRAME.unpack_from(body)
            inputs = decode_payload(memoryview(body)[FRAME.size :], ident)
            with model_lock, torch.no_grad():
                logits = half.module(*inputs)
            pred = int(logits.argmax(1)[0])
            t_done = time.monotonic()
            conn.settimeout(limits.message_s)  # a peer that stops reading answers times out
            conn.sendall(
                HEADER.pack(RESULT_MSG, RESULT.size) + RESULT.pack(fid, pred, t_recv, t_done)
            )
            rows.append(
                {
                    "connection": connection,
                    "frame_id": fid,
                    "pred": pred,
                    "t_capture": t_capture,
                    "t_ready": t_ready,
                    "t_first_byte": t_first,
                    "t_recv": t_recv,
                    "t_done": t_done,
                    "t_replied": time.monotonic(),
                    "server_s": t_done - t_recv,
                    "payload_bytes": n - FRAME.size,
                    "wire_bytes": HEADER.size + n,
                }
            )
    except ProtocolError as e:
        _refuse(conn, str(e))
        raise
    except TimeoutError as e:  # say why: a device on a link too slow for the deadlines learns it
        _refuse(conn, f"deadline passed: {e}", linger_s=0.1)
        raise


SERVER_COLUMNS = [
    "connection",
    "frame_id",
    "pred",
    "t_capture",
    "t_ready",
    "t_first_byte",
    "t_recv",
    "t_done",
    "t_replied",
    "server_s",
    "payload_bytes",
    "wire_bytes",
]


def serve(
    listener: socket.socket,
    half: Half,
    *,
    frames_log: str | Path | None = None,
    connections: int | None = None,
    stop: threading.Event | None = None,
    limits: Limits = Limits(),
    secret: str | None = None,
    log=sys.stderr,
) -> list[dict]:
    """Serve devices on ``listener`` (already bound and listening), each in its own thread,
    until ``connections`` were accepted and have ended, or ``stop`` is set (open connections
    are then cut). A failing connection is logged and closed; the server goes on. The frames
    log (if any) is rewritten whenever a connection ends, rows grouped by connection."""
    model_lock = threading.Lock()
    rows_lock = threading.Lock()
    rows: dict[int, list[dict]] = {}
    open_conns: dict[int, socket.socket] = {}
    threads: list[threading.Thread] = []
    accepted = 0

    def collected() -> list[dict]:
        return [r for cid in sorted(rows) for r in rows[cid]]

    def run(conn: socket.socket, peer, cid: int) -> None:
        got: list[dict] = []
        try:
            got = handle_connection(
                conn,
                half,
                connection=cid,
                log=log,
                limits=limits,
                secret=secret,
                model_lock=model_lock,
            )
        except (OSError, ProtocolError) as e:  # TimeoutError and ConnectionError are OSErrors
            print(f"isplit serve: connection {cid} from {peer} failed: {e}", file=log, flush=True)
        except Exception as e:  # a bug must end this connection, not the server
            print(
                f"isplit serve: connection {cid} from {peer} failed: {type(e).__name__}: {e}",
                file=log,
                flush=True,
            )
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with rows_lock:
                open_conns.pop(cid, None)
                rows[cid] = got
                if frames_log:
                    write_table(pd.DataFrame(collected(), columns=SERVER_COLUMNS), frames_log)

    def cut_open_connections() -> None:
        # stopping: end what is open now instead of waiting out its deadlines
        with rows_lock:
            for conn in open_conns.values():
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    listener.settimeout(0.2)  # to notice ``stop``
    try:
        while connections is None or accepted < connections:
            if stop is not None and stop.is_set():
                break
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError as e:  # out of file descriptors, say: wait, do not spin or die
                if listener.fileno() < 0:
                    break
                print(f"isplit serve: accept failed: {e}", file=log, flush=True)
                time.sleep(0.2)
                continue
            threads = [t for t in threads if t.is_alive()]
            if len(threads) >= limits.max_connections:
                # a short linger: the accept loop must not wait on a peer it turns away
                busy = f"server busy: {len(threads)} connections open, try again later"
                _refuse(conn, busy, linger_s=0.05)
                conn.close()
                print(f"isplit serve: refused {peer}: busy", file=log, flush=True)
                continue
            nodelay(conn)
            cid, accepted = accepted, accepted + 1
            with rows_lock:
                open_conns[cid] = conn
            thread = threading.Thread(
                target=run, args=(conn, peer, cid), name=f"isplit-serve-{cid}", daemon=True
            )
            thread.start()
            threads.append(thread)
        if stop is not None and stop.is_set():
            cut_open_connections()
    except BaseException:  # Ctrl-C
        cut_open_connections()
        raise
    finally:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
                if stop is not None and stop.is_set():
                    cut_open_connections()
    with rows_lock:
        return collected()


def open_listener(host: str, port: int, backlog: int = 64) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
