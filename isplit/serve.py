"""Real split inference over TCP: ``isplit serve`` runs decoder + tail, ``isplit device`` runs
head + encoder on a stream of test images and measures each frame's latency.

Why: Split-Et-Impera picks a split from a *simulated* network (method.md §7.2,
:mod:`isplit.latency.netsim`). Running the same split for real, with timestamps at every stage,
is what the simulation is held against (``scripts/validate_latency.py``).

Protocol (version 1), over one TCP connection, ``TCP_NODELAY`` on both ends
---------------------------------------------------------------------------
Every message is ``[type: uint8][length: uint32 big-endian][body: length bytes]`` (5 bytes of
header). Multi-byte header fields are big-endian (network order); tensor data is little-endian,
C-contiguous (CHW), which is what x86 and ARM devices hold in memory.

=========  =========  ====================================================================
type       direction  body
=========  =========  ====================================================================
1 HELLO    dev → srv  UTF-8 JSON: ``protocol`` and the split's identity — ``model``,
                      ``layer``, ``code_shape``, ``dtype`` (float32 | uint8), ``quant_bits``,
                      ``payload_bytes``, ``num_classes`` and ``digest`` (sha256 of the split's
                      state dict, :func:`isplit.export.state_digest`).
2 ACCEPT   srv → dev  UTF-8 JSON: the server's identity (equal to the device's).
3 REFUSE   srv → dev  UTF-8 JSON ``{"error": ...}`` naming every field that differs; the server
                      then closes. A pair built from different splits (another layer, code
                      shape, quantisation, or the same layer with other weights) never
                      exchanges a frame.
4 FRAME    dev → srv  ``[frame id: uint32][t_capture: float64][t_ready: float64]`` (big-endian,
                      device clock, seconds) then the payload, exactly ``payload_bytes``
                      = ``transmitted_bytes()`` of the split:
                      float32 code (``4·C·h·w`` bytes), or with ``quant_bits`` = b:
                      ``[scale: float32 LE][offset: float32 LE]`` then the ``C·h·w`` codes,
                      one uint8 each for b = 8, bit-packed MSB-first (``numpy.packbits``) for
                      b < 8: ``ceil(C·h·w·b/8) + 8`` bytes. z = q · scale + offset.
5 RESULT   srv → dev  ``[frame id: uint32][class: int32][t_recv: float64][t_done: float64]``
                      (server clock: payload fully read, class computed).
6 BYE      both       device: empty, no more frames; server: JSON ``{"frames": n}``, then both
                      close.
=========  =========  ====================================================================

Bytes on the wire per frame: ``payload_bytes + 25`` device → server (``FRAME_OVERHEAD``) and 29
back (``RESULT_BYTES``), plus what TCP/IP/Ethernet add per segment. Relation to SEI's framing:
SEI's transmitter cuts a frame into 1010-byte chunks and prefixes each with an 8-byte
``[4-hex number][4-hex length]`` header (TCP) because its simulated packets are the unit of
transfer. On a real TCP stream the kernel segments the bytes (MSS 1448 with timestamps on a
1500-byte MTU), so per-packet application headers carry nothing; the same information (frame
number, length, and SEI's per-packet "time" = the frame's ready time) is sent once per frame.
The simulator is therefore fed ``payload_bytes + FRAME_OVERHEAD`` as the frame size and adds
its own SEI-style per-packet headers (see ``scripts/validate_latency.py``).

Timestamps: every side uses its own ``time.monotonic()`` clock. Device-side latency of a frame
= answer received − capture, on the device clock. It is split into device compute
(ready − start), device queueing (start − capture, non-zero only when a fixed ``--fps`` outruns
the device), server compute (``t_done − t_recv``, a difference on the server clock, so no clock
synchronisation is needed) and network + queueing (the rest: both directions, socket buffers,
the server's input queue). When both ends run on one host (also in different network
namespaces, which share ``CLOCK_MONOTONIC``), the server log's ``t_done − t_capture`` is the
"server finish − capture" latency the simulator reports.

Closed loop (default): a frame is captured when the previous answer arrived (one frame in
flight). ``--fps F``: frame i is captured at ``i / F``; a receiver thread collects answers while
the device keeps sending. ``--warmup K`` frames go first (logged with ``warmup = True``, left
out of every statistic) so a fresh connection's slow start and cold caches do not count.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch
from torch import nn

from isplit.atomic import replacing
from isplit.export import (
    MANIFEST,
    DevicePart,
    ServerPart,
    export_command,
    load_exported,
    split_identity,
)

PROTOCOL_VERSION = 1
HEADER = struct.Struct("!BI")  # message type, body length
FRAME = struct.Struct("!Idd")  # frame id, t_capture, t_ready (device clock, seconds)
RESULT = struct.Struct("!Iidd")  # frame id, class, t_recv, t_done (server clock, seconds)
QUANT = struct.Struct("<ff")  # scale, offset of a quantised code
HELLO, ACCEPT, REFUSE, FRAME_MSG, RESULT_MSG, BYE = 1, 2, 3, 4, 5, 6
FRAME_OVERHEAD = HEADER.size + FRAME.size  # bytes per frame on top of the payload: 25
RESULT_BYTES = HEADER.size + RESULT.size  # bytes of one answer: 29
MAX_CONTROL_BYTES = 1 << 20  # HELLO/ACCEPT/REFUSE/BYE bodies are small JSON
IDENTITY_FIELDS = ("model", "layer", "code_shape", "dtype", "quant_bits", "payload_bytes")
DEFAULT_PORT = 5555

__all__ = ["device_command", "export_command", "serve_command"]


class SplitMismatch(ValueError):
    """The server refused the device's split (different layer, code, quantisation or weights)."""


class ProtocolError(ConnectionError):
    """The peer sent something this protocol does not allow."""


# --------------------------------------------------------------------------- halves


@dataclass(frozen=True)
class Half:
    """One side's module plus what both sides must agree on."""

    module: nn.Module
    identity: dict
    input_cfg: dict
    classes: list


def load_half(path: str | Path, side: str) -> Half:
    """The ``side`` ("device" or "server") of a split: from a ``model.pt`` written by
    :mod:`isplit.retrain`, or from an export directory (``manifest.json`` + ``.pt2``)."""
    if side not in ("device", "server"):
        raise ValueError(f"side must be 'device' or 'server', got {side!r}")
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} is a directory without {MANIFEST}")
        dev, srv, man = load_exported(path)
        inp = man["input"]
        cfg = {k: inp[k] for k in ("image_size", "grayscale_to_rgb", "normalize")}
        return Half(dev if side == "device" else srv, man["identity"], cfg, man["classes"])
    if not path.is_file():
        raise FileNotFoundError(f"split model {path} does not exist")
    from isplit.retrain import load_split

    split, meta = load_split(path)
    module = DevicePart(split) if side == "device" else ServerPart(split)
    return Half(
        module.eval(), split_identity(split, meta), meta["input"], list(meta.get("classes", []))
    )


def hello_body(identity: dict) -> dict:
    return {"protocol": PROTOCOL_VERSION, **identity}


def compare_identity(device: dict, server: dict) -> str | None:
    """``None`` if the two halves belong together, else a message naming what differs."""
    if device.get("protocol") != PROTOCOL_VERSION:
        return (
            f"protocol version mismatch: device speaks {device.get('protocol')!r}, "
            f"server speaks {PROTOCOL_VERSION}"
        )
    diffs = [
        f"{k}: device {device.get(k)!r} != server {server.get(k)!r}"
        for k in (*IDENTITY_FIELDS, "num_classes")
        if device.get(k) != server.get(k)
    ]
    if diffs:
        return (
            "split mismatch: the device and the server run different splits ("
            + "; ".join(diffs)
            + "); start both from the same model.pt or export"
        )
    if device.get("digest") != server.get("digest"):
        d, s = str(device.get("digest"))[:12], str(server.get("digest"))[:12]
        return (
            f"split mismatch: same layer {device.get('layer')!r} and code, but different weights "
            f"(digest device {d}… != server {s}…); start both from the same model.pt or export"
        )
    return None


# --------------------------------------------------------------------------- payload


def encode_payload(out, identity: dict) -> bytes:
    """The device half's output for one image (batch of 1) as the FRAME payload."""
    bits = identity.get("quant_bits")
    if bits:
        q, scale, offset = out
        codes = q[0].contiguous().numpy().reshape(-1)
        if bits < 8:
            codes = np.packbits(np.unpackbits(codes[:, None], axis=1)[:, 8 - bits :])
        data = QUANT.pack(float(scale[0]), float(offset[0])) + codes.tobytes()
    else:
        data = out[0].contiguous().numpy().astype("<f4", copy=False).tobytes()
    if len(data) != identity["payload_bytes"]:
        raise ProtocolError(f"payload of {len(data)} bytes, expected {identity['payload_bytes']}")
    return data


def decode_payload(payload, identity: dict) -> tuple:
    """Inverse of :func:`encode_payload`: the server half's inputs (batch of 1)."""
    shape = (1, *identity["code_shape"])
    bits = identity.get("quant_bits")
    if bits:
        scale, offset = QUANT.unpack_from(payload)
        raw = np.frombuffer(payload, dtype=np.uint8, offset=QUANT.size)
        numel = math.prod(shape)
        if bits < 8:
            raw = np.unpackbits(raw)[: numel * bits].reshape(numel, bits)
            raw = np.packbits(raw, axis=1, bitorder="big").reshape(-1) >> (8 - bits)
        q = torch.from_numpy(raw.copy()).view(shape)
        return q, torch.tensor([scale], dtype=torch.float32), torch.tensor([offset])
    z = np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=True)
    return (torch.from_numpy(z).view(shape),)


# --------------------------------------------------------------------------- messages


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"peer closed the connection after {got} of {n} bytes")
        got += k
    return buf


def send_msg(sock: socket.socket, kind: int, body: bytes = b"") -> int:
    """One ``sendall`` per message, so header and body leave in the same segments."""
    data = HEADER.pack(kind, len(body)) + body
    sock.sendall(data)
    return len(data)


def recv_msg(sock: socket.socket, max_len: int = MAX_CONTROL_BYTES) -> tuple[int, bytearray]:
    kind, n = HEADER.unpack(recv_exact(sock, HEADER.size))
    if n > max_len:
        raise ProtocolError(f"message type {kind} of {n} bytes exceeds the limit of {max_len}")
    return kind, recv_exact(sock, n)


def _json(body) -> dict:
    try:
        return json.loads(bytes(body).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed JSON message: {e}") from e


def _nodelay(sock: socket.socket) -> None:
    # one frame = one write; without this, Nagle holds a short last segment for an ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------- server


def handle_connection(conn: socket.socket, half: Half, *, connection: int = 0, log=None) -> list:
    """Serve one device: handshake, then answer frames until BYE. Returns one row per frame."""
    ident = half.identity
    kind, body = recv_msg(conn)
    if kind != HELLO:
        raise ProtocolError(f"expected HELLO (type {HELLO}), got type {kind}")
    problem = compare_identity(_json(body), ident)
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


def write_csv(path: str | Path, rows: list[dict], columns: Sequence[str]) -> None:
    """Whole file or nothing: write a sibling temp file, then rename."""
    with replacing(path) as tmp:
        pd.DataFrame(rows, columns=list(columns)).to_csv(tmp, index=False)


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
            _nodelay(conn)
            try:
                rows += handle_connection(conn, half, connection=served, log=log)
            except (OSError, ProtocolError) as e:
                print(f"isplit serve: connection from {peer} failed: {e}", file=log, flush=True)
        served += 1
        if frames_log:
            write_csv(frames_log, rows, SERVER_COLUMNS)
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


# --------------------------------------------------------------------------- device


def load_frames(
    dataset: str | Path,
    split_name: str,
    input_cfg: dict,
    n: int | None = None,
    seed: int = 0,
) -> list[tuple[torch.Tensor, int]]:
    """Preprocessed test images, loaded before the stream starts: the "camera" is the dataset,
    and decoding a file is not part of the pipeline being timed."""
    from isplit.datasets.loader import ManifestDataset, transform_from_config

    ds = ManifestDataset(dataset, split_name, transform_from_config(input_cfg), subset=n, seed=seed)
    return [ds[i] for i in range(len(ds))]


DEVICE_COLUMNS = [
    "frame_id",
    "warmup",
    "label",
    "pred",
    "t_capture",
    "t_start",
    "t_ready",
    "t_sent",
    "t_answer",
    "server_recv",
    "server_done",
    "latency_s",
    "device_queue_s",
    "device_s",
    "server_s",
    "network_s",
    "payload_bytes",
    "wire_bytes",
]


def _finish_row(row: dict, fid: int, pred: int, s_recv: float, s_done: float, t_answer: float):
    if fid != row["frame_id"]:
        raise ProtocolError(f"answer for frame {fid}, expected frame {row['frame_id']}")
    server_s = s_done - s_recv
    row.update(
        pred=pred,
        t_answer=t_answer,
        server_recv=s_recv,
        server_done=s_done,
        latency_s=t_answer - row["t_capture"],
        server_s=server_s,
        network_s=(t_answer - row["t_ready"]) - server_s,
    )


def _read_result(sock: socket.socket):
    kind, body = recv_msg(sock, RESULT.size)
    t = time.monotonic()
    if kind != RESULT_MSG or len(body) != RESULT.size:
        raise ProtocolError(f"expected RESULT, got type {kind} of {len(body)} bytes")
    return (*RESULT.unpack(body), t)


def stream(
    address: tuple[str, int],
    half: Half,
    frames: Sequence[tuple[torch.Tensor, int]],
    *,
    fps: float | None = None,
    warmup: int = 0,
    timeout_s: float = 60.0,
) -> list[dict]:
    """Send ``frames`` (image, label) to a server; one row per frame (warm-up frames first,
    flagged). Raises :class:`SplitMismatch` when the server refuses the split."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not frames:
        raise ValueError("no frames to send")
    ident = half.identity
    plan = [(frames[i % len(frames)], True) for i in range(warmup)] + [(f, False) for f in frames]
    rows: list[dict] = []
    with socket.create_connection(address, timeout=timeout_s) as sock:
        _nodelay(sock)
        send_msg(sock, HELLO, json.dumps(hello_body(ident)).encode())
        kind, body = recv_msg(sock)
        if kind == REFUSE:
            raise SplitMismatch(_json(body).get("error", "the server refused the split"))
        if kind != ACCEPT:
            raise ProtocolError(f"expected ACCEPT or REFUSE, got type {kind}")
        failure: list[BaseException] = []
        receiver = None
        if fps is not None:
            # answers arrive while later frames are computed: a thread collects them; a frame's
            # row is appended before the frame is sent, so it exists when its answer comes
            def receive():
                try:
                    for i in range(len(plan)):
                        answer = _read_result(sock)  # before rows[i]: it may not exist yet
                        _finish_row(rows[i], *answer)
                except BaseException as e:  # re-raised by the sending thread
                    failure.append(e)

            receiver = threading.Thread(target=receive, name="isplit-device-receiver")
            receiver.start()
        try:
            t0 = time.monotonic() + 0.01
            for i, ((x, label), is_warmup) in enumerate(plan):
                if failure:
                    break
                if fps is not None:
                    t_capture = t0 + i / fps
                    delay = t_capture - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                else:
                    t_capture = time.monotonic()
                t_start = time.monotonic()
                with torch.no_grad():
                    out = half.module(x.unsqueeze(0))
                payload = encode_payload(out, ident)
                t_ready = time.monotonic()
                row = {
                    "frame_id": i,
                    "warmup": is_warmup,
                    "label": int(label),
                    "t_capture": t_capture,
                    "t_start": t_start,
                    "t_ready": t_ready,
                    "device_queue_s": t_start - t_capture,
                    "device_s": t_ready - t_start,
                    "payload_bytes": len(payload),
                }
                rows.append(row)
                row["wire_bytes"] = send_msg(
                    sock, FRAME_MSG, FRAME.pack(i, t_capture, t_ready) + payload
                )
                row["t_sent"] = time.monotonic()
                if receiver is None:
                    _finish_row(row, *_read_result(sock))
        except BaseException:
            if receiver is not None:  # wake the receiver up: nothing more will be answered
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise
        finally:
            if receiver is not None:
                receiver.join(timeout_s)
        if failure:
            raise failure[0]
        if receiver is not None and receiver.is_alive():
            raise TimeoutError("the server did not answer every frame in time")
        send_msg(sock, BYE)
        kind, _ = recv_msg(sock)
        if kind != BYE:
            raise ProtocolError(f"expected BYE, got type {kind}")
    return rows


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    if not v.size:
        return {}
    p50, p95 = np.percentile(v, [50, 95])
    return {"p50": p50, "p95": p95, "mean": v.mean(), "max": v.max(), "min": v.min()}


def summarize(rows: list[dict], identity: dict | None = None) -> dict:
    """Accuracy and latency statistics over the measured (non-warm-up) frames, in seconds."""
    df = pd.DataFrame(rows, columns=DEVICE_COLUMNS)
    m = df[~df["warmup"].astype(bool)]
    span = float(m["t_answer"].max() - m["t_capture"].min()) if len(m) else float("nan")
    out = {
        "frames": len(m),
        "warmup": int(len(df) - len(m)),
        "accuracy": float((m["pred"] == m["label"]).mean()) if len(m) else float("nan"),
        "correct": int((m["pred"] == m["label"]).sum()),
        "payload_bytes": int(m["payload_bytes"].iloc[0]) if len(m) else 0,
        "wire_bytes_per_frame": int(m["wire_bytes"].iloc[0]) if len(m) else 0,
        "fps_achieved": len(m) / span if len(m) and span > 0 else float("nan"),
    }
    for col in ("latency_s", "device_s", "device_queue_s", "network_s", "server_s"):
        out[col] = {k: float(v) for k, v in _stats(m[col]).items()}
    if identity is not None:
        out["layer"] = identity.get("layer")
        out["model"] = identity.get("model")
    return out


# --------------------------------------------------------------------------- CLI


def _parse_host_port(host: str, port: int) -> tuple[str, int]:
    if not 0 <= port < 65536:
        raise click.BadParameter(f"port {port} is not in 0..65535")
    return host, port


@click.command("serve")
@click.option(
    "--split",
    "split_path",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="the split's model.pt, or its export directory (manifest.json)",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="0: any free")
@click.option("--frames-log", type=click.Path(path_type=Path), default=None, help="CSV")
@click.option("--connections", type=int, default=None, help="exit after N devices [forever]")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True)
def serve_command(split_path, host, port, frames_log, connections, threads, timeout_s):
    """Run the server half (decoder + tail) of a split: answer each frame with its class."""
    if threads:
        torch.set_num_threads(threads)
    half = load_half(split_path, "server")
    host, port = _parse_host_port(host, port)
    with open_listener(host, port) as listener:
        bound = listener.getsockname()
        ident = half.identity
        print(
            f"isplit serve: listening on {bound[0]}:{bound[1]} "
            f"(layer {ident['layer']}, {ident['payload_bytes']} payload bytes per frame)",
            file=sys.stderr,
            flush=True,
        )
        try:
            rows = serve(
                listener,
                half,
                frames_log=frames_log,
                connections=connections,
                timeout_s=timeout_s,
            )
        except KeyboardInterrupt:
            rows = []
    print(json.dumps({"frames": len(rows)}))


@click.command("device")
@click.option(
    "--split",
    "split_path",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="the split's model.pt, or its export directory (manifest.json)",
)
@click.option(
    "--dataset", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True
)
@click.option("--split-name", default="test", show_default=True, help="dataset split to stream")
@click.option("--n", "n", type=int, default=None, help="frames (stratified subset) [all]")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.option("--fps", type=float, default=None, help="capture rate; frames may queue")
@click.option(
    "--closed-loop",
    is_flag=True,
    default=False,
    help="capture the next frame when the answer arrives (the default without --fps)",
)
@click.option("--warmup", type=int, default=5, show_default=True, help="unmeasured first frames")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="CSV")
@click.option("--seed", type=int, default=0, show_default=True, help="subset seed")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True)
def device_command(
    split_path,
    dataset,
    split_name,
    n,
    host,
    port,
    fps,
    closed_loop,
    warmup,
    log_path,
    seed,
    threads,
    timeout_s,
):
    """Run the device half (head + encoder) on a dataset split, stream it to ``isplit serve``
    and print accuracy and latency statistics as JSON on the last line."""
    if fps is not None and closed_loop:
        raise click.UsageError("--fps and --closed-loop exclude each other")
    if warmup < 0:
        raise click.BadParameter("--warmup must be >= 0")
    if threads:
        torch.set_num_threads(threads)
    half = load_half(split_path, "device")
    frames = load_frames(dataset, split_name, half.input_cfg, n, seed)
    from isplit.datasets.loader import read_classes

    classes = read_classes(dataset)
    if half.classes and list(half.classes) != classes:
        raise ValueError(
            f"the dataset's classes {classes[:5]}… are not the split's {half.classes[:5]}…"
        )
    try:
        rows = stream(
            _parse_host_port(host, port), half, frames, fps=fps, warmup=warmup, timeout_s=timeout_s
        )
    except SplitMismatch as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot stream to {host}:{port}: {e}") from e
    if log_path:
        write_csv(log_path, rows, DEVICE_COLUMNS)
    print(json.dumps(summarize(rows, half.identity)))


@click.group()
def cli():
    """``python -m isplit.serve serve|device|export``: the same commands as ``isplit``."""


cli.add_command(serve_command)
cli.add_command(device_command)
cli.add_command(export_command)

if __name__ == "__main__":
    cli()
