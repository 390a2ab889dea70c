"""The link's media in the builtin simulator (:mod:`.netsim`): how a packet occupies a
transmitter, queues, and is lost.

Every medium is a *channel* with one FIFO per transmitter. ``send`` queues a packet (a drop-tail
queue drops it when ``limit`` packets wait); the transmitter serves the head of its queue, the
packet arrives ``delay`` after its last bit or is lost (the loss process draws once per
transmission attempt). Other flows (``cross_traffic``: a share of the uplink's rate as Poisson
arrivals of MTU-sized packets) enter the same queue; their packets are never counted.

* :class:`Wire` (medium ``wire``): full duplex, one transmitter per direction, a packet takes
  ``(IP bytes + link_header) · 8 / rate``; a lost packet is lost for IP.

The wireless media (:mod:`.mac_wifi`, :mod:`.mac_lte`, :mod:`.mac_lowpan`) have a MAC between the
queue and the air: framing, channel access, link-layer retransmissions.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from isplit.latency.engine import ACK, ARRIVE, LINK

WARMUP_PACKETS = 200  # cross traffic runs this many of its packets' times before the stream


class Wire:
    """One direction of a wire: a FIFO in front of a transmitter of ``rate`` b/s.

    ``send(t, nbytes, on_arrive, arg, on_lost)``: ``on_arrive(t, arg)`` when it arrives,
    ``on_lost(t, arg, final)`` when a transmission is lost (``final``: no link-layer retry
    follows) or the queue is full; ``on_free(t)`` is called when one of the stream's packets
    has left. ``own`` counts the stream's packets queued or being sent."""

    def __init__(self, events, rate, delay, header, loss, *, limit=None, prio=ARRIVE):
        self.ev, self.rate, self.delay, self.header = events, rate, delay, header
        self.loss, self.limit, self.prio = loss, limit, prio
        self.q: deque = deque()
        self.busy = False
        self.own = 0
        self.on_free = None

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        if self.limit is not None and len(self.q) >= self.limit:
            if on_lost is not None:
                on_lost(t, arg, True)
            return
        if on_arrive is not None:
            self.own += 1
        self.q.append((nbytes, on_arrive, arg, on_lost))
        if not self.busy:
            self._start(t)

    def _start(self, t):
        pkt = self.q.popleft()
        self.busy = True
        lost = pkt[1] is not None and self.loss is not None and self.loss.lost()
        self.ev.at(t + 8 * (pkt[0] + self.header) / self.rate, LINK, self._done, (pkt, lost))

    def _done(self, t, x):
        (_, on_arrive, arg, on_lost), lost = x
        self.busy = False
        if on_arrive is not None:
            self.own -= 1
            if not lost:
                self.ev.at(t + self.delay, self.prio, on_arrive, arg)
            elif on_lost is not None:
                on_lost(t, arg, True)
        if self.q:
            self._start(t)
        if on_arrive is not None and self.on_free is not None:
            self.on_free(t)

    def frame_s(self, sizes) -> float:
        """Time to send ``sizes`` (IP bytes) back to back on an idle transmitter."""
        return 8 * sum(s + self.header for s in sizes) / self.rate


class CrossTraffic:
    """Other flows' packets: Poisson arrivals of ``nbytes`` packets taking ``share`` of a
    ``rate`` b/s transmitter, from ``start`` (before the stream, so its queue is in steady
    state) until ``stop`` is called."""

    def __init__(self, events, port, share, rate, nbytes, rng, start):
        self.ev, self.port, self.nbytes, self.rng = events, port, nbytes, rng
        self.mean_gap = 8 * nbytes / (share * rate)
        self.running = True
        self.ev.at(start + rng.exponential(self.mean_gap), LINK, self._arrive)

    def _arrive(self, t, _=None):
        if not self.running:
            return
        self.port.send(t, self.nbytes)
        self.ev.at(t + self.rng.exponential(self.mean_gap), LINK, self._arrive)

    def stop(self):
        self.running = False


def warmup_s(link) -> float:
    """How long cross traffic runs before the first frame."""
    return WARMUP_PACKETS * 8 * (link.mtu + link.link_header) / link.bandwidth_bps


def tsq_packets(link, max_packet: int) -> float:
    """Linux's TCP small queues: the connection's packets that may wait at the link, at least 2
    or 1 ms of the link's rate (4 ms on Wi-Fi, whose drivers allow more for aggregation)."""
    t = 4e-3 if link.medium.startswith("wifi") else 1e-3
    return max(2, math.floor(link.bandwidth_bps * t / 8 / max_packet))


def channels(events, link, loss, reverse, seed, protocol="tcp"):
    """The two directions of the link's medium as ports (``send``, ``own``, ``on_free``)."""
    if link.medium == "wire":
        up = Wire(events, link.bandwidth_bps, link.delay_s, link.link_header, loss,
                  limit=link.queue)  # fmt: skip
        down = Wire(events, link.bandwidth_bps, link.delay_s, link.link_header, reverse, prio=ACK)
        return up, down
    if link.medium.startswith("wifi"):
        from isplit.latency import mac_wifi

        wifi = mac_wifi.Wifi(
            events, mac_wifi.PHYS[link.medium], link.delay_s, loss, reverse,
            np.random.default_rng([seed, 2]), link.contenders, limit=link.queue,
        )  # fmt: skip
        return mac_wifi.Uplink(wifi), mac_wifi.Downlink(wifi)
    if link.medium == "lte":
        from isplit.latency import mac_lte

        return mac_lte.channels(events, link, loss, reverse)
    if link.medium == "ieee802154":
        from isplit.latency import mac_lowpan

        radio = mac_lowpan.LowPan(events, protocol, loss, reverse, np.random.default_rng([seed, 2]))
        return mac_lowpan.Port(radio, radio.dev), mac_lowpan.Port(radio, radio.srv)
    raise ValueError(f"medium {link.medium!r}: no builtin model")


def zero_load_s(link, ip_sizes, protocol="tcp") -> float:
    """One direction's time for these packets on an idle medium (arrival at the far end)."""
    if link.medium == "wire":
        return 8 * sum(s + link.link_header for s in ip_sizes) / link.bandwidth_bps + link.delay_s
    if link.medium.startswith("wifi"):
        from isplit.latency import mac_wifi

        return mac_wifi.zero_load_s(mac_wifi.PHYS[link.medium], ip_sizes, link.delay_s)
    if link.medium == "lte":
        from isplit.latency import mac_lte

        return mac_lte.zero_load_s(ip_sizes, mac_lte.UL_LAG_TTI, link.delay_s)
    from isplit.latency import mac_lowpan

    return mac_lowpan.zero_load_s(ip_sizes, protocol) + link.delay_s
