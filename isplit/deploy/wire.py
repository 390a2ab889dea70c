"""Real split inference over TCP: ``isplit serve`` runs decoder + tail, ``isplit device`` runs
head + encoder on a stream of test images and measures each frame's latency.

Why: Split-Et-Impera picks a split from a *simulated* network (docs/methods.md §5,
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
                      state dict, :func:`isplit.deploy.export.state_digest`).
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

HELLO may also carry ``secret`` (a string) when the server was started with a shared secret;
it is compared in constant time and never echoed or logged. The server answers any malformed
message (not JSON, not an object, a field of the wrong type, nesting too deep, a wrong type or
length) with REFUSE ``{"error": ...}`` where the socket still takes it, then closes that
connection; the device raises the error. Deadlines, the connection limit and what the server
trusts: :mod:`isplit.deploy.server` and ``docs/reliability.md``.

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

import json
import math
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from isplit.deploy.export import MANIFEST, load_exported, split_identity
from isplit.nets.split import DeviceHalf, ServerHalf, load_split

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


def load_half(path: str | Path, side: str, runtime: str = "torch", threads: int | None = 1) -> Half:
    """The ``side`` ("device" or "server") of a split: from a ``model.pt`` written by
    :mod:`isplit.train.retrain`, or from an export directory (``manifest.json`` + ``.pt2`` for
    ``runtime="torch"``, the ``.onnx`` files in onnxruntime for ``runtime="onnx"``)."""
    if side not in ("device", "server"):
        raise ValueError(f"side must be 'device' or 'server', got {side!r}")
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} is a directory without {MANIFEST}")
        dev, srv, man = load_exported(path, runtime, threads)
        inp = man["input"]
        cfg = {k: inp[k] for k in ("image_size", "grayscale_to_rgb", "normalize")}
        return Half(dev if side == "device" else srv, man["identity"], cfg, man["classes"])
    if runtime != "torch":
        raise ValueError(
            f"runtime {runtime!r} runs an export directory (results/<exp>/deploy/<layer>), "
            f"not the split model {path}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"split model {path} does not exist")
    split, meta = load_split(path)
    module = DeviceHalf(split) if side == "device" else ServerHalf(split)
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


def recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytearray:
    """``n`` bytes; with ``deadline`` (a ``time.monotonic()`` value) all of them by then, however
    they trickle in: a per-read timeout alone lets a peer sending a byte at a time hold on
    forever."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"message not complete in time: {got} of {n} bytes arrived")
            sock.settimeout(left)
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"peer closed the connection after {got} of {n} bytes")
        got += k
    return buf


def recv_header(
    sock: socket.socket,
    *,
    idle_s: float | None = None,
    message_s: float | None = None,
    deadline: float | None = None,
) -> tuple[int, int, float | None, float]:
    """The next message's header: ``(type, body length, deadline of the body, arrival time of
    its first byte)``. Waits up to ``idle_s`` for the first byte (the socket's own timeout when
    None); from then the whole message, body included, has ``message_s``. An absolute
    ``deadline`` (``time.monotonic()``) replaces both: the whole message by then."""
    if deadline is not None:
        idle_s = max(deadline - time.monotonic(), 1e-3)
    if idle_s is not None:
        sock.settimeout(idle_s)
    buf = bytearray(HEADER.size)
    k = sock.recv_into(buf, HEADER.size)
    if k == 0:
        raise ConnectionError("peer closed the connection")
    t_first = time.monotonic()
    if deadline is None and message_s is not None:
        deadline = t_first + message_s
    buf[k:] = recv_exact(sock, HEADER.size - k, deadline)
    kind, n = HEADER.unpack(buf)
    return kind, n, deadline, t_first


def send_msg(sock: socket.socket, kind: int, body: bytes = b"") -> int:
    """One ``sendall`` per message, so header and body leave in the same segments."""
    data = HEADER.pack(kind, len(body)) + body
    sock.sendall(data)
    return len(data)


def recv_msg(
    sock: socket.socket,
    max_len: int = MAX_CONTROL_BYTES,
    *,
    idle_s: float | None = None,
    message_s: float | None = None,
    deadline: float | None = None,
) -> tuple[int, bytearray]:
    """One whole message (see :func:`recv_header` for the time limits)."""
    kind, n, deadline, _ = recv_header(sock, idle_s=idle_s, message_s=message_s, deadline=deadline)
    if n > max_len:
        raise ProtocolError(f"message type {kind} of {n} bytes exceeds the limit of {max_len}")
    return kind, recv_exact(sock, n, deadline)


def refusal(body) -> str:
    """The reason a REFUSE body gives."""
    try:
        return str(json_body(body).get("error", "no reason given"))
    except ProtocolError as e:
        return f"a malformed REFUSE ({e})"


def recv_reply(sock: socket.socket, kind: int, size: int) -> bytearray:
    """The body of the next message, which must be of type ``kind`` and ``size`` bytes. A
    REFUSE instead (the peer ended the exchange, and says why) raises :class:`ProtocolError`
    with its reason."""
    got, n, _, _ = recv_header(sock)
    if got == REFUSE and n <= MAX_CONTROL_BYTES:
        raise ProtocolError(f"the server ended the connection: {refusal(recv_exact(sock, n))}")
    if got != kind or n != size:
        raise ProtocolError(f"expected type {kind} of {size} bytes, got type {got} of {n} bytes")
    return recv_exact(sock, n)


def json_body(body) -> dict:
    """A control message's JSON object. Anything else (invalid UTF-8 or JSON, another JSON
    type, nesting deeper than the parser's recursion limit) is a :class:`ProtocolError`, never
    an exception the receiving loop does not expect."""
    try:
        value = json.loads(bytes(body).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed JSON message: {e}") from e
    except RecursionError:
        raise ProtocolError("malformed JSON message: nested too deeply") from None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"malformed message: a JSON object expected, got {type(value).__name__}"
        )
    return value


# the HELLO fields and their JSON types: checked before anything reads them
_HELLO_TYPES = {
    "protocol": (int,),
    "model": (str,),
    "layer": (str,),
    "code_shape": (list,),
    "dtype": (str,),
    "quant_bits": (int, type(None)),
    "payload_bytes": (int,),
    "num_classes": (int,),
    "digest": (str,),
    "secret": (str,),
}
_MAX_FIELD_CHARS = 256  # identity strings are short; a longer one is not a split's


def hello_problem(hello: dict) -> str | None:
    """Why ``hello`` is not a well-formed HELLO (a field of the wrong type, or absurdly long),
    or None. Extra fields are ignored, missing ones are left to :func:`compare_identity`."""
    for key, types in _HELLO_TYPES.items():
        if key not in hello:
            continue
        value = hello[key]
        ok = isinstance(value, types) and not isinstance(value, bool)
        if ok and key == "code_shape":
            ok = len(value) <= 8 and all(
                isinstance(d, int) and not isinstance(d, bool) for d in value
            )
        if ok and isinstance(value, str):
            ok = len(value) <= _MAX_FIELD_CHARS
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            return f"malformed HELLO: field {key!r} must be {names}"
    return None


def read_secret(path: str | Path) -> str:
    """The shared secret in a file (UTF-8, surrounding whitespace dropped); never empty."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"the secret file {path} is not UTF-8 text: {e}") from None
    if not secret:
        raise ValueError(f"the secret file {path} is empty")
    if len(secret) > _MAX_FIELD_CHARS:
        raise ValueError(f"the secret in {path} is longer than {_MAX_FIELD_CHARS} characters")
    return secret


def nodelay(sock: socket.socket) -> None:
    # one frame = one write; without this, Nagle holds a short last segment for an ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
