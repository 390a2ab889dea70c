"""Packet-level, discrete-event simulation of one camera stream over one link.

Why this exists: Split-Et-Impera (SEI) decides the split from a packet-level simulation in SCNSL
(a SystemC library, docs/method.md §5.1) that cannot be built here. This module re-implements the
parts of that setting that shape the latency of a frame, in pure Python (``heapq`` for the event
queue, ``numpy`` for the seeded random numbers), so the result can be checked against a closed
form and against a real TCP client/server.

What is modelled, and why each choice:

* **Packetisation as SEI's transmitter does it**: a frame of ``frame_bytes`` is cut into chunks
  of ``payload`` bytes (1010 by default: SEI's ``buffer_len − 14``); each chunk gets SEI's
  application header (8 B over TCP: ``[4-hex number][4-hex length]``; 14 B over UDP: a 6-hex
  sequence number in front), then the transport header (TCP 20 B, UDP 8 B), IPv4 (20 B) and an
  Ethernet header (14 B, as SCNSL's "extra header"; preamble, FCS and inter-frame gap are not
  counted, as in SCNSL). A chunk never makes an IP packet larger than ``link.mtu``: the payload
  per packet is ``min(payload, mtu − 20 − transport − app)``. A frame of 0 bytes still sends one
  header-only packet. Over TCP each application packet is one segment (SEI sets
  ``TCP_NO_DELAY``, so writes are not coalesced).
* **The link** is full duplex with ``bandwidth_bps`` each way and a one-way propagation delay
  ``delay_s`` (SEI: 1 Gb/s and 100 µs). A packet occupies its direction for
  ``wire_bytes · 8 / bandwidth`` and arrives ``delay_s`` after its last bit left. There is no
  queue in front of the link: the sender hands it the next packet when it becomes free, choosing
  a pending retransmission before new data (as a TCP sender does).
* **Loss** is Bernoulli per transmitted data packet with probability ``link.loss`` (SCNSL's
  ``Lv4ByteSaboteur`` drops at a fixed rate), drawn from ``numpy.random.default_rng(seed)``.
  ACKs are lost only with the optional ``ack_loss``.
* **TCP**: cumulative ACK for every segment received (no delayed ACK; 40 B + 14 B Ethernet,
  sent back over the reverse direction with the same delay), in-order delivery to the
  application (a frame is delivered when all its segments and all earlier ones have arrived),
  a retransmission timer (RFC 6298 rules for starting/restarting it, value fixed at ``rto_s`` =
  200 ms as in SCNSL, doubled on each consecutive timeout up to 60 s and reset by new data being
  acknowledged), fast retransmit after ``dupacks`` duplicate ACKs and NewReno partial-ACK
  handling (RFC 6582: in recovery, an ACK that advances but does not cover everything sent
  retransmits the next hole at once). There is no congestion control: the window is unlimited by
  default (``window=None``: a frame is sent back-to-back, the best case a sender with a large
  enough window reaches), or a fixed number of segments in flight. There is no SACK, tail-loss
  probe or RACK, so a lost last segment of a frame waits for the RTO — the behaviour SCNSL's TCP
  shows and the reason TCP's p95 carries the 200 ms.
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
The zero-loss value is :func:`analytic_latency`.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

ETH_HEADER = 14  # SCNSL's extra link-layer header; no preamble / FCS / inter-frame gap
IP_HEADER = 20
TCP_HEADER = 20
UDP_HEADER = 8
APP_HEADER = {"tcp": 8, "udp": 14}  # SEI's per-packet application header (docs/method.md §5.1)
TRANSPORT_HEADER = {"tcp": TCP_HEADER, "udp": UDP_HEADER}
ACK_WIRE_BYTES = IP_HEADER + TCP_HEADER + ETH_HEADER
SEI_PAYLOAD = 1010  # SEI transmitter: buffer_len (1024) − 14
RTO_MAX_S = 60.0  # RFC 6298 (2.5): an upper bound on the backed-off RTO
PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Link:
    """One full-duplex link: ``bandwidth_bps`` each way, one-way ``delay_s``, Bernoulli
    ``loss`` per data packet, ``mtu`` = the largest IP packet in bytes."""

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
    frame. ``p50``/``p95`` are NaN when no frame was delivered."""

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


def _check_protocol(protocol: str) -> str:
    p = protocol.lower()
    if p not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return p


def payload_per_packet(mtu: int, protocol: str, payload: int = SEI_PAYLOAD) -> int:
    """Application bytes per packet: SEI's chunk size, unless the MTU forces smaller ones."""
    p = _check_protocol(protocol)
    room = int(mtu) - IP_HEADER - TRANSPORT_HEADER[p] - APP_HEADER[p]
    if room < 1:
        raise ValueError(f"MTU {mtu} leaves no room for data under the {p} headers")
    if payload < 1:
        raise ValueError(f"payload must be >= 1, got {payload}")
    return min(int(payload), room)


def packet_sizes(frame_bytes: int, mtu: int, protocol: str, payload: int = SEI_PAYLOAD) -> list:
    """Wire size (bytes, all headers included) of each packet of one frame."""
    p = _check_protocol(protocol)
    if frame_bytes < 0:
        raise ValueError(f"frame_bytes must be >= 0, got {frame_bytes}")
    chunk = payload_per_packet(mtu, p, payload)
    overhead = APP_HEADER[p] + TRANSPORT_HEADER[p] + IP_HEADER + ETH_HEADER
    n = max(1, math.ceil(frame_bytes / chunk))
    sizes = [chunk + overhead] * n
    sizes[-1] = (frame_bytes - chunk * (n - 1)) + overhead
    return sizes


def serialisation_s(frame_bytes: int, link: Link, protocol: str, payload: int = SEI_PAYLOAD):
    """Time the link is busy sending one frame: every packet with its headers."""
    bits = 8 * sum(packet_sizes(frame_bytes, link.mtu, protocol, payload))
    return bits / link.bandwidth_bps


def analytic_latency(
    frame_bytes: int,
    link: Link,
    protocol: str,
    *,
    device_s: float = 0.0,
    server_s: float = 0.0,
    payload: int = SEI_PAYLOAD,
) -> float:
    """Zero-loss latency of a frame that finds device, link and server idle: device compute +
    serialisation of all packets (headers included) + one propagation delay + server compute.
    Packets are sent back to back, so only the last one's propagation adds up."""
    ser = serialisation_s(frame_bytes, link, protocol, payload)
    return float(device_s) + ser + link.delay_s + float(server_s)


def fps_max(
    frame_bytes: int,
    link: Link,
    protocol: str,
    *,
    device_s: float = 0.0,
    server_s: float = 0.0,
    payload: int = SEI_PAYLOAD,
) -> float:
    """Throughput bound of the pipeline device → link → server: its slowest stage sets it."""
    ser = serialisation_s(frame_bytes, link, protocol, payload)
    return 1.0 / max(float(device_s), ser, float(server_s))


def _finish(latency, lost, capture, ppf, wire, fmax, retx) -> SimResult:
    lat = np.asarray(latency, dtype=float)
    lost = np.asarray(lost, dtype=bool)
    delivered = lat[~lost]
    if delivered.size:
        p50, p95 = (float(v) for v in np.percentile(delivered, [50, 95]))
    else:
        p50 = p95 = float("nan")
    return SimResult(
        latency_s=delivered,
        lost=lost,
        p50=p50,
        p95=p95,
        frame_loss=float(lost.mean()) if lost.size else 0.0,
        fps_max=fmax,
        packets_per_frame=ppf,
        wire_bytes_per_frame=wire,
        retransmissions=retx,
        capture_s=np.asarray(capture, dtype=float),
    )


def _simulate_udp(sizes, link, n_frames, fps, device_s, server_s, rng):
    """UDP has no feedback, so the event queue reduces to three FIFO recursions (device, link,
    server). One uniform number per packet (``u < loss`` = lost) keeps runs at different loss
    rates with the same seed coupled: a packet lost at p is lost at every p' > p."""
    ser = 8 * sum(sizes) / link.bandwidth_bps
    n_pk = len(sizes)
    # one row of draws per frame (the same stream as one (n_frames, n_pk) draw, less memory)
    lost = np.array([bool((rng.random(n_pk) < link.loss).any()) for _ in range(n_frames)])
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
    return latency, lost, capture, 0


# event kinds, ordered so that at equal times a freed link is reused before new work arrives
_LINK_FREE, _ACK, _ARRIVE, _RTO, _READY = range(5)


def _simulate_tcp(
    sizes, link, n_frames, fps, device_s, server_s, rng, rto_s, dupacks, window, ack_loss
):
    m = len(sizes)
    n_seg = m * n_frames
    bw, delay, loss = link.bandwidth_bps, link.delay_s, link.loss
    ser = [8 * s / bw for s in sizes]
    ack_ser = 8 * ACK_WIRE_BYTES / bw

    heap: list = []
    order = 0

    def push(t, kind, arg=0):
        nonlocal order
        heapq.heappush(heap, (t, kind, order, arg))
        order += 1

    capture = np.zeros(n_frames)
    delivered = np.full(n_frames, np.nan)
    if fps:
        device_free = 0.0
        for i in range(n_frames):
            capture[i] = i / fps
            device_free = max(capture[i], device_free) + device_s
            push(device_free, _READY, i)
    else:
        push(device_s, _READY, 0)

    # sender
    avail = snd_nxt = snd_una = 0
    link_busy = False
    rtx: deque = deque()
    queued: set = set()
    dup = 0
    in_recovery = False
    recover = 0
    rto_cur = rto_s
    timer_gen = 0
    timer_on = False
    retransmissions = 0
    # receiver
    got = bytearray(n_seg)
    rcv_next = 0
    next_frame = 0
    rev_free = 0.0

    def start_timer(t):
        nonlocal timer_gen, timer_on
        timer_gen += 1
        timer_on = True
        push(t + rto_cur, _RTO, timer_gen)

    def try_send(t):
        nonlocal link_busy, snd_nxt, retransmissions
        if link_busy:
            return
        seg = -1
        while rtx:
            s = rtx.popleft()
            queued.discard(s)
            if s >= snd_una:
                seg = s
                retransmissions += 1
                break
        if seg < 0:
            if snd_nxt >= avail or (window is not None and snd_nxt - snd_una >= window):
                return
            seg = snd_nxt
            snd_nxt += 1
        d = ser[seg % m]
        link_busy = True
        push(t + d, _LINK_FREE)
        if not (loss and rng.random() < loss):
            push(t + d + delay, _ARRIVE, seg)
        if not timer_on:
            start_timer(t)

    def queue_rtx(s, front=False):
        if s in queued:
            return
        queued.add(s)
        if front:
            rtx.appendleft(s)
        else:
            rtx.append(s)

    while heap:
        t, kind, _, arg = heapq.heappop(heap)
        if kind == _LINK_FREE:
            link_busy = False
            try_send(t)
        elif kind == _ARRIVE:
            if not got[arg]:
                got[arg] = 1
                while rcv_next < n_seg and got[rcv_next]:
                    rcv_next += 1
                while next_frame < n_frames and rcv_next >= (next_frame + 1) * m:
                    delivered[next_frame] = t
                    if not fps and next_frame + 1 < n_frames:
                        # closed loop: the next frame is captured when this one is done
                        capture[next_frame + 1] = t + server_s
                        push(t + server_s + device_s, _READY, next_frame + 1)
                    next_frame += 1
            rev_free = max(t, rev_free) + ack_ser
            if not (ack_loss and rng.random() < ack_loss):
                push(rev_free + delay, _ACK, rcv_next)
        elif kind == _ACK:
            a = arg
            if a > snd_una:
                snd_una = a
                dup = 0
                rto_cur = rto_s
                if in_recovery:
                    if a >= recover:
                        in_recovery = False
                    else:  # NewReno partial ACK: the next hole is lost too
                        queue_rtx(a, front=True)
                if snd_una < snd_nxt:
                    start_timer(t)
                else:
                    timer_gen += 1
                    timer_on = False
            elif a == snd_una and snd_una < snd_nxt:
                dup += 1
                if dup == dupacks and not in_recovery:
                    in_recovery = True
                    recover = snd_nxt
                    queue_rtx(a, front=True)
            try_send(t)
        elif kind == _RTO:
            if arg != timer_gen:
                continue  # a timer that was restarted or stopped since
            timer_on = False
            if snd_una < snd_nxt:
                queue_rtx(snd_una, front=True)
                in_recovery = True
                recover = snd_nxt
                dup = 0
                rto_cur = min(2 * rto_cur, RTO_MAX_S)
                start_timer(t)
                # start_timer used the doubled value: RFC 6298 (5.5) backs off before (5.6)
            try_send(t)
        else:  # _READY
            avail += m
            try_send(t)

    server_free = 0.0
    latency = np.zeros(n_frames)
    for i in range(n_frames):
        server_free = max(delivered[i], server_free) + server_s
        latency[i] = server_free - capture[i]
    return latency, np.zeros(n_frames, dtype=bool), capture, retransmissions


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
) -> SimResult:
    """Send ``n_frames`` frames of ``frame_bytes`` over ``link`` and time each one.

    ``fps=None`` is closed-loop (one frame in flight, no queueing); otherwise frames are captured
    every ``1/fps`` s and queue at the device, the link and the server when a stage is slower
    than the camera. ``window`` (TCP segments in flight, ``None`` = unlimited) and ``ack_loss``
    (Bernoulli per ACK) are extensions with defaults that reproduce the fixed-setting model.
    Same arguments → identical result.
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
    sizes = packet_sizes(int(frame_bytes), link.mtu, p, payload)
    rng = np.random.default_rng(seed)
    device_s, server_s = float(device_s), float(server_s)
    if p == "udp":
        lat, lost, cap, retx = _simulate_udp(sizes, link, n_frames, fps, device_s, server_s, rng)
    else:
        lat, lost, cap, retx = _simulate_tcp(
            sizes,
            link,
            n_frames,
            fps,
            device_s,
            server_s,
            rng,
            float(rto_s),
            int(dupacks),
            window,
            float(ack_loss),
        )
    fmax = fps_max(frame_bytes, link, p, device_s=device_s, server_s=server_s, payload=payload)
    return _finish(lat, lost, cap, len(sizes), sum(sizes), fmax, retx)
