"""The builtin simulator: a camera stream over a link, packet by packet, in pure Python.

Why this exists: Split-Et-Impera (SEI) decides the split from a packet-level simulation in SCNSL
(a SystemC library, docs/methods.md §5.1) that cannot be built here. This module simulates the
parts that shape a frame's latency (``heapq`` events, :mod:`.engine`; ``numpy`` seeded random
numbers), so that the result can be checked against closed forms, against ns-3 (:mod:`.ns3sim`,
on the same :class:`.link.Link` and :class:`.link.Stream`) and against real TCP/UDP
(``tools/lossy_validation.py``).

* **Frames**: frame ``i`` is captured at ``i / fps``, or, closed loop (``fps=None``), when frame
  ``i − 1``'s answer is back; the device computes one frame at a time (``device_s``, FIFO),
  hands it to the transport, the server computes one frame at a time (``server_s``, FIFO) and
  sends the answer (``answer_bytes``) back over the link. Frame latency = answer received −
  capture (with ``answer_bytes=0``: server done − capture).
* **The link**: :mod:`.mac` (a wire: full duplex, rate and delay each way) with its drop-tail
  queue and cross traffic; loss per data packet device → server (:mod:`.loss`, i.i.d. or
  Gilbert–Elliott) and ``reverse_loss`` for ACKs and answers.
* **TCP**: :mod:`.tcp` (behaviours ``linux``, ``rfc6675``, ``sei``); **UDP**: no retransmission,
  a frame with a lost packet (or a lost answer) is lost; a closed loop then moves on when its
  last packet would have arrived.

Statistics (:mod:`.stats`): p50/p95 stratified by whether one of a frame's packets was lost on
first transmission, with the exact weight of the clean stratum, and bootstrap intervals; UDP's
``frame_loss`` is the exact probability of losing a frame, ``frame_loss_sim`` the simulated
fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isplit.latency import loss as lossmod
from isplit.latency import mac, stats
from isplit.latency.engine import READY, TIMER, Events
from isplit.latency.link import Link, Stream, analytic_latency, clean_weight, fps_max, packets
from isplit.latency.tcp_behaviours import connection

HANDSHAKE_BYTES = 74  # a SYN with options, for the first RTT sample


@dataclass(frozen=True)
class SimResult:
    """``frame_latency_s``: one value per frame (NaN = lost); ``latency_s`` the delivered ones in
    frame order; ``lost``/``clean``: per frame (clean: none of its packets lost on first
    transmission). ``p50``/``p95`` (NaN when nothing was delivered) are the stratified
    estimates of :mod:`.stats` with intervals in ``percentiles``; ``frame_loss`` is the exact
    probability of losing a frame where known (UDP), else the simulated fraction;
    ``p_clean`` the weight of the clean stratum (NaN: not known, one stratum)."""

    frame_latency_s: np.ndarray
    lost: np.ndarray
    clean: np.ndarray
    capture_s: np.ndarray
    p50: float
    p95: float
    frame_loss: float
    frame_loss_sim: float
    p_clean: float
    fps_max: float
    packets_per_frame: int
    wire_bytes_per_frame: int
    percentiles: stats.Percentiles
    counts: dict = field(default_factory=dict)

    @property
    def latency_s(self) -> np.ndarray:
        return self.frame_latency_s[~self.lost]

    @property
    def retransmissions(self) -> int:
        return int(self.counts.get("retransmissions", 0))


def result(
    latency,
    capture,
    lost,
    clean,
    *,
    p_clean,
    frame_loss,
    fps_max,
    packets,
    wire_bytes,
    n_boot,
    seed,
    counts,
) -> SimResult:
    """A :class:`SimResult` from per-frame arrays (shared by both backends). ``p_clean``: the
    exact clean weight, or NaN to take plain sample percentiles (one stratum)."""
    lost = np.asarray(lost, dtype=bool) | ~np.isfinite(latency)
    ok = ~lost
    if np.isfinite(p_clean):
        lab, weights = np.asarray(clean)[ok].astype(int), {1: p_clean, 0: 1 - p_clean}
    else:
        lab, weights = np.ones(int(ok.sum()), int), {1: 1.0}
    pct = stats.stratified(np.asarray(latency)[ok], lab, weights, n_boot=n_boot, seed=seed)
    sim_loss = float(lost.mean())
    return SimResult(
        frame_latency_s=np.where(ok, latency, np.nan),
        lost=lost,
        clean=np.asarray(clean, dtype=bool),
        capture_s=np.asarray(capture, dtype=float),
        p50=pct.p50,
        p95=pct.p95,
        frame_loss=sim_loss if frame_loss is None else float(frame_loss),
        frame_loss_sim=sim_loss,
        p_clean=float(p_clean),
        fps_max=float(fps_max),
        packets_per_frame=int(packets),
        wire_bytes_per_frame=int(wire_bytes),
        percentiles=pct,
        counts=dict(counts),
    )


class Network:
    """One run: the stream over the link (module doc); :meth:`run` returns the frames' times."""

    def __init__(self, link: Link, stream: Stream, seed: int):
        self.link, self.s = link, stream
        ev = self.ev = Events()
        rng = np.random.default_rng(seed)
        self.model = link.loss_process()
        drops = lossmod.PacketLoss(self.model, rng)
        rev = lossmod.LossModel(link.reverse_loss)
        reverse = lossmod.PacketLoss(rev, rng) if link.reverse_loss else None
        self.up, self.down = mac.channels(ev, link, drops, reverse, seed, stream.protocol)
        n = stream.n_frames
        self.sizes = packets(link, stream)
        self.capture = np.zeros(n)
        self.done = np.full(n, np.nan)
        self.dirty = np.zeros(n, dtype=bool)
        self.answer_lost = np.zeros(n, dtype=bool)
        self.lost = np.zeros(n, dtype=bool)
        self.server_free, self.next_rx, self.finished = 0.0, 0, 0
        self.cross = None
        if link.cross_traffic:
            self.cross = mac.CrossTraffic(
                ev,
                self.up,
                link.cross_traffic,
                link.bandwidth_bps,
                link.mtu,
                np.random.default_rng([seed, 1]),
                -mac.warmup_s(link),
            )
        self.tcp = None
        if stream.protocol == "tcp":
            opts = stream.tcp.resolved()
            r0 = 2 * link.delay_s + 2 * 8 * HANDSHAKE_BYTES / link.bandwidth_bps
            answers = stream.answer_bytes > 0
            self.tcp = connection(self, ev, self.sizes, n, opts, r0, answers=answers)
            self.up.on_free = self.tcp.on_room
            self.tsq = {"linux": mac.tsq_packets(link, max(self.sizes)), "sei": 1}.get(
                opts.behaviour, np.inf
            )
        else:
            self.remaining = np.full(n, len(self.sizes))

    # ------------------------------------------------------------------ transport ↔ link
    def room(self) -> bool:
        return self.up.own < self.tsq

    def send_segment(self, t, arg, nbytes):
        self.up.send(t, nbytes, self.tcp.arrive, arg, self.tcp.lost)

    def send_ack(self, t, ack):
        self.down.send(t, self.s.ack_packet(self.link.ip_header), self.tcp.on_ack, ack)

    def _ready(self, t, i):
        if self.tcp is not None:
            self.tcp.add_frame(t)
            return
        for k, size in enumerate(self.sizes):
            self.up.send(t, size, self._udp_arrive, (i, k), self._udp_lost)

    def _udp_arrive(self, t, x):
        i = x[0]
        self.remaining[i] -= 1
        if self.remaining[i] == 0:
            if self.lost[i]:
                self._given_up(t, i)
            else:
                self.frame_received(t, i)

    def _udp_lost(self, t, x, final):
        i = x[0]
        self.dirty[i] = True
        if final:
            self.lost[i] = True
            self.remaining[i] -= 1
            if self.remaining[i] == 0:
                self._given_up(t + self.link.delay_s, i)

    # ------------------------------------------------------------------ server and answer
    def frame_received(self, t, i=None):
        if i is None:  # TCP delivers in order
            i, self.next_rx = self.next_rx, self.next_rx + 1
        self.server_free = max(t, self.server_free) + self.s.server_s
        self.ev.at(self.server_free, TIMER, self._served, i)

    def _served(self, t, i):
        size = self.s.answer_packet(self.link.ip_header)
        if not size:
            self._finish(t, i)
            return
        ack = self.tcp.take_ack() if self.tcp is not None else None
        self.down.send(t, size, self._answer_back, (i, ack), self._answer_lost)

    def _answer_back(self, t, x):
        i, ack = x
        if ack is not None:
            self.tcp.on_ack(t, ack)
        self._finish(t, i)

    def _answer_lost(self, t, x, final):
        i = x[0]
        self.answer_lost[i] = True
        if not final:  # the MAC sends it again itself; answering twice would start i + 1 twice
            return
        if self.tcp is not None:  # the server's TCP sends it again after its RTO
            self.ev.at(t + self.tcp.rto, TIMER, self._served, i)
            return
        self.lost[i] = True
        self._given_up(t + self.link.delay_s, i)

    def _finish(self, t, i):
        self.done[i] = t
        self._next(t, i)

    def _given_up(self, t, i):
        self._next(t, i)

    def _next(self, t, i):
        self.finished += 1
        if self.finished == self.s.n_frames:  # other flows end with the stream
            if self.cross is not None:
                self.cross.stop()
            if hasattr(self.up, "stop"):  # a shared channel's saturated stations
                self.up.stop()
        if not self.s.fps and i + 1 < self.s.n_frames:
            self.capture[i + 1] = t
            self.ev.at(t + self.s.device_s, READY, self._ready, i + 1)

    # ------------------------------------------------------------------ run
    def run(self) -> Network:
        s = self.s
        if s.fps:
            device_free = 0.0
            for i in range(s.n_frames):
                self.capture[i] = i / s.fps
                device_free = max(self.capture[i], device_free) + s.device_s
                self.ev.at(device_free, READY, self._ready, i)
        else:
            self.ev.at(s.device_s, READY, self._ready, 0)
        self.ev.run()
        if self.tcp is not None:
            self.dirty = self.tcp.dirty
        self.dirty |= self.answer_lost
        return self

    def counts(self) -> dict:
        return self.tcp.counts if self.tcp is not None else {"retransmissions": 0}


def simulate(link: Link, stream: Stream, *, seed: int = 0, n_boot: int = 200) -> SimResult:
    """Send ``stream`` over ``link`` and time every frame (module doc). Same arguments →
    identical result."""
    net = Network(link, stream, seed).run()
    p_clean = clean_weight(link, stream)
    return result(
        net.done - net.capture,
        net.capture,
        net.lost,
        ~net.dirty,
        p_clean=p_clean,
        frame_loss=1 - p_clean if stream.protocol == "udp" and link.medium == "wire" else None,
        fps_max=fps_max(link, stream),
        packets=len(net.sizes),
        wire_bytes=sum(net.sizes) + link.link_header * len(net.sizes),
        n_boot=n_boot,
        seed=seed,
        counts=net.counts(),
    )


def zero_load_latency(link: Link, stream: Stream) -> float:
    """A frame's latency on an idle link without loss: the closed form on a wire, one access
    per direction without backoff on a wireless medium (:func:`.mac.zero_load_s`)."""
    if link.medium == "wire":
        return analytic_latency(link, stream)
    up = mac.zero_load_s(link, packets(link, stream), stream.protocol)
    answer = [stream.answer_packet(link.ip_header)]
    back = mac.zero_load_s(link, answer, stream.protocol) if stream.answer_bytes else 0.0
    return stream.device_s + up + stream.server_s + back
