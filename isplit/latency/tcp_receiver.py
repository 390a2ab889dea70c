"""The receiving end of the TCP model (:mod:`.tcp`): in-order delivery to the application, the
SACK blocks and timestamp echo each ACK carries, and when an ACK is sent.

ACK policy, as Linux's ``__tcp_ack_snd_check``: every second in-order full segment is ACKed at
once; out-of-order data and data that fills (part of) a hole are ACKed at once (with SACK
blocks: the segment and the two most recent ones above the cumulative point); a duplicate at once
(a DSACK); without an answer, the end of a frame at once (with one, the answer carries the ACK,
:meth:`.tcp.Tcp.take_ack`); without delayed ACKs, every segment at once; anything else waits
for the delayed-ACK timer (40 ms, TCP_DELACK_MIN). The timestamp echoed is that of the oldest
segment the ACK covers (RFC 7323), so delayed ACKs lengthen the sender's RTT samples as in
Linux. At the start of the stream the first ``quick`` segments are ACKed at once (Linux's
quick-ACK mode, :data:`.tcp.QUICK_ACKS`).
"""

from __future__ import annotations

from collections import deque

DELACK_S = 0.04  # TCP_DELACK_MIN


class Receiver:
    """State of the receiving socket over a stream of ``n_segments`` segments, ``m`` per
    frame."""

    def __init__(self, n_segments, m, delayed_ack, ack_frame_end=True, quick=0):
        self.m, self.delayed_ack, self.ack_frame_end = m, delayed_ack, ack_frame_end
        self.quick = quick  # segments still to be ACKed at once (quick-ACK mode at the start)
        self.got = bytearray(n_segments)
        self.rcv_nxt = 0
        self.frames = 0  # frames fully received
        self.recent_ooo: deque = deque(maxlen=3)  # the SACK blocks an ACK carries
        self.ooo = 0  # segments held above rcv_nxt
        self.pending = 0  # in-order segments not yet ACKed
        self.ts_recent = 0.0

    def arrive(self, seg: int, sent: float) -> tuple[bool, int, bool]:
        """Take one segment (``sent``: its transmission time, as its timestamp option carries
        it); returns whether to ACK now, how many frames it completed, and whether it was a
        duplicate."""
        immediate, completed, duplicate = not self.delayed_ack, 0, False
        if self.got[seg]:
            immediate = duplicate = True
        elif seg != self.rcv_nxt:
            self.got[seg] = 1
            self.ooo += 1
            self.recent_ooo.append(seg)
            immediate = True
        else:
            self.got[seg] = 1
            if self.pending == 0:
                self.ts_recent = sent
            start = self.rcv_nxt
            while self.rcv_nxt < len(self.got) and self.got[self.rcv_nxt]:
                self.rcv_nxt += 1
            if self.ooo:
                immediate = True
                self.ooo -= self.rcv_nxt - start - 1
            while self.rcv_nxt >= (self.frames + 1) * self.m and self.frames * self.m < len(
                self.got
            ):
                self.frames += 1
                completed += 1
                immediate |= self.ack_frame_end
            self.pending += 1
            immediate |= self.pending >= 2 or self.quick > 0
        if self.quick > 0:
            self.quick -= 1
        while self.recent_ooo and self.recent_ooo[0] < self.rcv_nxt:
            self.recent_ooo.popleft()
        return immediate, completed, duplicate

    def ack(self) -> tuple[int, tuple, float]:
        """The ACK to send now: cumulative point, SACK blocks, timestamp echo."""
        self.pending = 0
        return self.rcv_nxt, tuple(s for s in self.recent_ooo if s >= self.rcv_nxt), self.ts_recent
