"""A TCP sender and receiver that recover from loss the way Linux does (the ``tcp="linux"`` model
of :mod:`.netsim`).

Why: Split-Et-Impera's SCNSL TCP retransmits only on duplicate ACKs or a fixed 200 ms timeout,
so a lost last segment of a frame always waits 200 ms, and its p95 under loss is that timeout.
Linux recovers most losses within about one round trip. What decides a frame's latency under
loss, and is therefore modelled (the Linux source file and function in brackets):

* **SACK scoreboard** (``tcp_sacktag_write_queue``): every ACK carries the cumulative ACK and
  SACK blocks for segments received out of order (the triggering one and the two most recent).
* **RACK** loss detection, RFC 8985 (``tcp_rack_detect_loss``): a segment is lost once a
  segment *sent after it* has been delivered and it is still unacknowledged ``rack_rtt +
  reo_wnd`` after its own transmission; ``reo_wnd = min(min_rtt / 4, srtt)``, and 0 in recovery
  or once three segments above the hole are SACKed (the classic dupthresh). Losses found with
  time still to run arm the reordering timer (``tcp_rack_reo_timeout``).
* **Tail loss probe** (``tcp_schedule_loss_probe``, ``tcp_send_loss_probe``): in the open state
  with data outstanding, a probe after ``PTO = 2·srtt + 2 jiffies`` — ``+ 200 ms`` (TCP_RTO_MIN)
  when a single segment is outstanding, because the peer may delay its ACK — capped by the time
  left to the RTO; the probe is new data if any may be sent, else the last segment again. Its
  ACK lets RACK see the holes; a probe that repaired a loss reduces cwnd (``tcp_process_tlp_ack``).
* **Recovery** with Proportional Rate Reduction, RFC 6937 (``tcp_cwnd_reduction``): ssthresh =
  0.7·cwnd (CUBIC's β), retransmissions of lost segments first, cwnd back at ssthresh on exit.
* **Retransmission timeout** (``tcp_retransmit_timer``, ``tcp_enter_loss``): RTO = srtt +
  max(4·rttvar, ``rto_min``) (200 ms by default: ``TCP_RTO_MIN``), from RFC 6298 RTT estimates
  taken from the timestamp echoed by each ACK; on expiry every unacknowledged segment is marked
  lost, cwnd = 1, the RTO doubles (up to 120 s) and slow start retransmits.
* **Congestion window**: initial window 10 segments (RFC 6928), slow start, CUBIC above
  ssthresh (:mod:`.congestion`); cwnd grows only while the sender is cwnd-limited
  (``tcp_is_cwnd_limited``), and after an idle period longer than the RTO it restarts from the
  initial window, halving per RTO idle (``tcp_cwnd_restart``, ``tcp_slow_start_after_idle``).
* **The receiver** (:mod:`.tcp_receiver`): delayed ACKs, SACK blocks, timestamp echo.
* **Timer granularity**: Linux timers run in jiffies; durations are rounded up to a jiffy of
  ``1 / 250 s`` (CONFIG_HZ=250, the value of this machine's and Debian/Ubuntu's kernels).

Left out (docs/latency.md): HyStart, F-RTO's spurious-timeout detection and undo, pacing, the
receive window (assumed large), quick-ACK mode at connection start, TSO/GSO, and queueing in a
qdisc: the sender hands the link one segment whenever it is free, so a retransmission never waits
behind queued new data (Linux's TCP small queues keep about two segments there).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from isplit.latency.congestion import Cubic, prr_window, restart_window
from isplit.latency.tcp_receiver import DELACK_S, Receiver
from isplit.latency.tcp_recovery import (
    CWR,
    JIFFY_S,
    LOSS,
    OPEN,
    PTO,
    RECOVERY,
    REO,
    RTO,
    RTO_MAX_S,
    TIMEOUT_MIN_S,
    on_timer,
    rack_advance,
    rack_detect,
)

TCP_RTO_MIN_S = 0.2  # the constant the PTO adds for a single outstanding segment
HANDSHAKE_BYTES = 74  # a SYN with options, for the first RTT sample

_LINK_FREE, _ACK, _ARRIVE, _TIMER, _DELACK, _READY = range(6)


@dataclass(frozen=True)
class TcpOptions:
    rto_min_s: float = 0.2
    initial_window: int = 10
    slow_start_after_idle: bool = True
    delayed_ack: bool = True
    dupthresh: int = 3


def _jiffies(t: float) -> float:
    return max(1, math.ceil(t / JIFFY_S - 1e-9)) * JIFFY_S


class _Run:
    """One stream: sender, link both ways, receiver. Segment numbers run over the whole stream
    (frame ``i`` = segments ``i·m … i·m + m − 1``)."""

    def __init__(
        self,
        sizes,
        link,
        n_frames,
        fps,
        device_s,
        server_s,
        loss,
        ack_loss,
        ack_bytes,
        opts: TcpOptions,
    ):
        self.m, self.n_frames = len(sizes), n_frames
        n = self.m * n_frames
        self.ser = [8 * s / link.bandwidth_bps for s in sizes]
        self.ack_ser = 8 * ack_bytes / link.bandwidth_bps
        self.delay, self.fps = link.delay_s, fps
        self.device_s, self.server_s = device_s, server_s
        self.loss, self.ack_loss, self.o = loss, ack_loss, opts
        self.heap: list = []
        self.order = 0
        self.capture = np.zeros(n_frames)
        self.done = np.full(n_frames, np.nan)
        self.dirty = np.zeros(n_frames, dtype=bool)
        self.counts = {"retransmissions": 0, "rto": 0, "tlp": 0, "recoveries": 0}
        # sender
        self.avail = self.snd_una = self.snd_nxt = 0
        self.sacked, self.lost = bytearray(n), bytearray(n)
        self.retr, self.ever = bytearray(n), bytearray(n)
        self.xmit = [0.0] * n
        self.tsorted: dict[int, None] = {}  # unacknowledged segments, oldest transmission first
        self.sacked_out = self.lost_out = self.retrans_out = 0
        self.rtx: list = []  # lost segments waiting for retransmission (a heap)
        self.probe = -1  # a tail-loss-probe retransmission waiting for the link
        self.cwnd, self.ssthresh = float(opts.initial_window), math.inf
        self.cc = Cubic()
        self.state, self.high_seq = OPEN, 0
        self.prior_cwnd = self.prr_delivered = self.prr_out = 0
        r0 = 2 * link.delay_s + 2 * 8 * HANDSHAKE_BYTES / link.bandwidth_bps
        self.srtt, self.rttvar, self.min_rtt = r0, r0 / 2, r0
        self.rto = self._rto_value()
        self.rack_xmit, self.rack_seq, self.rack_rtt = -1.0, -1, r0
        self.tlp_high, self.tlp_seg, self.tlp_dup = -1, -1, False
        self.timer_kind, self.timer_gen = None, 0
        self.last_send = 0.0
        self.max_out = self.usage_seq = 0
        self.cwnd_limited = False
        self.link_busy = False
        # receiver
        self.rx = Receiver(n, self.m, opts.delayed_ack)
        self.next_frame, self.delack_gen = 0, 0
        self.rev_free = 0.0

    # ------------------------------------------------------------------ plumbing
    def push(self, t, kind, arg=None):
        heapq.heappush(self.heap, (t, kind, self.order, arg))
        self.order += 1

    def out(self) -> int:
        return self.snd_nxt - self.snd_una

    def in_flight(self) -> int:
        return self.out() - (self.sacked_out + self.lost_out) + self.retrans_out

    def _rto_value(self) -> float:
        return min(self.srtt + max(4 * self.rttvar, self.o.rto_min_s), RTO_MAX_S)

    def arm(self, kind, t, after):
        self.timer_gen += 1
        self.timer_kind = kind
        self.push(t + _jiffies(after), _TIMER, self.timer_gen)

    def clear_timer(self):
        self.timer_gen += 1
        self.timer_kind = None

    def rearm_rto(self, t):  # tcp_rearm_rto
        if self.out() == 0:
            self.clear_timer()
            return
        rto = self.rto
        if self.timer_kind in (REO, PTO):
            rto = max(self.xmit[self.snd_una] + self.rto - t, JIFFY_S)
        self.arm(RTO, t, rto)

    def schedule_probe(self, t, advancing: bool) -> bool:  # tcp_schedule_loss_probe
        if self.state not in (OPEN, CWR) or self.out() == 0:
            return False
        pto = 2 * self.srtt + (TCP_RTO_MIN_S if self.out() == 1 else TIMEOUT_MIN_S)
        left = self.rto if advancing else self.xmit[self.snd_una] + self.rto - t
        if left > 0:
            pto = min(pto, left)
        self.arm(PTO, t, pto)
        return True

    # ------------------------------------------------------------------ sending
    def try_send(self, t):
        if self.link_busy:
            return
        seg, retx = -1, True
        if self.probe >= 0:
            seg, self.probe = self.probe, -1
        else:
            while self.rtx and seg < 0:
                s = self.rtx[0]
                if s < self.snd_una or not self.lost[s] or self.retr[s] or self.sacked[s]:
                    heapq.heappop(self.rtx)  # stale entry
                elif self.in_flight() < self.cwnd:
                    seg = heapq.heappop(self.rtx)
                else:
                    return
            if seg < 0 and self.snd_nxt < self.avail:
                if self.in_flight() < self.cwnd:
                    seg, retx = self.snd_nxt, False
                else:
                    self.cwnd_limited = True
        if seg >= 0:
            self.transmit(t, seg, retx)

    def transmit(self, t, seg, retx):
        o = self.o
        if not retx:
            prior_out = self.out()
            if self.in_flight() == 0:
                self.cc.tx_start(t - self.last_send, t)
            if prior_out == 0 and o.slow_start_after_idle and t - self.last_send > self.rto:
                self.cwnd = restart_window(
                    self.cwnd, o.initial_window, t - self.last_send, self.rto
                )
            self.snd_nxt += 1
        else:
            if not self.retr[seg]:
                self.retr[seg] = 1
                self.retrans_out += 1
            self.ever[seg] = 1
            self.counts["retransmissions"] += 1
        if self.state == RECOVERY:
            self.prr_out += 1
        self.xmit[seg] = t
        self.tsorted.pop(seg, None)
        self.tsorted[seg] = None
        self.last_send = t
        d = self.ser[seg % self.m]
        self.link_busy = True
        self.push(t + d, _LINK_FREE)
        if self.loss.lost():
            if not retx:
                self.dirty[seg // self.m] = True
        else:
            self.push(t + d + self.delay, _ARRIVE, (seg, t))
        if self.out() > self.max_out or self.snd_una >= self.usage_seq:  # tcp_cwnd_validate
            self.max_out, self.usage_seq = self.out(), self.snd_nxt
            self.cwnd_limited = self.in_flight() >= self.cwnd
        if not retx:
            if prior_out == 0 or self.timer_kind == PTO:
                self.rearm_rto(t)
            self.schedule_probe(t, advancing=False)
        elif seg == self.snd_una and self.timer_kind != REO:
            self.arm(RTO, t, self.rto)

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

    # ------------------------------------------------------------------ events
    def on_ack(self, t, cum, sacks, echo):
        prior_una, prior_lost = self.snd_una, self.lost_out
        delivered = 0
        for s in range(self.snd_una, min(cum, self.snd_nxt)):
            if self.sacked[s]:
                self.sacked_out -= 1
            else:
                delivered += 1
                rack_advance(self, t, s)
            self._forget(s)
        if cum > self.snd_una:
            self.snd_una = cum
        for s in sacks:
            if self.snd_una <= s < self.snd_nxt and not self.sacked[s]:
                self.sacked[s] = 1
                self.sacked_out += 1
                delivered += 1
                rack_advance(self, t, s)
                self._forget(s, keep_sacked=True)
        advanced = self.snd_una > prior_una
        # RTT: the echoed timestamp when the cumulative ACK moved (valid for retransmissions
        # too), else the newest SACKed segment never retransmitted (tcp_ack_update_rtt)
        r = (
            t - echo
            if advanced
            else min(
                (t - self.xmit[s] for s in sacks if self.sacked[s] and not self.ever[s]),
                default=None,
            )
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
        armed = rack_detect(self, t)
        if self.lost_out and self.state in (OPEN, CWR):
            self.enter_recovery()
        if self.state == RECOVERY:
            self.prr(delivered, advanced, self.lost_out > prior_lost)
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
        self.try_send(t)

    def _cwnd_limited(self) -> bool:
        if self.cwnd_limited:
            return True
        return self.cwnd < self.ssthresh and self.cwnd < 2 * self.max_out

    def _forget(self, s, keep_sacked=False):
        if not keep_sacked:
            self.sacked[s] = 0
        if self.lost[s]:
            self.lost[s] = 0
            self.lost_out -= 1
        if self.retr[s]:
            self.retr[s] = 0
            self.retrans_out -= 1
        self.tsorted.pop(s, None)

    def on_arrive(self, t, seg, sent):
        now, completed, duplicate = self.rx.arrive(seg, sent)
        self.tlp_dup |= duplicate and seg == self.tlp_seg
        for _ in range(completed):
            self._deliver(t)
        if now:
            self.send_ack(t)
        elif self.rx.pending == 1:
            self.delack_gen += 1
            self.push(t + DELACK_S, _DELACK, self.delack_gen)

    def _deliver(self, t):
        i = self.next_frame
        self.done[i] = t
        if not self.fps and i + 1 < self.n_frames:
            # closed loop: the next frame is captured when this one is done
            self.capture[i + 1] = t + self.server_s
            self.push(t + self.server_s + self.device_s, _READY, i + 1)
        self.next_frame += 1

    def send_ack(self, t):
        self.delack_gen += 1
        ack = self.rx.ack()
        self.rev_free = max(t, self.rev_free) + self.ack_ser
        if self.ack_loss is None or not self.ack_loss.lost():
            self.push(self.rev_free + self.delay, _ACK, ack)

    def run(self):
        if self.fps:
            device_free = 0.0
            for i in range(self.n_frames):
                self.capture[i] = i / self.fps
                device_free = max(self.capture[i], device_free) + self.device_s
                self.push(device_free, _READY, i)
        else:
            self.push(self.device_s, _READY, 0)
        heap = self.heap
        while heap:
            t, kind, _, arg = heapq.heappop(heap)
            if kind == _LINK_FREE:
                self.link_busy = False
                self.try_send(t)
            elif kind == _ACK:
                self.on_ack(t, *arg)
            elif kind == _ARRIVE:
                self.on_arrive(t, *arg)
            elif kind == _TIMER:
                on_timer(self, t, arg)
            elif kind == _DELACK:
                if arg == self.delack_gen and self.rx.pending:
                    self.send_ack(t)
            else:  # _READY
                self.avail += self.m
                self.try_send(t)
        return self


def simulate(
    sizes, link, n_frames, fps, device_s, server_s, loss, ack_loss, ack_bytes, opts: TcpOptions
):
    """Run the stream; per frame: delivery time at the receiver, capture time, and whether one
    of its own packets was lost on first transmission (``dirty``), plus event counts."""
    run = _Run(sizes, link, n_frames, fps, device_s, server_s, loss, ack_loss, ack_bytes, opts)
    run.run()
    return run.done, run.capture, run.dirty, run.counts
