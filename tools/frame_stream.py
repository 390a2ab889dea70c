"""A camera-like stream of fixed-size frames over real TCP or UDP, timed per frame: the workload
of the lossy-link validation (``scripts/validate_latency.py --lossy``).

Why not the split-inference pair (``isplit device`` / ``isplit serve``): under loss the question
is the transport alone, so compute is left out (the simulator is run with zero compute), and UDP
needs a datagram sender the split protocol does not have.

* ``client``: frame ``i`` is due at ``t0 + i / fps`` (``time.monotonic``); it is written then
  (TCP: one ``sendall`` of an 8-byte header ``[frame id u32][length u32]`` and the frame, with
  ``TCP_NODELAY``; UDP: ``ceil(bytes / 1460)`` datagrams, each ``[frame id u32][index u16]
  [count u16][4 bytes pad]`` + up to 1460 bytes, so one datagram fills a 1500-byte IP packet).
  The client logs each frame's due time.
* ``server``: logs when each frame is complete (TCP: its last byte read, then it answers with 8
  bytes, as an inference server answers with the class; UDP: its last missing datagram arrived);
  a UDP frame with a datagram missing is never complete.

Device and server run in two network namespaces of one host, which share ``CLOCK_MONOTONIC``,
so latency = server completion − client due time needs no clock synchronisation.
"""

from __future__ import annotations

import argparse
import math
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

UDP_HEADER = struct.Struct("!IHH4x")  # 12 bytes: frame id, datagram index, datagram count
UDP_DATA = 1500 - 20 - 8 - UDP_HEADER.size  # 1460: one datagram per full IP packet
TCP_HEADER = struct.Struct("!II")


def _write(path: str, header: str, rows) -> None:
    Path(path).write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def _read_exact(conn: socket.socket, n: int, buf: bytearray) -> bool:
    while len(buf) < n:
        chunk = conn.recv(max(65536, n - len(buf)))
        if not chunk:
            return False
        buf += chunk
    return True


def serve(proto: str, host: str, port: int, log: str, idle_s: float) -> None:
    """Receive one stream (TCP: one connection) until it ends or ``idle_s`` passes without data."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    rows = []
    if proto == "tcp":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(1)
        print(f"frame_stream: listening on {host}:{lst.getsockname()[1]}", flush=True)
        conn, _ = lst.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while not stop and _read_exact(conn, TCP_HEADER.size, buf):
                frame_id, length = TCP_HEADER.unpack_from(buf)
                if not _read_exact(conn, TCP_HEADER.size + length, buf):
                    break
                rows.append((frame_id, repr(time.monotonic())))
                del buf[: TCP_HEADER.size + length]
                # answer each frame at once, as an inference server would: the answer carries
                # the ACK of the frame's last segment (else it waits for the delayed-ACK timer)
                conn.sendall(TCP_HEADER.pack(frame_id, 0))
        except OSError as e:
            print(f"frame_stream: connection ended: {e}", flush=True)
        conn.close()
        lst.close()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((host, port))
        s.settimeout(idle_s)
        print(f"frame_stream: listening on {host}:{s.getsockname()[1]}", flush=True)
        got: dict[int, set] = {}
        done: set = set()
        while not stop:
            try:
                data = s.recv(65536)
            except (TimeoutError, InterruptedError):
                break
            frame_id, index, count = UDP_HEADER.unpack_from(data)
            have = got.setdefault(frame_id, set())
            have.add(index)
            if len(have) == count and frame_id not in done:
                done.add(frame_id)
                rows.append((frame_id, repr(time.monotonic())))
        s.close()
    _write(log, "frame_id,t_done", rows)


def send(
    proto: str,
    host: str,
    port: int,
    frame_bytes: int,
    frames: int,
    fps: float,
    log: str,
    cc: str = "cubic",
) -> None:
    """Send ``frames`` frames of ``frame_bytes`` at ``fps``; log each frame's due time."""
    payload = bytes(frame_bytes)
    rows = []
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # per socket (root may pick any built-in algorithm): a namespace's default is the
        # host's, and a namespace may only select the host's "allowed" ones
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        s.settimeout(30)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        used = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")
        print(f"frame_stream: congestion control {used.decode()}", flush=True)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, port))
    answers = [0]
    if proto == "tcp":  # count the answers; the stream ends when every frame was answered
        threading.Thread(target=_drain, args=(s, answers), daemon=True).start()
    time.sleep(0.2)  # the handshake's RTT sample is in; the server is reading
    t0 = time.monotonic() + 0.05
    count = max(1, math.ceil(frame_bytes / UDP_DATA))
    for i in range(frames):
        due = t0 + i / fps
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if proto == "tcp":
            s.sendall(TCP_HEADER.pack(i, frame_bytes) + payload)
        else:
            for k in range(count):
                chunk = payload[k * UDP_DATA : (k + 1) * UDP_DATA]
                s.send(UDP_HEADER.pack(i, k, count) + chunk)
        rows.append((i, repr(due), repr(time.monotonic())))
    if proto == "tcp":
        deadline = time.monotonic() + 120
        while answers[0] < frames * TCP_HEADER.size and time.monotonic() < deadline:
            time.sleep(0.05)
        s.shutdown(socket.SHUT_WR)
    else:
        time.sleep(1.0)  # let the last datagrams arrive
    s.close()
    _write(log, "frame_id,t_due,t_written", rows)


def _drain(s: socket.socket, count: list) -> None:
    try:
        while data := s.recv(65536):
            count[0] += len(data)
    except OSError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("server")
    sv.add_argument("--proto", choices=["tcp", "udp"], required=True)
    sv.add_argument("--host", default="0.0.0.0")
    sv.add_argument("--port", type=int, default=0)
    sv.add_argument("--log", required=True)
    sv.add_argument("--idle-s", type=float, default=5.0)
    cl = sub.add_parser("client")
    cl.add_argument("--proto", choices=["tcp", "udp"], required=True)
    cl.add_argument("--host", required=True)
    cl.add_argument("--port", type=int, required=True)
    cl.add_argument("--frame-bytes", type=int, required=True)
    cl.add_argument("--frames", type=int, required=True)
    cl.add_argument("--fps", type=float, required=True)
    cl.add_argument("--log", required=True)
    cl.add_argument("--cc", default="cubic", help="TCP congestion control (Linux's default)")
    args = p.parse_args(argv)
    if args.cmd == "server":
        serve(args.proto, args.host, args.port, args.log, args.idle_s)
    else:
        send(
            args.proto,
            args.host,
            args.port,
            args.frame_bytes,
            args.frames,
            args.fps,
            args.log,
            args.cc,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
