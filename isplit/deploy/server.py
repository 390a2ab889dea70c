"""``isplit serve``: the server half (decoder + tail) of a split, answering each frame with its
class over the protocol of :mod:`isplit.deploy.wire`."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
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
    json_body,
    nodelay,
    recv_exact,
    recv_msg,
    send_msg,
)
from isplit.io.files import write_table

# --------------------------------------------------------------------------- server


def handle_connection(conn: socket.socket, half: Half, *, connection: int = 0, log=None) -> list:
    """Serve one device: handshake, then answer frames until BYE. Returns one row per frame."""
    ident = half.identity
    kind, body = recv_msg(conn)
    if kind != HELLO:
        raise ProtocolError(f"expected HELLO (type {HELLO}), got type {kind}")
    problem = compare_identity(json_body(body), ident)
    if problem:
        send_msg(conn, REFUSE, json.dumps({"error": problem}).encode())
        if log:
            print(f"isplit serve: refused a device: {problem}", file=log, flush=True)
        return []
    send_msg(conn, ACCEPT, json.dumps(hello_body(ident)).encode())
    expect = FRAME.size + int(ident["payload_bytes"])
    rows: list[dict] = []
    while True:
        kind, n = HEADER.unpack(recv_exact(conn, HEADER.size))
        t_first = time.monotonic()
        if kind == BYE:
            if n > MAX_CONTROL_BYTES:
                raise ProtocolError(f"BYE of {n} bytes exceeds the limit of {MAX_CONTROL_BYTES}")
            recv_exact(conn, n)
            send_msg(conn, BYE, json.dumps({"frames": len(rows)}).encode())
            return rows
        if kind != FRAME_MSG or n != expect:
            raise ProtocolError(f"expected FRAME of {expect} bytes, got type {kind} of {n} bytes")
        body = recv_exact(conn, n)
        t_recv = time.monotonic()
        fid, t_capture, t_ready = FRAME.unpack_from(body)
        with torch.no_grad():
            logits = half.module(*decode_payload(memoryview(body)[FRAME.size :], ident))
        pred = int(logits.argmax(1)[0])
        t_done = time.monotonic()
        conn.sendall(HEADER.pack(RESULT_MSG, RESULT.size) + RESULT.pack(fid, pred, t_recv, t_done))
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
    timeout_s: float = 60.0,
    log=sys.stderr,
) -> list[dict]:
    """Accept devices one after another on ``listener`` (already bound and listening) until
    ``connections`` were served or ``stop`` is set. A failing connection is logged and closed;
    the server goes on. The frames log (if any) is rewritten after every connection."""
    rows: list[dict] = []
    served = 0
    listener.settimeout(0.2)  # to notice ``stop``
    while connections is None or served < connections:
        if stop is not None and stop.is_set():
            break
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(timeout_s)
            nodelay(conn)
            try:
                rows += handle_connection(conn, half, connection=served, log=log)
            except (OSError, ProtocolError) as e:
                print(f"isplit serve: connection from {peer} failed: {e}", file=log, flush=True)
        served += 1
        if frames_log:
            write_table(pd.DataFrame(rows, columns=SERVER_COLUMNS), frames_log)
    return rows


def open_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4)
    except BaseException:
        sock.close()
        raise
    return sock
