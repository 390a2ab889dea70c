"""The builtin TCP model: one connection (sender and receiver) whose behaviour is named by
``tcp:`` — ``linux``, ``rfc6675`` or ``sei`` — each a set of mechanisms taken from a real stack
(:mod:`.tcp_behaviours` says which, and where each stack does it).

This module holds what every behaviour shares, in :class:`Tcp`: the stream's segments (segment
numbers run over the whole stream, frame ``i`` = segments ``i·m … i·m + m − 1``), the sending
path (lost segments first, then new data, within the congestion window, the receiver's
``window`` and, through the network, the link's queue), RTT estimation from echoed timestamps
(RFC 6298), the single retransmission timer slot, the retransmission timeout, and the receiving
end (:mod:`.tcp_receiver`) with its delayed ACKs; the scoreboard is a :class:`.tcp_loss.Scoreboard`
and the window's growth a :class:`.congestion.Cubic`. A behaviour (a subclass) decides how ACKs
are read, how losses are detected and how the window is cut.
"""

from __future__ import annotations

import math

import numpy as np

from isplit.latency.congestion import Cubic, restart_window
from isplit.latency.engine import DELACK, TIMER
from isplit.latency.tcp_loss import Scoreboard
from isplit.latency.tcp_receiver import DELACK_S, Receiver

OPEN, CWR, RECOVERY, LOSS = range(4)  # congestion states (tcp_set_ca_state)
RTO, PTO, REO = range(3)  # what the single retransmission timer slot holds
JIFFY_S = 1.0 / 250  # Linux's timers run in jiffies (CONFIG_HZ=250)


class Tcp:
    """One connection over a stream of ``n_frames`` frames of ``len(seg_bytes)`` segments.

    ``net`` carries packets (:class:`.netsim.Network`): ``send_segment``, ``send_ack``,
    ``room`` (whether the link takes another of the sender's packets now) and
    ``frame_received``; it calls back :meth:`add_frame`, :meth:`on_room`, :meth:`arrive`,
    :meth:`lost` and :meth:`on_ack`. ``opts``: resolved :class:`.link.TcpOptions`; ``r0``: the
    handshake's RTT sample. Subclasses set the class attributes below."""

    kind = ""
    cc_class = Cubic
    sack = True  # reads SACK blocks
    rto_max_s = 60.0
    quick_acks = 0  # segments the receiver ACKs at once when data starts

    def __init__(self, net, events, seg_bytes, n_frames, opts, r0, *, answers: bool):
        o = opts
        self.net, self.ev, self.o = net, events, o
        self.m, self.n_frames = len(seg_bytes), n_frames
        self.seg_bytes = seg_bytes
        n = self.m * n_frames
        self.board = Scoreboard(n, o.dupacks, r0)
        self.dirty = np.zeros(n_frames, dtype=bool)
        self.counts = {"retransmissions": 0, "rto": 0, "tlp": 0, "recoveries": 0}
        self.avail = self.snd_una = self.snd_nxt = 0
        self.probe = -1  # a segment to send at once, whatever the window (a probe)
        self.cwnd = float(o.initial_window) if self.sack else math.inf
        self.ssthresh = math.inf
        self.cc = self.cc_class()
        self.state, self.high_seq, self.dup = OPEN, 0, 0
        self.prior_cwnd = self.prr_delivered = self.prr_out = 0
        self.srtt, self.rttvar, self.min_rtt = r0, r0 / 2, r0
        self.rto = self.rto_value()
        self.timer_kind, self.timer_gen = None, 0
        self.last_send = 0.0
        self.max_out = self.usage_seq = 0
        self.cwnd_limited = False
        # the receiving end; with an answer, the end of a frame is ACKed by the answer
        self.rx = Receiver(
            n, self.m, bool(o.delayed_ack), ack_frame_end=not answers, quick=self.quick_acks
        )
        self.delack_gen = 0

    # ------------------------------------------------------------------ state
    def out(self) -> int:
        return self.snd_nxt - self.snd_una

    def in_flight(self) -> int:
        b = self.board
        return self.out() - (b.sacked_out + b.lost_out) + b.retrans_out

    def rto_value(self) -> float:
        """The retransmission timeout from the RTT estimate (no backoff)."""
        raise NotImplementedError

    def after(self, d: float) -> float:
        """A timer's duration as the stack rounds it."""
        return d

    def arm(self, kind, t, after):
        self.timer_gen += 1
        self.timer_kind = kind
        self.ev.at(t + self.after(after), TIMER, self.on_timer, self.timer_gen)

    def clear_timer(self):
        self.timer_gen += 1
        self.timer_kind = None

    def rtt_sample(self, r: float) -> None:
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
        self.srtt = 0.875 * self.srtt + 0.125 * r
        self.min_rtt = min(self.min_rtt, r)
        self.rto = self.rto_value()  # a valid sample also drops the backoff

    # ------------------------------------------------------------------ sending
    def add_frame(self, t, _=None):
        self.avail += self.m
        self.try_send(t)

    def on_room(self, t, _=None):
        self.try_send(t)

    def try_send(self, t):
        while self.net.room():
            seg = self._next_segment()
            if seg is None:
                return
            self.transmit(t, *seg)

    def _next_segment(self):
        if self.probe >= 0:
            seg, self.probe = self.probe, -1
            return seg, True
        s = self.board.next_lost(self.snd_una)
        if s >= 0:
            if self.sack and not self.window_room():
                return None
            return s, True
        if self.snd_nxt >= self.avail:
            return None
        if self.o.window is not None and self.out() >= self.o.window:
            return None
        if not self.window_room():
            self.cwnd_limited = True
            return None
        return self.snd_nxt, False

    def window_room(self) -> bool:
        """Whether the congestion window lets one more segment go."""
        return self.in_flight() < self.cwnd

    def transmit(self, t, seg, retx):
        o = self.o
        prior_out = self.out()
        if not retx:
            if self.sack and self.in_flight() == 0:
                self.cc.tx_start(t - self.last_send, t)
            if prior_out == 0 and o.slow_start_after_idle and t - self.last_send > self.rto:
                self.cwnd = restart_window(
                    self.cwnd, o.initial_window, t - self.last_send, self.rto
                )
            self.snd_nxt += 1
        else:
            self.counts["retransmissions"] += 1
        if self.state == RECOVERY:
            self.prr_out += 1
        self.board.sent(seg, t, retx)
        self.last_send = t
        self.net.send_segment(t, (seg, t, retx), self.seg_bytes[seg % self.m])
        if self.sack and (self.out() > self.max_out or self.snd_una >= self.usage_seq):
            # tcp_cwnd_validate: was the window the limit of this flight?
            self.max_out, self.usage_seq = self.out(), self.snd_nxt
            self.cwnd_limited = self.in_flight() >= self.cwnd
        self.sent(t, seg, retx, prior_out)

    def sent(self, t, seg, retx, prior_out):
        """Timers after a transmission: RFC 6298 (5.1), start the timer unless it runs."""
        if self.timer_kind is None:
            self.arm(RTO, t, self.rto)

    def lost(self, t, arg, final):
        """The link lost a transmission (``arg``: segment, time sent, retransmission?)."""
        seg, _, retx = arg
        if not retx:
            self.dirty[seg // self.m] = True

    # ------------------------------------------------------------------ window
    def cwnd_limited_now(self) -> bool:
        if self.cwnd_limited:
            return True
        return self.cwnd < self.ssthresh and self.cwnd < 2 * self.max_out

    def grow(self, t, acked: int) -> None:
        """Slow start, then CUBIC, by ``acked`` segments, while the window is the limit."""
        if not acked or not self.cwnd_limited_now():
            return
        if self.cwnd < self.ssthresh:
            step = min(acked, max(self.ssthresh - self.cwnd, 0))
            self.cwnd += step
            acked -= step
        if acked and self.cwnd >= self.ssthresh:
            self.cwnd = self.cc.avoid(self.cwnd, acked, t, self.min_rtt)

    # ------------------------------------------------------------------ ACKs and timers
    def on_ack(self, t, ack):
        self.read_ack(t, *ack)
        self.try_send(t)

    def read_ack(self, t, cum, sacks, echo):
        raise NotImplementedError

    def on_timer(self, t, gen):
        if gen != self.timer_gen:
            return
        kind, self.timer_kind = self.timer_kind, None
        if self.out() == 0:
            return
        self.expired(t, kind)

    def expired(self, t, kind):
        """The timer slot ran out (``kind``: :data:`RTO`, or a behaviour's own)."""
        self.counts["rto"] += 1
        self.rto = min(2 * self.rto, self.rto_max_s)
        if self.state in (OPEN, CWR):
            self.ssthresh = self.cc.ssthresh(self.cwnd)
        self.cc.reset()  # CUBIC forgets its epoch and maximum in the loss state
        self.board.mark_all_lost()
        self.state, self.high_seq = LOSS, self.snd_nxt
        self.cwnd = self.in_flight() + 1.0
        self.arm(RTO, t, self.rto)
        self.try_send(t)

    # ------------------------------------------------------------------ the receiving end
    def arrive(self, t, arg):
        seg, sent, _ = arg
        now, completed, duplicate = self.rx.arrive(seg, sent)
        self.arrived(seg, duplicate)
        for _ in range(completed):
            self.net.frame_received(t)
        if now:
            self.send_ack(t)
        elif self.rx.pending == 1:
            self.delack_gen += 1
            self.ev.at(t + DELACK_S, DELACK, self._delack, self.delack_gen)

    def arrived(self, seg, duplicate) -> None:
        """What the sender learns from the receiver's view of a segment (a behaviour's)."""

    def send_ack(self, t):
        self.delack_gen += 1
        self.net.send_ack(t, self.rx.ack())

    def _delack(self, t, gen):
        if gen == self.delack_gen and self.rx.pending:
            self.send_ack(t)

    def take_ack(self):
        """The ACK an answer leaving the server now carries (``None``: nothing to ACK)."""
        if not self.rx.pending:
            return None
        self.delack_gen += 1
        return self.rx.ack()
