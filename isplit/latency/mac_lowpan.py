"""IEEE 802.15.4 with 6LoWPAN in the builtin simulator (medium ``ieee802154``): the device and
the server share one 2.4 GHz O-QPSK channel (250 kb/s, 32 µs per byte), as ns-3 3.44's LR-WPAN
and 6LoWPAN modules implement it (:mod:`.ns3_media` builds the same scene there).

* **6LoWPAN** (RFC 6282 as ns-3 compresses it, a context for the global prefix, short MAC
  addresses): IPv6 + UDP (48 bytes) become 10 bytes, IPv6 alone (40, before a TCP header) 6.
  A packet whose compressed form exceeds the MAC's 116 payload bytes is fragmented (RFC 4944):
  FRAG1 (4 bytes) carries the compressed header and a multiple of 8 bytes, each FRAGN (5 bytes)
  a multiple of 8 bytes (:func:`fragments`).
* **MAC** frames carry 11 bytes (frame control, sequence, PAN, two short addresses, FCS) in at
  most 127; the PHY adds 6 (preamble, SFD, length).
* **Unslotted CSMA/CA**: wait ``U{0 … 2^BE − 1}`` backoff periods of 320 µs (BE from 3 up to
  5), sense the channel for 128 µs (CCA), and if it is idle turn the radio around (192 µs) and
  send; if busy back off again (at most 4 times, then the frame is dropped). The receiver ACKs
  a data frame 192 µs after its end (an 11-byte frame); without an ACK 864 µs after the end the
  sender retries (at most 3 times). After an ACKed frame the sender waits 640 µs (LIFS) before
  the next.
* **Loss**: the link's loss process per transmission of each of the device's data frames (a
  lost frame gets no ACK, so the MAC retries it: loss becomes delay, and a packet is lost for
  IP only when a fragment exhausts its retries); frames sent at once by both sides collide.
"""

from __future__ import annotations

from collections import deque

from isplit.latency.engine import ACCESS, ACK, ARRIVE, LINK

BYTE_S = 32e-6
BACKOFF_S, CCA_S, TURNAROUND_S = 320e-6, 128e-6, 192e-6
ACK_WAIT_S = 864e-6  # macAckWaitDuration: 54 symbols
LIFS_S, SIFS_S, MAX_SIFS_FRAME = 640e-6, 192e-6, 18
PHY_HEADER, MAC_OVERHEAD, MAC_PAYLOAD = 6, 11, 116
ACK_FRAME = 5
MIN_BE, MAX_BE, MAX_BACKOFFS, MAX_RETRIES = 3, 5, 4, 3
FRAG1, FRAGN = 4, 5
COMPRESSED = {"udp": (48, 10), "tcp": (40, 6)}  # header bytes compressed → bytes on the air


def fragments(ip_bytes: int, protocol: str) -> list[int]:
    """MAC payload sizes of one IPv6 packet of ``ip_bytes`` (6LoWPAN, module doc)."""
    orig, comp = COMPRESSED[protocol]
    size = ip_bytes - orig + comp
    if size <= MAC_PAYLOAD:
        return [size]
    first = (MAC_PAYLOAD - FRAG1 - comp) // 8 * 8
    out = [FRAG1 + comp + first]
    left = ip_bytes - orig - first
    step = (MAC_PAYLOAD - FRAGN) // 8 * 8
    while left > 0:
        n = min(step, left)
        out.append(FRAGN + n)
        left -= n
    return out


def airtime_s(payload: int) -> float:
    return (PHY_HEADER + MAC_OVERHEAD + payload) * BYTE_S


class Radio:
    """One side of the channel: its queue of fragments and CSMA/CA state."""

    def __init__(self, name):
        self.name = name
        self.q: deque = deque()  # [payload, packet]
        self.active = False
        self.own = 0
        self.busy_until = 0.0  # sending an ACK: no CSMA before it is out and the radio back


class LowPan:
    """The shared channel (module doc); ``loss``/``reverse``: the device's and the server's
    data frames' loss processes; ``rng``: backoff draws."""

    def __init__(self, events, protocol, loss, reverse, rng):
        self.ev, self.protocol, self.rng = events, protocol, rng
        self.loss, self.reverse = loss, reverse
        self.dev, self.srv = Radio("device"), Radio("server")
        self.on_air: list = []  # (start, end, sender) of transmissions in progress
        self.on_free = None

    def send(self, radio: Radio, t, nbytes, on_arrive, arg, on_lost, protocol):
        frags = fragments(nbytes, protocol)
        pkt = {"n": len(frags), "recv": 0, "left": len(frags), "lost": False,
               "fn": (on_arrive, arg, on_lost)}  # fmt: skip
        if on_arrive is not None and radio is self.dev:
            radio.own += 1
        for f in frags:
            radio.q.append([f, pkt, 0])
        if not radio.active:
            radio.active = True
            self.ev.at(max(t, radio.busy_until), ACCESS, self._csma, (radio, 0, MIN_BE))

    def _busy(self, t0, t1) -> bool:
        return any(s < t1 and e > t0 for s, e, _ in self.on_air)

    def _csma(self, t, x):
        radio, nb, be = x
        wait = int(self.rng.integers(0, 2**be)) * BACKOFF_S
        self.ev.at(t + wait + CCA_S, LINK, self._cca, (radio, nb, be))

    def _cca(self, t, x):
        radio, nb, be = x
        if self._busy(t - CCA_S, t):
            if nb + 1 > MAX_BACKOFFS:  # channel access failure: the frame is dropped
                self._done(t, radio, ok=False)
                return
            self._csma(t, (radio, nb + 1, min(be + 1, MAX_BE)))
            return
        start = t + TURNAROUND_S
        end = start + airtime_s(radio.q[0][0])
        self.on_air.append((start, end, radio))
        self.ev.at(end, LINK, self._tx_end, (radio, start, end))

    def _tx_end(self, t, x):
        radio, start, end = x
        self.on_air = [a for a in self.on_air if a[1] > t or a[2] is not radio]
        collided = any(s < end and e > start and r is not radio for s, e, r in self.on_air)
        payload, pkt, tries = radio.q[0]
        on_arrive, arg, on_lost = pkt["fn"]
        loss = self.loss if radio is self.dev else self.reverse
        lost = collided or (on_arrive is not None and loss is not None and loss.lost())
        if not lost:
            pkt["recv"] += 1
            if pkt["recv"] == pkt["n"] and on_arrive is not None:  # reassembled at the RX end
                self.ev.at(t, ARRIVE if radio is self.dev else ACK, on_arrive, arg)
            ack_start = t + TURNAROUND_S
            ack_end = ack_start + (PHY_HEADER + ACK_FRAME) * BYTE_S
            self.on_air.append((ack_start, ack_end, None))
            peer = self.srv if radio is self.dev else self.dev
            peer.busy_until = ack_end + TURNAROUND_S
            self.ev.at(ack_end, LINK, self._acked, radio)
            return
        final = tries + 1 > MAX_RETRIES
        if on_lost is not None:
            on_lost(t, arg, final and not pkt["lost"])
        if final:
            pkt["lost"] = True
            self.ev.at(t + ACK_WAIT_S, LINK, self._give_up, radio)
            return
        radio.q[0][2] = tries + 1
        self.ev.at(max(t + ACK_WAIT_S, radio.busy_until), ACCESS, self._csma, (radio, 0, MIN_BE))

    def _give_up(self, t, radio):
        self._done(t, radio, ok=False)

    def _acked(self, t, radio):
        self.on_air = [a for a in self.on_air if a[1] > t]
        self._done(t, radio, ok=True)

    def _done(self, t, radio, ok):
        payload, pkt, _ = radio.q.popleft()
        pkt["left"] -= 1
        if not ok and not pkt["lost"]:  # channel access failure: the packet is lost
            pkt["lost"] = True
            if pkt["fn"][2] is not None:
                pkt["fn"][2](t, pkt["fn"][1], True)
        if pkt["left"] == 0 and pkt["fn"][0] is not None and radio is self.dev:
            radio.own -= 1
            if self.on_free is not None:
                self.ev.at(t, LINK, lambda tt, _: self.on_free(tt))
        gap = LIFS_S if MAC_OVERHEAD + payload > MAX_SIFS_FRAME else SIFS_S
        if radio.q:
            start = max(t + (gap if ok else 0.0), radio.busy_until)
            self.ev.at(start, ACCESS, self._csma, (radio, 0, MIN_BE))
        else:
            radio.active = False


class Port:
    """One direction (device → server or back) as :mod:`.netsim` sees it."""

    def __init__(self, lowpan: LowPan, radio: Radio):
        self.lowpan, self.radio = lowpan, radio

    @property
    def own(self) -> int:
        return self.radio.own

    @property
    def on_free(self):
        return self.lowpan.on_free

    @on_free.setter
    def on_free(self, fn):
        self.lowpan.on_free = fn

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        self.lowpan.send(self.radio, t, nbytes, on_arrive, arg, on_lost, self.lowpan.protocol)


def zero_load_s(ip_sizes, protocol) -> float:
    """A packet train through an idle channel with the mean backoff (3.5 periods) per frame."""
    total = 0.0
    for s in ip_sizes:
        for f in fragments(s, protocol):
            access = 3.5 * BACKOFF_S + CCA_S + TURNAROUND_S
            total += access + airtime_s(f) + TURNAROUND_S + (PHY_HEADER + ACK_FRAME) * BYTE_S
            total += LIFS_S
    return total
