"""Packet-level, discrete-event simulation of one camera stream over one link.

Why this exists: Split-Et-Impera (SEI) decides the split from a packet-level simulation in SCNSL
(a SystemC library, docs/methods.md §5.1) that cannot be built here. This module re-implements the
parts of that setting that shape the latency of a frame, in pure Python (``heapq`` for the event
queue, ``numpy`` for the seeded random numbers), so the result can be checked against a closed
form, against ns-3 (:mod:`.ns3sim`) and against real TCP/UDP (``scripts/validate_latency.py``).

What is modelled, and why each choice:

* **Packetisation as SEI's transmitter does it**: a frame of ``frame_bytes`` is cut into chunks
  of ``payload`` bytes (1010 by default: SEI's ``buffer_len − 14``); each chunk gets SEI's
  application header (8 B over TCP: ``[4-hex number][4-hex length]``; 14 B over UDP: a 6-hex
  sequence number in front), then the transport header (TCP 20 B, UDP 8 B), IPv4 (20 B) and an
  Ethernet header (14 B, as SCNSL's "extra header"; preamble, FCS and inter-frame gap are not
  counted, as in SCNSL). A chunk never makes an IP packet larger than ``link.mtu``: the payload
  per packet is ``min(payload, mtu − 20 − transport − app)``. A frame of 0 bytes still sends one
  header-only packet. ``app_header`` / ``transport_header`` / ``link_header`` override the
  header sizes (a Linux socket: no application header, 32 B of TCP header with timestamps; a
  point-to-point link: a 2-byte PPP header). Over TCP each
  application packet is one segment (SEI sets ``TCP_NO_DELAY``, so writes are not coalesced).
* **The link** is full duplex with ``bandwidth_bps`` each way and a one-way propagation delay
  ``delay_s`` (SEI: 1 Gb/s and 100 µs). A packet occupies its direction for
  ``wire_bytes · 8 / bandwidth`` and arrives ``delay_s`` after its last bit left. There is no
  queue in front of the link: the sender hands it the next packet when it becomes free, choosing
  a pending retransmission before new data (as a TCP sender does).
* **Loss** per transmitted data packet, i.i.d. at ``link.loss`` (SCNSL's ``Lv4ByteSaboteur``
  drops at a fixed rate) or bursty (Gilbert–Elliott with the same average rate; :mod:`.loss`),
  drawn from ``numpy.random.default_rng(seed)``. ACKs are lost only with the optional
  ``ack_loss``.
* **TCP**: ``tcp="linux"`` (default) recovers as Linux does — SACK, RACK, tail loss probe, PRR,
  an RTO of srtt + max(4·rttvar, 200 ms), initial window 10 and slow start, delayed ACKs
  (:mod:`.tcp_linux` lists what is and is not modelled); ``tcp="sei"`` is SCNSL's TCP with a
  fixed 200 ms RTO, fast retransmit and no congestion window (:mod:`.tcp_sei`).
* **UDP**: no retransmission; a frame with a lost packet is lost (SEI's receiver marks its time
  as ``inf``).
* **Frames and queueing**: frame ``i`` is captured at ``i / fps``; the device computes one frame
  at a time (``device_s`` each, FIFO: a frame waits for the previous one), hands it to the
  transport, the link sends frames in order, and the server computes one frame at a time
  (``server_s``, FIFO). With ``fps=None`` the stream is closed-loop: frame ``i + 1`` is captured
  when frame ``i`` is done (its server computation finished; for a lost UDP frame, when its last
  packet would have arrived), so one frame is in flight and nothing queues.

Frame latency = server finish − capture time = device compute + waiting + transmission
(serialisation of every packet with its headers, propagation, retransmissions) + server compute.
The zero-loss value is :func:`analytic_latency` (exact while the congestion window does not
hold a frame back: always with ``tcp="sei"``, and with ``tcp="linux"`` for frames of at most
``initial_window`` segments). Percentiles come from :mod:`.stats` (stratified by whether a
frame lost a packet, with the exact weight of each stratum, and bootstrap intervals); UDP's
``frame_loss`` is the exact probability that a frame loses a packet, ``frame_loss_sim`` the
simulated fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from isplit.latency import loss as lossmod
from isplit.latency import stats, tcp_linux, tcp_sei

ETH_HEADER = 14  # SCNSL's extra link-layer header; no preamble / FCS / inter-frame gap
IP_HEADER = 20
TCP_HEADER = 20
UDP_HEADER = 8
APP_HEADER = {"tcp": 8, "udp": 14}  # SEI's per-packet application header (docs/methods.md §5.1)
TRANSPORT_HEADER = {"tcp": TCP_HEADER, "udp": UDP_HEADER}
ACK_WIRE_BYTES = IP_HEADER + TCP_HEADER + ETH_HEADER
SEI_PAYLOAD = 1010  # SEI transmitter: buffer_len (1024) − 14
PROTOCOLS = ("tcp", "udp")
TCP_MODELS = ("linux", "sei")


@dataclass(frozen=True)
class Link:
    """One full-duplex link: ``bandwidth_bps`` each way, one-way ``delay_s``, average ``loss``
    per data packet, ``mtu`` = the largest IP packet in bytes."""

    bandwidth_bps: float
    delay_s: float
    loss: float = 0.0
    mtu: int = 1500

    def __post_init__(self):
        if not self.bandwidth_bps > 0:
            raise ValueError(f"bandwidth_bps must be > 0, got {self.bandwidth_bps}")
        if not self.delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")


@dataclass(frozen=True)
class SimResult:
    """``latency_s``: one value per delivered frame, in frame order; ``lost``: one flag per
    frame; ``clean``: one flag per frame, no packet of its own lost on first transmission.
    ``p50``/``p95`` (NaN when no frame was delivered) are the stratified estimates of
    :mod:`.stats` with their intervals in ``percentiles``; ``frame_loss`` is the exact
    probability that a frame loses a packet for UDP (0 for TCP), ``frame_loss_sim`` the
    simulated fraction; ``p_clean`` the exact weight of the clean stratum."""

    latency_s: np.ndarray
    lost: np.ndarray
    p50: float
    p95: float
    frame_loss: float
    fps_max: float
    packets_per_frame: int = 0
    wire_bytes_per_frame: int = 0
    retransmissions: int = 0
    capture_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clean: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    p_clean: float = 1.0
    frame_loss_sim: float = 0.0
    percentiles: stats.Percentiles | None = None
    counts: dict = field(default_factory=dict)


def _check_protocol(protocol: str) -> str:
    p = protocol.lower()
    if p not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return p


def _headers(p: str, app_header, transport_header, link_header=None) -> tuple[int, int, int]:
    app = APP_HEADER[p] if app_header is None else int(app_header)
    transport = TRANSPORT_HEADER[p] if transport_header is None else int(transport_header)
    link = ETH_HEADER if link_header is None else int(link_header)
    if app < 0 or transport < 0 or link < 0:
        raise ValueError("header sizes must be >= 0")
    return app, transport, link


def payload_per_packet(
    mtu: int,
    protocol: str,
    payload: int = SEI_PAYLOAD,
    *,
    app_header=None,
    transport_header=None,
    link_header=None,
) -> int:
    """Application bytes per packet: SEI's chunk size, unless the MTU forces smaller ones."""
    p = _check_protocol(protocol)
    app, transport, _ = _headers(p, app_header, transport_header)
    room = int(mtu) - IP_HEADER - transport - app
    if room < 1:
        raise ValueError(f"MTU {mtu} leaves no room for data under the {p} headers")
    if payload < 1:
        raise ValueError(f"payload must be >= 1, got {payload}")
    return min(int(payload), room)


def packet_sizes(
    frame_bytes: int,
    mtu: int,
    protocol: str,
    payload: int = SEI_PAYLOAD,
    *,
    app_header=None,
    transport_header=None,
    link_header=None,
) -> list:
    """Wire size (bytes, all headers included) of each packet of one frame."""
    p = _check_protocol(protocol)
    if frame_bytes < 0:
        raise ValueError(f"frame_bytes must be >= 0, got {frame_bytes}")
    app, transport, link = _headers(p, app_header, transport_header, link_header)
    chunk = payload_per_packet(mtu, p, payload, app_header=app, transport_header=transport)
    overhead = app + transport + IP_HEADER + link
    n = max(1, math.ceil(frame_bytes / chunk))
    sizes = [chunk + overhead] * n
    sizes[-1] = (frame_bytes - chunk * (n - 1)) + overhead
    return sizes


def serialisation_s(frame_bytes: int, link: Link, protocol: str, payload=SEI_PAYLOAD, **hdr):
    """Time the link is busy sending one frame: every packet with its headers."""
    bits = 8 * sum(packet_sizes(frame_bytes, link.mtu, protocol, payload, **hdr))
    return bits / link.bandwidth_bps


def analytic_latency(
    frame_bytes: int,
    link: Link,
    protocol: str,
    *,
    device_s: float = 0.0,
    server_s: float = 0.0,
    payload: int = SEI_PAYLOAD,
    **hdr,
) -> float:
    """Zero-loss latency of a frame that finds device, link and server idle: device compute +
    serialisation of all packets (headers included) + one propagation delay + server compute.
    Packets are sent back to back, so only the last one's propagation adds up."""
    ser = serialisation_s(frame_bytes, link, protocol, payload, **hdr)
    return float(device_s) + ser + link.delay_s + float(server_s)


def fps_max(
    frame_bytes: int,
    link: Link,
    protocol: str,
    *,
    device_s: float = 0.0,
    server_s: float = 0.0,
    payload: int = SEI_PAYLOAD,
    **hdr,
) -> float:
    """Throughput bound of the pipeline device → link → server: its slowest stage sets it."""
    ser = serialisation_s(frame_bytes, link, protocol, payload, **hdr)
    return 1.0 / max(float(device_s), ser, float(server_s))


def _simulate_udp(sizes, link, n_frames, fps, device_s, server_s, loss):
    """UDP has no feedback, so the event queue reduces to three FIFO recursions (device, link,
    server)."""
    ser = 8 * sum(sizes) / link.bandwidth_bps
    lost = np.array([loss.frame(len(sizes)) for _ in range(n_frames)], dtype=bool)
    latency = np.zeros(n_frames)
    capture = np.zeros(n_frames)
    device_free = link_free = server_free = next_capture = 0.0
    for i in range(n_frames):
        cap = i / fps if fps else next_capture
        device_free = max(cap, device_free) + device_s
        link_free = max(device_free, link_free) + ser
        arrive = link_free + link.delay_s
        if lost[i]:
            done = arrive
        else:
            server_free = max(arrive, server_free) + server_s
            done = server_free
        capture[i], latency[i] = cap, done - cap
        next_capture = done
    return latency, lost, capture, ~lost, {"retransmissions": 0}


def _server_queue(arrival, capture, server_s):
    """Server FIFO after the transport: latency of every frame from its arrival times."""
    latency = np.zeros(len(arrival))
    server_free = 0.0
    for i, t in enumerate(arrival):
        server_free = max(t, server_free) + server_s
        latency[i] = server_free - capture[i]
    return latency


def simulate(
    frame_bytes: int,
    link: Link,
    protocol: str,
    *,
    n_frames: int = 200,
    fps: float | None = None,
    device_s: float = 0.0,
    server_s: float = 0.0,
    seed: int = 0,
    payload: int = SEI_PAYLOAD,
    rto_s: float = 0.2,
    dupacks: int = 3,
    window: int | None = None,
    ack_loss: float = 0.0,
    tcp: str = "linux",
    initial_window: int = 10,
    slow_start_after_idle: bool = True,
    delayed_ack: bool = True,
    loss_model=None,
    app_header: int | None = None,
    transport_header: int | None = None,
    link_header: int | None = None,
    n_boot: int = 200,
) -> SimResult:
    """Send ``n_frames`` frames of ``frame_bytes`` over ``link`` and time each one.

    ``fps=None`` is closed-loop (one frame in flight, no queueing); otherwise frames are captured
    every ``1/fps`` s and queue at the device, the link and the server when a stage is slower
    than the camera. ``tcp``: ``"linux"`` or ``"sei"`` (module doc); ``rto_s`` is the minimum
    RTO for Linux and the fixed RTO for SEI; ``dupacks`` and ``window`` (segments in flight,
    ``None`` = unlimited) apply to the SEI model, ``initial_window``, ``slow_start_after_idle``
    and ``delayed_ack`` to the Linux one. ``loss_model``: ``None`` (i.i.d.) or a
    :func:`isplit.latency.loss.from_config` mapping, at the average rate ``link.loss``.
    ``ack_loss``: i.i.d. per ACK. Same arguments → identical result.
    """
    p = _check_protocol(protocol)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    if device_s < 0 or server_s < 0:
        raise ValueError("device_s and server_s must be >= 0")
    if not rto_s > 0 or dupacks < 1:
        raise ValueError("rto_s must be > 0 and dupacks >= 1")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if not 0 <= ack_loss < 1:
        raise ValueError(f"ack_loss must be in [0, 1), got {ack_loss}")
    if tcp not in TCP_MODELS:
        raise ValueError(f"tcp must be one of {TCP_MODELS}, got {tcp!r}")
    if initial_window < 1:
        raise ValueError(f"initial_window must be >= 1, got {initial_window}")
    hdr = {
        "app_header": app_header,
        "transport_header": transport_header,
        "link_header": link_header,
    }
    sizes = packet_sizes(int(frame_bytes), link.mtu, p, payload, **hdr)
    model = lossmod.from_config(link.loss, loss_model)
    rng = np.random.default_rng(seed)
    drops = lossmod.PacketLoss(model, rng)
    device_s, server_s = float(device_s), float(server_s)
    if p == "udp":
        lat, lost, cap, clean, counts = _simulate_udp(
            sizes, link, n_frames, fps, device_s, server_s, drops
        )
    else:
        acks = lossmod.PacketLoss(lossmod.LossModel(ack_loss), rng) if ack_loss else None
        _, transport, link_bytes = _headers(p, None, transport_header, link_header)
        ack_bytes = IP_HEADER + transport + link_bytes
        args = (sizes, link, n_frames, fps, device_s, server_s, drops, acks, ack_bytes)
        if tcp == "sei":
            arrival, cap, dirty, counts = tcp_sei.simulate(*args, float(rto_s), dupacks, window)
        else:
            opts = tcp_linux.TcpOptions(
                rto_min_s=float(rto_s),
                initial_window=int(initial_window),
                slow_start_after_idle=bool(slow_start_after_idle),
                delayed_ack=bool(delayed_ack),
                dupthresh=int(dupacks),
            )
            arrival, cap, dirty, counts = tcp_linux.simulate(*args, opts)
        lat = _server_queue(arrival, cap, server_s)
        lost, clean = np.zeros(n_frames, dtype=bool), ~dirty
    p_clean = lossmod.clean_probability(model, len(sizes))
    delivered = ~lost
    pct = stats.stratified(
        lat[delivered], clean[delivered], {1: p_clean, 0: 1 - p_clean}, n_boot=n_boot, seed=seed
    )
    fmax = fps_max(
        frame_bytes, link, p, device_s=device_s, server_s=server_s, payload=payload, **hdr
    )
    return SimResult(
        latency_s=lat[delivered],
        lost=lost,
        p50=pct.p50,
        p95=pct.p95,
        frame_loss=(1 - p_clean) if p == "udp" else 0.0,
        fps_max=fmax,
        packets_per_frame=len(sizes),
        wire_bytes_per_frame=sum(sizes),
        retransmissions=int(counts.get("retransmissions", 0)),
        capture_s=np.asarray(cap, dtype=float),
        clean=clean,
        p_clean=p_clean,
        frame_loss_sim=float(lost.mean()),
        percentiles=pct,
        counts=counts,
    )
