"""The builtin TCP model: one sender and receiver with named behaviours (``tcp:`` ``linux``,
``rfc6675``, ``sei``), each a set of mechanisms taken from a real stack.

``linux`` (the default) recovers from loss as Linux does (the kernel function in brackets):
SACK (``tcp_sacktag_write_queue``); RACK loss detection, RFC 8985 (``tcp_rack_detect_loss``,
:mod:`.tcp_loss`); the tail loss probe (``tcp_schedule_loss_probe``, ``tcp_send_loss_probe``):
in the open state a probe after ``PTO = 2·srtt + 2 jiffies`` (``+ 200 ms`` with one segment
out: the peer may delay its ACK), capped by the time left to the RTO, sending new data or the
last segment again, a repairing probe reducing cwnd (``tcp_process_tlp_ack``); recovery with
PRR, RFC 6937 (``tcp_cwnd_reduction``); RTO = srtt + max(4·rttvar, ``rto_s``) from RFC 6298
estimates on echoed timestamps, on expiry every outstanding segment lost, cwnd 1, the RTO
doubled up to 120 s (``tcp_retransmit_timer``); initial window 10 (RFC 6928), slow start, CUBIC
(:mod:`.congestion`) growing only while cwnd-limited (``tcp_is_cwnd_limited``), restart after an
idle period longer than the RTO (``tcp_slow_start_after_idle``); TCP small queues (at most
``max(2 packets, 1 ms of the link's rate)`` of the connection waiting at the link, 4 ms on Wi-Fi:
``tcp_small_queue_check``); timers in jiffies of 4 ms (CONFIG_HZ=250).

``rfc6675`` is ns-3 3.44's ``TcpSocketBase`` as :mod:`.ns3sim` configures it: SACK loss recovery
of RFC 6675 (a segment lost once ``dupacks`` segments above it are SACKed; :mod:`.tcp_loss`), PRR,
CUBIC, RTO = max(srtt + 4·rttvar, ``rto_s``) doubled up to 60 s, no RACK, no tail loss probe, no
restart after idle unless asked, no small queues (the window goes to the link's queue at once),
exact timers. It lets the simulator be held against ns-3 mechanism for mechanism.

``sei`` is SCNSL's TCP as Split-Et-Impera simulates it: no SACK, an ACK for every segment,
retransmission timer fixed at ``rto_s`` (doubled on each consecutive timeout up to 60 s, reset by
new data acknowledged), fast retransmit after ``dupacks`` duplicate ACKs with NewReno partial ACKs
(RFC 6582), no congestion window: ``window`` segments in flight (``None``: unlimited); a lost last
segment waits for the RTO.

The receiver (:mod:`.tcp_receiver`) ACKs every second segment, out-of-order data and duplicates at
once, otherwise after 40 ms (``delayed_ack``); the server's answer carries a pending ACK. Left out
(docs/latency.md): HyStart, F-RTO and undo, pacing, the receive window beyond ``window``,
quick-ACK mode at connection start, TSO/GSO.
"""

from __future__ import annotations

import math

import numpy as np

from isplit.latency.congestion import Cubic, prr_window, restart_window
from isplit.latency.engine import DELACK, TIMER
from isplit.latency.tcp_loss import Scoreboard
from isplit.latency.tcp_receiver import DELACK_S, Receiver

LINUX_HZ = 250
JIFFY_S = 1.0 / LINUX_HZ
TIMEOUT_MIN_S = 2 * JIFFY_S  # TCP_TIMEOUT_MIN
TCP_RTO_MIN_S = 0.2  # what the PTO adds for a single outstanding segment
RTO_MAX_S = {"linux": 120.0, "rfc6675": 60.0, "sei": 60.0}
OPEN, CWR, RECOVERY, LOSS = range(4)  # congestion states (tcp_set_ca_state)
RTO, PTO, REO = range(3)  # what the single retransmission timer slot holds


class Tcp:
    """One connection over a stream of ``n_frames`` frames of ``len(seg_bytes)`` segments.

    ``net`` carries packets (:class:`.netsim.Network`): ``send_segment``, ``send_ack``,
    ``room`` (whether the link takes another of the sender's packets now) and
    ``frame_received``; it calls back :meth:`add_frame`, :meth:`on_room`, :meth:`arrive`,
    :meth:`lost` and :meth:`on_ack`. ``opts``: resolved :class:`.link.TcpOptions`; ``r0``: the
    handshake's RTT sample."""

    def __init__(self, net, events, seg_bytes, n_frames, opts, r0, *, answers: bool):
        o = opts
        self.net, self.ev, self.o = net, events, o
        self.kind = o.behaviour
        self.sack, self.linux = self.kind != "sei", self.kind == "linux"
        self.m, self.n_frames = len(seg_bytes), n_frames
        self.seg_bytes = seg_bytes
        n = self.m * n_frames
        self.board = Scoreboard(n, o.dupacks, r0)
        self.dirty = np.zeros(n_frames, dtype=bool)
        self.counts = {"retransmissions": 0, "rto": 0, "tlp": 0, "recoveries": 0}
        self.avail = self.snd_una = self.snd_nxt = 0
        self.probe = -1  # a tail-loss-probe retransmission waiting for the link
        self.cwnd = float(o.initial_window) if self.sack else math.inf
        self.ssthresh = math.inf
        self.cc = Cubic()
        self.state, self.high_seq, self.dup = OPEN, 0, 0
        self.prior_cwnd = self.prr_delivered = self.prr_out = 0
        self.srtt, self.rttvar, self.min_rtt = r0, r0 / 2, r0
        self.rto = self._rto_value()
        self.tlp_high, self.tlp_seg, self.tlp_dup = -1, -1, False
        self.timer_kind, self.timer_gen = None, 0
        self.last_send = 0.0
        self.max_out = self.usage_seq = 0
        self.cwnd_limited = False
        # the receiving end; with an answer, the end of a frame is ACKed by the answer
        self.rx = Receiver(n, self.m, bool(o.delayed_ack), ack_frame_end=not answers)
        self.delack_gen = 0

    # ------------------------------------------------------------------ state
    def out(self) -> int:
        return self.snd_nxt - self.snd_una

    def in_flight(self) -> int:
        b = self.board
        return self.out() - (b.sacked_out + b.lost_out) + b.retrans_out

    def _rto_value(self) -> float:
        if self.kind == "sei":
            return self.o.rto_s
        if self.linux:
            return min(self.srtt + max(4 * self.rttvar, self.o.rto_s), RTO_MAX_S["linux"])
        # ns-3: max(srtt + max(clock granularity, 4 rttvar), min RTO)
        return min(max(self.srtt + max(1e-3, 4 * self.rttvar), self.o.rto_s), 60.0)

    def _after(self, d: float) -> float:
        """A timer's duration as the stack rounds it (Linux: up to whole jiffies)."""
        return max(1, math.ceil(d / JIFFY_S - 1e-9)) * JIFFY_S if self.linux else d

    def arm(self, kind, t, after):
        self.timer_gen += 1
        self.timer_kind = kind
        self.ev.at(t + self._after(after), TIMER, self.on_timer, self.timer_gen)

    def clear_timer(self):
        self.timer_gen += 1
        self.timer_kind = None

    def rearm_rto(self, t):  # tcp_rearm_rto
        if self.out() == 0:
            self.clear_timer()
            return
        rto = self.rto
        if self.timer_kind in (REO, PTO):
            rto = max(self.board.xmit[self.snd_una] + self.rto - t, JIFFY_S)
        self.arm(RTO, t, rto)

    def schedule_probe(self, t, advancing: bool) -> bool:  # tcp_schedule_loss_probe
        if not self.linux or self.state not in (OPEN, CWR) or self.out() == 0:
            return False
        pto = 2 * self.srtt + (TCP_RTO_MIN_S if self.out() == 1 else TIMEOUT_MIN_S)
        left = self.rto if advancing else self.board.xmit[self.snd_una] + self.rto - t
        if left > 0:
            pto = min(pto, left)
        self.arm(PTO, t, pto)
        return True

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
            if self.sack and self.in_flight() >= self.cwnd:
                return None
            return s, True
        if self.snd_nxt >= self.avail:
            return None
        if self.o.window is not None and self.out() >= self.o.window:
            return None
        if self.in_flight() >= self.cwnd:
            self.cwnd_limited = True
            return None
        return self.snd_nxt, False

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
        if not self.sack:
            if self.timer_kind is None:
                self.arm(RTO, t, self.rto)
            return
        if self.out() > self.max_out or self.snd_una >= self.usage_seq:  # tcp_cwnd_validate
            self.max_out, self.usage_seq = self.out(), self.snd_nxt
            self.cwnd_limited = self.in_flight() >= self.cwnd
        if not retx:
            if prior_out == 0 or self.timer_kind == PTO:
                self.rearm_rto(t)
            self.schedule_probe(t, advancing=False)
        elif seg == self.snd_una and self.timer_kind != REO:
            self.arm(RTO, t, self.rto)

    def lost(self, t, arg, final):
        """The link lost a transmission (``arg``: segment, time sent, retransmission?)."""
        seg, _, retx = arg
        if not retx:
            self.dirty[seg // self.m] = True

    # ------------------------------------------------------------------ loss detection
    def enter_recovery(self):
        self.state, self.high_seq = RECOVERY, self.snd_nxt
        self.tlp_high = -1
        self.prior_cwnd, self.prr_delivered, self.prr_out = self.cwnd, 0, 0
        self.ssthresh = self.cc.ssthresh(self.cwnd)
        self.counts["recoveries"] += 1

    def prr(self, delivered, advanced, newly_lost):  # tcp_cwnd_reduction
        if delivered <= 0:
            return
        self.prr_delivered += delivered
        self.cwnd = prr_window(
            self.in_flight(),
            self.ssthresh,
            self.prior_cwnd,
            self.prr_delivered,
            self.prr_out,
            delivered,
            advanced and not newly_lost,
        )

    def detect(self, t) -> bool:
        """Mark losses; True when the reordering timer was armed (RACK)."""
        b = self.board
        if not self.linux:
            b.sack_detect(self.snd_una, self.snd_nxt)
            return False
        reo = 0.0
        if self.state < RECOVERY and b.sacked_out < b.dupthresh:
            reo = min(self.min_rtt / 4, self.srtt)
        wait = b.rack_detect(t, reo)
        if wait > 0:
            self.arm(REO, t, wait + TIMEOUT_MIN_S)
            return True
        return False

    # ------------------------------------------------------------------ ACKs
    def on_ack(self, t, ack):
        cum, sacks, echo = ack
        if not self.sack:
            self._ack_newreno(t, cum)
        else:
            self._ack_sack(t, cum, sacks, echo)
        self.try_send(t)

    def _ack_newreno(self, t, a):
        if a > self.snd_una:
            for s in range(self.snd_una, min(a, self.snd_nxt)):
                self.board.acked(s)
            self.snd_una, self.dup, self.rto = a, 0, self.o.rto_s
            if self.state == RECOVERY:
                if a >= self.high_seq:
                    self.state = OPEN
                else:  # a partial ACK: the next hole is lost too
                    self.board.mark_lost(a)
            if self.out():
                self.arm(RTO, t, self.rto)
            else:
                self.clear_timer()
        elif a == self.snd_una and self.out():
            self.dup += 1
            if self.dup == self.o.dupacks and self.state != RECOVERY:
                self.state, self.high_seq = RECOVERY, self.snd_nxt
                self.board.mark_lost(a)

    def _ack_sack(self, t, cum, sacks, echo):
        b = self.board
        prior_una, prior_lost = self.snd_una, b.lost_out
        delivered = 0
        for s in range(self.snd_una, min(cum, self.snd_nxt)):
            if b.acked(s):
                delivered += 1
                b.rack_advance(t, s, self.min_rtt)
        if cum > self.snd_una:
            self.snd_una = cum
        for s in sacks:
            if self.snd_una <= s < self.snd_nxt and not b.sacked[s]:
                b.sack(s)
                delivered += 1
                b.rack_advance(t, s, self.min_rtt)
        advanced = self.snd_una > prior_una
        # RTT: the echoed timestamp when the cumulative ACK moved (valid for retransmissions
        # too), else the newest SACKed segment never retransmitted (tcp_ack_update_rtt)
        r = (
            t - echo
            if advanced
            else min((t - b.xmit[s] for s in sacks if b.sacked[s] and not b.ever[s]), default=None)
        )
        if r is not None and delivered:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
            self.min_rtt = min(self.min_rtt, r)
            self.rto = self._rto_value()  # a valid sample also drops the backoff
        if self.tlp_high >= 0 and self.snd_una >= self.tlp_high:
            if self.tlp_seg >= 0 and not self.tlp_dup:
                # the probe repaired a loss (no DSACK came back): reduce cwnd as in CWR
                self.ssthresh = self.cc.ssthresh(self.cwnd)
                self.cwnd = self.ssthresh
            self.tlp_high, self.tlp_seg = -1, -1
        if self.state in (RECOVERY, LOSS) and self.snd_una >= self.high_seq:
            if self.state == RECOVERY:
                self.cwnd = self.ssthresh
            self.state = OPEN
        armed = self.detect(t)
        if b.lost_out and self.state in (OPEN, CWR):
            self.enter_recovery()
        if self.state == RECOVERY:
            self.prr(delivered, advanced, b.lost_out > prior_lost)
        elif delivered and self._cwnd_limited():
            if self.cwnd < self.ssthresh:
                grow = min(delivered, max(self.ssthresh - self.cwnd, 0))
                self.cwnd += grow
                delivered -= grow
            if delivered and self.cwnd >= self.ssthresh:
                self.cwnd = self.cc.avoid(self.cwnd, delivered, t, self.min_rtt)
        if advanced and not armed and not self.schedule_probe(t, advancing=True):
            self.rearm_rto(t)
        if self.out() == 0:
            self.clear_timer()

    def _cwnd_limited(self) -> bool:
        if self.cwnd_limited:
            return True
        return self.cwnd < self.ssthresh and self.cwnd < 2 * self.max_out

    # ------------------------------------------------------------------ timers
    def on_timer(self, t, gen):
        """The retransmission timer slot expired: reordering timeout, loss probe or RTO."""
        if gen != self.timer_gen:
            return
        kind, self.timer_kind = self.timer_kind, None
        if self.out() == 0:
            return
        if kind == REO:  # tcp_rack_reo_timeout
            prior_lost = self.board.lost_out
            self.detect(t)
            if self.board.lost_out > prior_lost and self.state not in (RECOVERY, LOSS):
                self.enter_recovery()
                self.prr(1, False, True)
            self.try_send(t)
            if self.timer_kind != RTO:
                self.rearm_rto(t)
        elif kind == PTO:  # tcp_send_loss_probe
            self.counts["tlp"] += 1
            if self.tlp_high < 0:
                if self.snd_nxt < self.avail and self.in_flight() < self.cwnd:
                    self.try_send(t)
                else:
                    s = self.snd_nxt - 1
                    if not self.board.sacked[s]:
                        self.tlp_seg, self.tlp_dup = s, False
                        self.probe = s
                        self.try_send(t)
                self.tlp_high = self.snd_nxt
            self.clear_timer()
            self.rearm_rto(t)
        else:
            self._timeout(t)

    def _timeout(self, t):  # tcp_retransmit_timer → tcp_enter_loss
        self.counts["rto"] += 1
        self.rto = min(2 * self.rto, RTO_MAX_S[self.kind])
        if not self.sack:  # SCNSL: the oldest segment again, then NewReno from there
            self.board.mark_lost(self.snd_una)
            self.state, self.high_seq, self.dup = RECOVERY, self.snd_nxt, 0
        else:
            if self.state in (OPEN, CWR):
                self.ssthresh = self.cc.ssthresh(self.cwnd)
            self.cc.reset()  # CUBIC forgets its epoch and maximum in the loss state
            self.board.mark_all_lost()
            self.state, self.high_seq, self.tlp_high = LOSS, self.snd_nxt, -1
            self.cwnd = self.in_flight() + 1.0
        self.arm(RTO, t, self.rto)
        self.try_send(t)

    # ------------------------------------------------------------------ the receiving end
    def arrive(self, t, arg):
        seg, sent, _ = arg
        now, completed, duplicate = self.rx.arrive(seg, sent)
        self.tlp_dup |= duplicate and seg == self.tlp_seg
        for _ in range(completed):
            self.net.frame_received(t)
        if now:
            self.send_ack(t)
        elif self.rx.pending == 1:
            self.delack_gen += 1
            self.ev.at(t + DELACK_S, DELACK, self._delack, self.delack_gen)

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
