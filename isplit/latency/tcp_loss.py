"""The TCP sender's scoreboard (:mod:`.tcp`): what it knows of every segment it has sent —
delivered, SACKed, marked lost, retransmitted — and the rules that mark segments lost.

Two loss-marking rules, one per behaviour that has SACK:

* **RACK**, RFC 8985 (Linux's ``tcp_rack_detect_loss``; ``tcp: linux``): a segment is lost once a
  segment *sent after it* has been delivered and it is still unacknowledged ``rack_rtt +
  reo_wnd`` after its own transmission. ``reo_wnd`` (chosen by the sender: ``min(min_rtt / 4,
  srtt)``, 0 in recovery or once ``dupthresh`` segments above the hole are SACKed) tolerates
  reordering. Lost retransmissions are found the same way; losses with time still to run return
  the wait for the reordering timer.
* **RFC 6675** ``IsLost`` (ns-3's ``TcpTxBuffer::IsLost``; ``tcp: rfc6675``): a segment is lost
  once ``dupthresh`` segments above it are SACKed. A lost retransmission is found only by the
  retransmission timeout.

Without SACK (``tcp: sei``) the sender marks segments lost itself (duplicate ACKs, partial ACKs,
timeouts) with :meth:`Scoreboard.mark_lost`.
"""

from __future__ import annotations

import heapq


class Scoreboard:
    """Segment states of one connection (segment numbers run over the whole stream)."""

    def __init__(self, n_segments: int, dupthresh: int, rack_rtt: float):
        n = n_segments
        self.dupthresh = dupthresh
        self.sacked, self.lost = bytearray(n), bytearray(n)
        self.retr, self.ever = bytearray(n), bytearray(n)  # retransmission in flight / ever
        self.xmit = [0.0] * n  # last transmission time
        self.tsorted: dict[int, None] = {}  # unacknowledged, oldest transmission first
        self.sacked_out = self.lost_out = self.retrans_out = 0
        self.rtx: list = []  # lost segments waiting for retransmission (a heap)
        self.rack_xmit, self.rack_seq, self.rack_rtt = -1.0, -1, rack_rtt
        self.highest_sack = -1

    def sent(self, seg: int, t: float, retx: bool) -> None:
        if retx:
            if not self.retr[seg]:
                self.retr[seg] = 1
                self.retrans_out += 1
            self.ever[seg] = 1
        self.xmit[seg] = t
        self.tsorted.pop(seg, None)
        self.tsorted[seg] = None

    def mark_lost(self, s: int) -> None:
        """Mark ``s`` lost (again, if its retransmission was lost) and queue it."""
        if self.retr[s]:
            self.retr[s] = 0
            self.retrans_out -= 1
        if not self.lost[s]:
            self.lost[s] = 1
            self.lost_out += 1
        heapq.heappush(self.rtx, s)

    def next_lost(self, snd_una: int) -> int:
        """The lowest segment waiting for retransmission (stale queue entries dropped), or -1."""
        rtx = self.rtx
        while rtx:
            s = rtx[0]
            if s < snd_una or not self.lost[s] or self.retr[s] or self.sacked[s]:
                heapq.heappop(rtx)
            else:
                return s
        return -1

    def acked(self, s: int) -> bool:
        """Forget cumulatively acknowledged ``s``; True when it was not SACKed before."""
        fresh = not self.sacked[s]
        if not fresh:
            self.sacked[s] = 0
            self.sacked_out -= 1
        self._clear(s)
        return fresh

    def sack(self, s: int) -> None:
        self.sacked[s] = 1
        self.sacked_out += 1
        self.highest_sack = max(self.highest_sack, s)
        self._clear(s)

    def _clear(self, s: int) -> None:
        if self.lost[s]:
            self.lost[s] = 0
            self.lost_out -= 1
        if self.retr[s]:
            self.retr[s] = 0
            self.retrans_out -= 1
        self.tsorted.pop(s, None)

    def mark_all_lost(self) -> None:
        """A retransmission timeout: every outstanding segment not SACKed is lost."""
        for s in list(self.tsorted):
            if not self.sacked[s]:
                self.mark_lost(s)

    # ------------------------------------------------------------------ RACK
    def rack_advance(self, t: float, s: int, min_rtt: float) -> None:
        """RACK's reference point: the most recently sent segment known delivered."""
        xs = self.xmit[s]
        rtt = t - xs
        if rtt < min_rtt and self.ever[s]:
            return  # may be the original's ACK: ambiguous
        self.rack_rtt = rtt
        if xs > self.rack_xmit or (xs == self.rack_xmit and s > self.rack_seq):
            self.rack_xmit, self.rack_seq = xs, s

    def rack_detect(self, t: float, reo_wnd: float) -> float:
        """Mark what RACK deems lost; the longest wait of a segment not yet due (0: none)."""
        if self.rack_xmit < 0:
            return 0.0
        wait = 0.0
        for s in self.tsorted:
            if self.lost[s] and not self.retr[s]:
                continue
            xs = self.xmit[s]
            if not (xs < self.rack_xmit or (xs == self.rack_xmit and s < self.rack_seq)):
                break
            remaining = self.rack_rtt + reo_wnd - (t - xs)
            if remaining <= 0:
                self.mark_lost(s)
            else:
                wait = max(wait, remaining)
        return wait

    # ------------------------------------------------------------------ RFC 6675
    def sack_detect(self, snd_una: int, snd_nxt: int) -> None:
        """Mark lost every segment with ``dupthresh`` SACKed segments above it."""
        if self.sacked_out < self.dupthresh:
            return
        above = 0
        for s in range(snd_nxt - 1, snd_una - 1, -1):
            if self.sacked[s]:
                above += 1
            elif above >= self.dupthresh and not self.lost[s] and not self.retr[s]:
                self.mark_lost(s)

    def unsacked_below_sack(self, snd_una: int) -> int:
        """RFC 6675 NextSeg rule (3): the first segment neither SACKed nor being retransmitted
        below the highest SACKed one (-1: none)."""
        for s in range(snd_una, self.highest_sack):
            if not self.sacked[s] and not self.retr[s]:
                return s
        return -1
