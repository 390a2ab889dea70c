#!/usr/bin/env python
"""Load test of ``isplit serve``: well-behaved devices streaming at once beside idle and
trickling connections, against one device alone. Prints one JSON object.

The server runs as its own process (``python -m isplit serve``), as deployed. The clients are
threads of this process speaking the wire protocol with payloads computed before the clock
starts, so what is timed is the server and the network stack, not the devices' own compute:

1. ``single``: one device streams ``--frames`` frames, closed loop (next frame when the answer
   came), nothing else connected;
2. ``single_with_pests``: the same beside ``--idle`` connections that never send a byte and
   ``--trickle`` connections that send one byte of a HELLO every ``--trickle-period`` seconds
   (each reconnecting whenever the server cuts it);
3. ``loaded_clean``: ``--clients`` devices start together, each streams ``--frames`` frames
   closed loop;
4. ``loaded``: the same beside the idle and trickling connections;
5. ``after``: one device again, to show that the server still serves.

Latency of a frame = answer received − frame sent, on this process's clock. Every answer is
checked against the split model's own prediction. The idle and trickling connections hold
server slots (``--max-connections`` must leave room for the devices) until their handshake
deadline cuts them; ``cuts`` counts how often that happened.

Defaults: 50 devices, 10 idle, 5 trickling. ``--quick`` is the test's size. Run from the
repository root (it imports the test beds of ``tools/``)::

    .venv/bin/python -m scripts.load_test_serve --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from isplit.deploy import device, wire
from tools import synthetic
from tools.deploy import make_split, reference_predictions

ROOT = Path(__file__).resolve().parents[1]


def prepared_frames(split_path: Path, dataset: Path, n: int) -> tuple[list[bytes], list[int]]:
    """FRAME payloads of ``n`` test images (the device half run once, here) and the class the
    split model gives each."""
    import torch

    half = wire.load_half(split_path, "device")
    frames = device.load_frames(dataset, "test", half.input_cfg, n=n)
    with torch.no_grad():
        payloads = [
            wire.encode_payload(half.module(x.unsqueeze(0)), half.identity) for x, _ in frames
        ]
    return payloads, reference_predictions(split_path, frames)


def start_server(split_path: Path, args, log: Path) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "isplit", "serve", "--split", str(split_path), "--port", "0"]
    cmd += ["--threads", str(args.threads), "--max-connections", str(args.max_connections)]
    cmd += ["--handshake-timeout", str(args.handshake_timeout)]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "listening on" in line:
                return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        if proc.poll() is not None:
            raise RuntimeError(f"isplit serve exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("isplit serve did not start within 120 s")


def stream_client(address, identity, payloads, expected, frames, timeout_s) -> list[float]:
    """One well-behaved device: HELLO, ``frames`` closed-loop frames, BYE. Returns the frame
    latencies; raises if an answer is missing or wrong."""
    latencies = []
    with socket.create_connection(address, timeout=timeout_s) as sock:
        wire.nodelay(sock)
        wire.send_msg(sock, wire.HELLO, json.dumps(wire.hello_body(identity)).encode())
        kind, body = wire.recv_msg(sock)
        if kind != wire.ACCEPT:
            raise wire.ProtocolError(f"not accepted: {bytes(body)[:200]!r}")
        for i in range(frames):
            k = i % len(payloads)
            t0 = time.monotonic()
            wire.send_msg(sock, wire.FRAME_MSG, wire.FRAME.pack(i, t0, t0) + payloads[k])
            kind, body = wire.recv_msg(sock, wire.RESULT.size)
            latencies.append(time.monotonic() - t0)
            fid, pred, _, _ = wire.RESULT.unpack(body)
            if kind != wire.RESULT_MSG or fid != i or pred != expected[k]:
                raise wire.ProtocolError(f"frame {i}: answer {kind, fid, pred}, expected {k}")
        wire.send_msg(sock, wire.BYE)
        wire.recv_msg(sock)
    return latencies


def idle_client(address, stop: threading.Event, cuts: list) -> None:
    """Connects and says nothing; reconnects when the server cuts it."""
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=5) as sock:
                sock.settimeout(0.2)
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        if not sock.recv(1 << 16):  # REFUSE, then the end: cut
                            cuts.append(time.monotonic())
                            break
        except OSError:
            stop.wait(0.1)


def trickle_client(address, stop: threading.Event, period_s: float, cuts: list) -> None:
    """Sends a HELLO one byte per ``period_s``; reconnects when the server cuts it."""
    hello = wire.HEADER.pack(wire.HELLO, 1000) + b" " * 1000
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=5) as sock:
                for byte in hello:
                    if stop.wait(period_s):
                        return
                    sock.sendall(bytes([byte]))
        except OSError:
            cuts.append(time.monotonic())
            stop.wait(0.1)


def stats(latencies) -> dict:
    v = np.asarray(latencies, dtype=float)
    if not v.size:
        return {"n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {
        "n": int(v.size),
        "p50_ms": round(p50 * 1e3, 2),
        "p95_ms": round(p95 * 1e3, 2),
        "p99_ms": round(p99 * 1e3, 2),
        "max_ms": round(v.max() * 1e3, 2),
    }


def many_devices(one, clients: int) -> dict:
    """``clients`` devices starting together, each running ``one()``: their latencies."""
    results: list = [None] * clients
    start = threading.Barrier(clients)

    def device_thread(i):
        start.wait()
        try:
            results[i] = one()
        except Exception as e:  # reported, not raised: the others go on
            results[i] = e

    t0 = time.monotonic()
    devices = [threading.Thread(target=device_thread, args=(i,)) for i in range(clients)]
    for t in devices:
        t.start()
    for t in devices:
        t.join()
    wall = time.monotonic() - t0
    failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, Exception)]
    latencies = [x for r in results if isinstance(r, list) for x in r]
    return {
        **stats(latencies),
        "clients": clients,
        "clients_failed": len(failures),
        "failures": failures[:5],
        "wall_s": round(wall, 2),
        "frames_per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
    }


def with_pests(address, args, work) -> dict:
    """Run ``work()`` while idle and trickling connections pester the server."""
    stop, idle_cuts, trickle_cuts = threading.Event(), [], []
    pests = [
        threading.Thread(target=idle_client, args=(address, stop, idle_cuts))
        for _ in range(args.idle)
    ] + [
        threading.Thread(
            target=trickle_client, args=(address, stop, args.trickle_period, trickle_cuts)
        )
        for _ in range(args.trickle)
    ]
    for t in pests:
        t.start()
    time.sleep(0.5)  # all of them connected before the devices start
    try:
        result = work()
    finally:
        stop.set()
        for t in pests:
            t.join(10)
    return {
        **result,
        "idle": args.idle,
        "trickling": args.trickle,
        "idle_cuts": len(idle_cuts),
        "trickle_cuts": len(trickle_cuts),
    }


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="isplit-load-") as tmp:
        work = Path(tmp)
        dataset = synthetic.write(work / "data", per_class=20)
        split_path = (
            Path(args.split) if args.split else make_split(work / "split/model.pt", dataset)
        )
        identity = wire.load_half(split_path, "server").identity
        payloads, expected = prepared_frames(split_path, dataset, 30)
        proc, port = start_server(split_path, args, work / "server.log")
        address = ("127.0.0.1", port)
        out: dict = {
            "payload_bytes": identity["payload_bytes"],
            "layer": identity["layer"],
            "frames_per_device": args.frames,
        }
        try:

            def one():
                return stream_client(
                    address, identity, payloads, expected, args.frames, args.timeout
                )

            one()  # warm-up: first-call costs of the server's modules
            out["single"] = stats(one())
            out["single_with_pests"] = with_pests(address, args, lambda: stats(one()))
            out["loaded_clean"] = many_devices(one, args.clients)
            out["loaded"] = with_pests(address, args, lambda: many_devices(one, args.clients))
            out["after"] = stats(one())
            out["server_alive"] = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    out["settings"] = {
        k: getattr(args, k)
        for k in ("threads", "max_connections", "handshake_timeout", "trickle_period", "timeout")
    }
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", help="a split's model.pt or export directory [a small random one]")
    p.add_argument("--clients", type=int, default=50, help="well-behaved devices at once")
    p.add_argument("--idle", type=int, default=10, help="connections that never send")
    p.add_argument("--trickle", type=int, default=5, help="connections sending a byte at a time")
    p.add_argument("--trickle-period", type=float, default=1.0, help="seconds between bytes")
    p.add_argument("--frames", type=int, default=40, help="frames per device")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--max-connections", type=int, default=80)
    p.add_argument("--handshake-timeout", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=60.0, help="each device's socket timeout")
    p.add_argument("--quick", action="store_true", help="8 devices, 3 idle, 2 trickling, 10 frames")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.idle, args.trickle, args.frames = 8, 3, 2, 10
        args.handshake_timeout, args.trickle_period = 1.0, 0.1
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
