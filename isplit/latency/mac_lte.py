"""The LTE uplink and downlink in the builtin simulator (medium ``lte``): transmission time
intervals of 1 ms, transport blocks of a fixed size, and the scheduling pipeline of ns-3 3.44's
LTE module in the scene :mod:`.ns3_media` builds (10 MHz, the UE 50 m from the eNB, the
proportional-fair scheduler, RLC unacknowledged mode, an EPC with an idle core).

* **Transport blocks**: 50 resource blocks at MCS 28 (I_TBS 26) carry 36,696 bits per TTI
  (3GPP TS 36.213 Table 7.1.7.2.1-1) each way; an IP packet takes its bytes + 5 bytes of
  PDCP/RLC/MAC headers, and RLC segments packets across blocks.
* **Pipeline**: what the UE has queued at the start of a TTI goes out in that and the
  following TTIs; a packet whose last byte went in TTI ``k`` reaches the core at ``k + 12`` ms
  uplink (scheduling request, grant, HARQ timing: measured in ns-3 at zero load) and the UE at
  ``k + 3`` ms downlink; the server is the profile's ``delay`` behind the core.
* **Loss**: the link's loss process on the device's IP packets after the radio (HARQ and RLC
  hide most radio loss: the residual loss), as in the ns-3 scene.
"""

from __future__ import annotations

import math
from collections import deque

from isplit.latency.engine import ACK, ARRIVE, LINK

TTI_S = 1e-3
TBS_BYTES = 36696 // 8
HEADERS = 5
UL_LAG_TTI, DL_LAG_TTI = 12, 3


class Direction:
    """One direction: a FIFO drained by one transport block per TTI."""

    def __init__(self, events, lag, delay, loss, prio):
        self.ev, self.lag, self.delay, self.loss, self.prio = events, lag, delay, loss, prio
        self.q: deque = deque()  # [bytes left, nbytes, on_arrive, arg, on_lost]
        self.next_tti = -1  # the next TTI already scheduled, or -1
        self.own = 0
        self.on_free = None

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        self.q.append([nbytes + HEADERS, nbytes, on_arrive, arg, on_lost])
        if on_arrive is not None:
            self.own += 1
        if self.next_tti < 0:
            k = math.ceil(t / TTI_S - 1e-9)
            self.next_tti = k
            self.ev.at(k * TTI_S, LINK, self._tti, k)

    def _tti(self, t, k):
        room = TBS_BYTES
        while self.q and room > 0:
            pkt = self.q[0]
            take = min(room, pkt[0])
            pkt[0] -= take
            room -= take
            if pkt[0] > 0:
                break
            self.q.popleft()
            self._deliver(t, k, pkt)
        if self.q:
            self.next_tti = k + 1
            self.ev.at((k + 1) * TTI_S, LINK, self._tti, k + 1)
        else:
            self.next_tti = -1

    def _deliver(self, t, k, pkt):
        _, nbytes, on_arrive, arg, on_lost = pkt
        if on_arrive is None:
            return
        self.own -= 1
        if self.on_free is not None:
            self.on_free(t)
        if self.loss is not None and self.loss.lost():
            if on_lost is not None:
                on_lost(t, arg, True)
            return
        self.ev.at((k + self.lag) * TTI_S + self.delay, self.prio, on_arrive, arg)


def channels(events, link, loss, reverse):
    up = Direction(events, UL_LAG_TTI, link.delay_s, loss, ARRIVE)
    down = Direction(events, DL_LAG_TTI, 0.0, reverse, ACK)
    return up, _Behind(events, down, link.delay_s)


class _Behind:
    """Server → UE: the wire behind the core first, then the eNB's downlink."""

    def __init__(self, events, down, delay):
        self.ev, self.down, self.delay = events, down, delay

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        self.ev.at(t + self.delay, ARRIVE, self._at_enb, (nbytes, on_arrive, arg, on_lost))

    def _at_enb(self, t, x):
        self.down.send(t, *x)


def zero_load_s(ip_sizes, lag, delay) -> float:
    """A burst from a TTI boundary: its blocks, the pipeline, the wire."""
    blocks = math.ceil(sum(s + HEADERS for s in ip_sizes) / TBS_BYTES)
    return (blocks - 1 + lag) * TTI_S + delay
