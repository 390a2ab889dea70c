"""The TCP model's behaviours (``tcp:`` in the config): how each stack reads ACKs, detects losses
and cuts its window, as subclasses of :class:`.tcp.Tcp`, which holds the state.

``linux`` (:class:`LinuxTcp`, the default) recovers as Linux does (the kernel function in
brackets): SACK (``tcp_sacktag_write_queue``); RACK loss detection, RFC 8985
(``tcp_rack_detect_loss``, :mod:`.tcp_loss`) with its reordering timer; the tail loss probe
(``tcp_schedule_loss_probe``, ``tcp_send_loss_probe``): in the open state a probe after ``PTO =
2·srtt + 2 jiffies`` (``+ 200 ms`` with one segment out: the peer may delay its ACK), capped by
the time left to the RTO, sending new data or the last segment again, a repairing probe cutting
cwnd (``tcp_process_tlp_ack``); PRR, RFC 6937 (``tcp_cwnd_reduction``); RTO = srtt +
max(4·rttvar, ``rto_s``), doubled up to 120 s, on expiry every outstanding segment lost and cwnd
1 (``tcp_retransmit_timer``, ``tcp_enter_loss``); initial window 10 (RFC 6928), slow start and
CUBIC (:mod:`.congestion`) raised only by in-order delivery (``tcp_may_raise_cwnd``) while the
window is the limit (``tcp_is_cwnd_limited``), restarted after idle longer than the RTO
(``tcp_slow_start_after_idle``); quick ACKs for the first 16 segments (``tcp_incr_quickack``);
TCP small queues (the network's ``room``: ``tcp_small_queue_check``); timers in jiffies of 4 ms.

``rfc6675`` (:class:`Ns3Tcp`) is ns-3 3.44's ``TcpSocketBase`` with ``TcpCubic`` and
``TcpPrrRecovery`` (``src/internet/model/tcp-socket-base.cc``), mechanism for mechanism: a
segment lost once ``dupacks`` segments above it are SACKed (RFC 6675), recovery entered on that
or on ``dupacks`` duplicate ACKs, the first lost segment retransmitted at once; each partial ACK
retransmits the next hole (RFC 6582) and restarts the RTO only the first time; PRR with ns-3's
bounds (an extra segment credited per duplicate ACK, the slow-start reduction bound only once a
retransmission is ACKed) and its flight-size reference; the window raised only by ACKs that
carry no new SACK block; RTO = max(srtt + 4·rttvar, ``rto_s``), doubled up to 60 s; exact
timers; no RACK, no tail loss probe, no small queues; the first data segment ACKed at once. It
lets the builtin simulator be held against ns-3 with the same TCP, so that what differs is the
simulation of the link.

``sei`` (:class:`SeiTcp`) is SCNSL's TCP as Split-Et-Impera simulates it: no SACK, an ACK for
every segment, a retransmission timer fixed at ``rto_s`` (doubled on each consecutive timeout up
to 60 s, reset by new data acknowledged), fast retransmit after ``dupacks`` duplicate ACKs with
NewReno partial ACKs (RFC 6582), no congestion window (``window`` segments in flight, ``None``:
unlimited); a lost last segment waits for the RTO.

Left out (docs/latency.md): HyStart, F-RTO and undo, pacing, the receive window beyond
``window``, TSO/GSO.
"""

from __future__ import annotations

import math

from isplit.latency.congestion import Ns3Cubic, prr_window
from isplit.latency.tcp import CWR, JIFFY_S, LOSS, OPEN, PTO, RECOVERY, REO, RTO, Tcp

TIMEOUT_MIN_S = 2 * JIFFY_S  # TCP_TIMEOUT_MIN
TCP_RTO_MIN_S = 0.2  # what Linux's probe timeout adds for a single outstanding segment
DISORDER = 4  # ns-3's CA_DISORDER: duplicate ACKs seen, no recovery yet


class LinuxTcp(Tcp):
    kind = "linux"
    rto_max_s = 120.0
    quick_acks = 16  # TCP_MAX_QUICKACKS

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.tlp_high, self.tlp_seg, self.tlp_dup = -1, -1, False

    def rto_value(self) -> float:
        return min(self.srtt + max(4 * self.rttvar, self.o.rto_s), self.rto_max_s)

    def after(self, d: float) -> float:
        return max(1, math.ceil(d / JIFFY_S - 1e-9)) * JIFFY_S

    def rearm_rto(self, t):  # tcp_rearm_rto
        if self.out() == 0:
            self.clear_timer()
            return
        rto = self.rto
        if self.timer_kind in (REO, PTO):
            rto = max(self.board.xmit[self.snd_una] + self.rto - t, JIFFY_S)
        self.arm(RTO, t, rto)

    def schedule_probe(self, t, advancing: bool) -> bool:  # tcp_schedule_loss_probe
        if self.state not in (OPEN, CWR) or self.out() == 0:
            return False
        pto = 2 * self.srtt + (TCP_RTO_MIN_S if self.out() == 1 else TIMEOUT_MIN_S)
        left = self.rto if advancing else self.board.xmit[self.snd_una] + self.rto - t
        if left > 0:
            pto = min(pto, left)
        self.arm(PTO, t, pto)
        return True

    def sent(self, t, seg, retx, prior_out):
        if not retx:
            if prior_out == 0 or self.timer_kind == PTO:
                self.rearm_rto(t)
            self.schedule_probe(t, advancing=False)
        elif seg == self.snd_una and self.timer_kind != REO:
            self.arm(RTO, t, self.rto)

    def enter_recovery(self):
        self.state, self.high_seq = RECOVERY, self.snd_nxt
        self.tlp_high = -1
        self.prior_cwnd, self.prr_delivered, self.prr_out = self.cwnd, 0, 0
        self.ssthresh = self.cc.ssthresh(self.cwnd)
        self.counts["recoveries"] += 1

    def prr(self, delivered, bonus):  # tcp_cwnd_reduction
        if delivered <= 0:
            return
        self.prr_delivered += delivered
        limit = max(self.prr_delivered - self.prr_out, delivered) + bool(bonus)
        self.cwnd = prr_window(
            self.in_flight(), self.ssthresh, self.prior_cwnd, self.prr_delivered, self.prr_out,
            limit,
        )  # fmt: skip

    def detect(self, t) -> bool:
        """RACK; True when the reordering timer was armed."""
        b = self.board
        reo = 0.0
        if self.state < RECOVERY and b.sacked_out < b.dupthresh:
            reo = min(self.min_rtt / 4, self.srtt)
        wait = b.rack_detect(t, reo)
        if wait > 0:
            self.arm(REO, t, wait + TIMEOUT_MIN_S)
            return True
        return False

    def read_ack(self, t, cum, sacks, echo):
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
            self.rtt_sample(r)
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
            self.prr(delivered, advanced and b.lost_out <= prior_lost)
        elif advanced:  # tcp_may_raise_cwnd: in-order delivery only
            self.grow(t, delivered)
        if advanced and not armed and not self.schedule_probe(t, advancing=True):
            self.rearm_rto(t)
        if self.out() == 0:
            self.clear_timer()

    def expired(self, t, kind):
        if kind == REO:  # tcp_rack_reo_timeout
            prior_lost = self.board.lost_out
            self.detect(t)
            if self.board.lost_out > prior_lost and self.state not in (RECOVERY, LOSS):
                self.enter_recovery()
                self.prr(1, False)
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
            self.tlp_high = -1
            super().expired(t, kind)

    def arrived(self, seg, duplicate):
        self.tlp_dup |= duplicate and seg == self.tlp_seg


class Ns3Tcp(Tcp):
    kind = "rfc6675"
    cc_class = Ns3Cubic
    quick_acks = 1  # ns-3 ACKs the first data segment after the handshake at once

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.recover_active, self.first_partial, self.pipe = False, True, 0
        self.seg = max(self.seg_bytes)  # ns-3 counts its windows in bytes

    def rto_value(self) -> float:
        return min(max(self.srtt + max(1e-3, 4 * self.rttvar), self.o.rto_s), self.rto_max_s)

    def window_room(self) -> bool:
        return self.in_flight() + 1 <= self.cwnd + 1e-9  # a whole segment must fit

    def _next_segment(self):  # TcpTxBuffer::NextSeg, rules (1)-(3)
        seg = super()._next_segment()
        if seg is not None or self.state != RECOVERY or not self.window_room():
            return seg
        s = self.board.unsacked_below_sack(self.snd_una)
        return (s, True) if s >= 0 else None

    def sent(self, t, seg, retx, prior_out):
        self.cwnd_limited = self.cwnd < self.in_flight() + 1
        super().sent(t, seg, retx, prior_out)

    def cwnd_limited_now(self) -> bool:
        return self.cwnd_limited

    def new_ack(self, t, reset: bool):
        if reset:
            self.rto = self.rto_value()
            self.arm(RTO, t, self.rto)
        if self.out() == 0:
            self.clear_timer()

    def prr(self, delivered, dupack, retx_acked):  # TcpPrrRecovery::DoRecovery, ns-3.44
        if dupack and self.prr_delivered < self.prior_cwnd:
            delivered += 1
        if delivered == 0:
            return
        self.prr_delivered += delivered
        inf = self.pipe
        if inf > self.ssthresh:
            prop = math.ceil(self.prr_delivered * self.ssthresh * self.seg / self.prior_cwnd)
            snd = prop / self.seg - self.prr_out
        else:
            limit = max(self.prr_delivered - self.prr_out, delivered) + bool(retx_acked)
            snd = min(limit, self.ssthresh - inf)
        self.cwnd = inf + max(snd, 0 if self.prr_out else 1)

    def retransmit(self, t):  # DoRetransmit: the first lost segment not resent, else the head
        s = self.board.next_lost(self.snd_una)
        self.transmit(t, s if s >= 0 else self.snd_una, True)

    def enter_recovery(self, t, delivered, retx_acked):
        b = self.board
        if not b.lost[self.snd_una]:
            b.mark_lost(self.snd_una)
        self.state, self.high_seq, self.recover_active = RECOVERY, self.snd_nxt, True
        self.ssthresh = self.cc.ssthresh(math.floor(self.cwnd))
        self.prior_cwnd, self.prr_delivered, self.prr_out = max(self.pipe, 1), 0, 0
        self.counts["recoveries"] += 1
        self.prr(delivered, True, retx_acked)
        self.retransmit(t)

    def read_ack(self, t, cum, sacks, echo):  # ReceivedAck → ProcessAck
        b = self.board
        prior_una = self.snd_una
        newly_sacked = 0
        for s in sacks:
            if max(prior_una, cum) <= s < self.snd_nxt and not b.sacked[s]:
                b.sack(s)
                newly_sacked += 1
        cum_acked, retx_acked = 0, False
        for s in range(self.snd_una, min(cum, self.snd_nxt)):
            retx_acked |= self.state == RECOVERY and bool(b.retr[s])
            cum_acked += b.acked(s)
        self.snd_una = max(self.snd_una, cum)
        b.sack_detect(self.snd_una, self.snd_nxt)  # TcpTxBuffer::UpdateLostCount
        advanced, delivered = self.snd_una > prior_una, cum_acked + newly_sacked
        if advanced:
            self.rtt_sample(t - echo)
        self.cc.pkts_acked(t, self.srtt)
        self.pipe = self.in_flight()
        dupack = newly_sacked > 0
        if dupack and self.state != LOSS:  # DupAck
            if self.state != RECOVERY:
                self.dup += 1
            if self.state == OPEN:
                self.state = DISORDER
            if self.state == RECOVERY:
                self.prr(delivered, True, retx_acked)
            elif (
                self.dup == self.o.dupacks
                and (self.snd_una >= self.high_seq or not self.recover_active)
            ) or b.lost[self.snd_una]:
                self.enter_recovery(t, delivered, retx_acked)
        if not advanced:
            return
        if not dupack:
            self.dup = 0
        if self.snd_una < self.high_seq and self.state == RECOVERY:  # a partial ACK
            self.prr(delivered, False, retx_acked)
            if not b.retr[self.snd_una]:
                self.retransmit(t)  # the next hole is presumed lost too
            self.new_ack(t, self.first_partial)
            self.first_partial = False
            return
        if self.snd_una < self.high_seq and self.state == LOSS:
            self.grow(t, delivered)
            self.new_ack(t, True)
            return
        acked, exited = delivered, False
        if self.state == DISORDER and not dupack:
            self.state = OPEN
        elif self.state == RECOVERY:  # counted from the old head, SACKed segments included
            self.state, exited, acked = OPEN, True, self.snd_una - prior_una
        elif self.state == LOSS:
            self.state, acked = OPEN, max(self.snd_una - self.high_seq, 0)
        if self.state == OPEN:
            self.first_partial = True
        if self.snd_una >= self.high_seq:
            self.recover_active = False
        if exited:
            self.cwnd = self.ssthresh
        if self.state == OPEN:  # an ACK that leaves the disorder state alone does not restart
            self.grow(t, acked)  # the timer
            self.new_ack(t, True)

    def grow(self, t, acked):  # TcpCubic::IncreaseWindow: slow start counts bytes (ABC)
        if not acked or not self.cwnd_limited_now():
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
            return
        self.cwnd = self.cc.avoid(self.cwnd, acked, t, self.min_rtt)

    def expired(self, t, kind):  # ReTxTimeout
        self.counts["rto"] += 1
        self.dup, self.recover_active, self.first_partial = 0, True, True
        if self.state != LOSS or not self.board.retr[self.snd_una]:
            self.ssthresh = self.cc.ssthresh(math.floor(self.cwnd))
        self.cc.reset()
        self.board.mark_all_lost()
        self.state, self.high_seq, self.cwnd = LOSS, self.snd_nxt, 1.0
        self.rto = min(2 * self.rto, self.rto_max_s)
        self.arm(RTO, t, self.rto)
        self.try_send(t)


class SeiTcp(Tcp):
    kind = "sei"
    sack = False

    def rto_value(self) -> float:
        return self.o.rto_s

    def read_ack(self, t, a, sacks, echo):
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

    def expired(self, t, kind):  # SCNSL: the oldest segment again, then NewReno from there
        self.counts["rto"] += 1
        self.rto = min(2 * self.rto, self.rto_max_s)
        self.board.mark_lost(self.snd_una)
        self.state, self.high_seq, self.dup = RECOVERY, self.snd_nxt, 0
        self.arm(RTO, t, self.rto)
        self.try_send(t)


BEHAVIOURS = {c.kind: c for c in (LinuxTcp, Ns3Tcp, SeiTcp)}


def connection(net, events, seg_bytes, n_frames, opts, r0, *, answers: bool) -> Tcp:
    """The connection of the behaviour ``opts.behaviour`` (a resolved :class:`.link.TcpOptions`)."""
    cls = BEHAVIOURS[opts.behaviour]
    return cls(net, events, seg_bytes, n_frames, opts, r0, answers=answers)
