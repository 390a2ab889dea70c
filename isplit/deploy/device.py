"""``isplit device``: the device half (head + encoder) of a split, streaming a dataset split
to ``isplit serve`` and timing every frame."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from isplit.deploy.wire import (
    ACCEPT,
    BYE,
    FRAME,
    FRAME_MSG,
    HELLO,
    REFUSE,
    RESULT,
    RESULT_MSG,
    Half,
    ProtocolError,
    SplitMismatch,
    encode_payload,
    hello_body,
    nodelay,
    recv_msg,
    recv_reply,
    refusal,
    send_msg,
)

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
    from isplit.data.loader import ManifestDataset, transform_from_config

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
    body = recv_reply(sock, RESULT_MSG, RESULT.size)
    t = time.monotonic()
    return (*RESULT.unpack(body), t)


def stream(
    address: tuple[str, int],
    half: Half,
    frames: Sequence[tuple[torch.Tensor, int]],
    *,
    fps: float | None = None,
    warmup: int = 0,
    timeout_s: float = 60.0,
    secret: str | None = None,
) -> list[dict]:
    """Send ``frames`` (image, label) to a server; one row per frame (warm-up frames first,
    flagged). ``secret``: the server's shared secret, if it has one. Raises
    :class:`SplitMismatch` when the server refuses the split, :class:`ProtocolError` when it
    refuses for another reason (busy, authentication, a malformed message)."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not frames:
        raise ValueError("no frames to send")
    ident = half.identity
    plan = [(frames[i % len(frames)], True) for i in range(warmup)] + [(f, False) for f in frames]
    rows: list[dict] = []
    with socket.create_connection(address, timeout=timeout_s) as sock:
        nodelay(sock)
        hello = hello_body(ident)
        if secret is not None:
            hello["secret"] = secret
        send_msg(sock, HELLO, json.dumps(hello).encode())
        kind, body = recv_msg(sock)
        if kind == REFUSE:
            error = refusal(body)
            if error.startswith(("split mismatch", "protocol version mismatch")):
                raise SplitMismatch(error)
            raise ProtocolError(f"the server refused the connection: {error}")
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
