"""The congestion window of the TCP model (:mod:`.tcp`, behaviours linux and rfc6675): CUBIC's
growth as Linux's ``net/ipv4/tcp_cubic.c`` computes it (RFC 9438), Proportional Rate Reduction in
recovery (RFC 6937, ``tcp_cwnd_reduction``) and the restart after idle (``tcp_cwnd_restart``).

Why not Reno's one segment per RTT: under loss the window of a frame stream is decided between
loss events, and CUBIC regrows it on a clock, not per RTT — after a reduction the window climbs
back towards the last maximum along ``W(t) = C·(t − K)³ + W_max`` with ``C = 0.4`` segments/s³ and
``K = ∛(W_max·(1 − β) / C)`` (about 2 s for a window of 10), and never slower than the
"TCP-friendly" rate of ``3(1 − β)/(1 + β) ≈ 0.53`` segments per RTT. With a loss every frame or
two, Reno's +1 per RTT would regrow the window about twice as fast as Linux does; the lossy-link
validation showed exactly that gap (docs/latency.md).

Modelled from the kernel source: β = 717/1024; fast convergence (a loss below the previous maximum
remembers ``W_max·(1 + β)/2``); the epoch starting at the first ACK after a loss; ``t`` counted
from the epoch plus the minimum RTT; the ``cnt`` ACKs-per-increment rule with the friendliness
bound and a floor of 2; growth capped at 20 ACKs per segment before the first loss; and the epoch
shifted by the idle time when an application-limited sender resumes (``CA_EVENT_TX_START``), so
idle periods do not count as growth time. Left out: HyStart (which can leave slow start early on
delay increases or long ACK trains), and fixed-point rounding.
"""

from __future__ import annotations

import math

BETA = 717 / 1024
C = 0.4  # bic_scale 41 · 10 / 1024: segments per s³
FRIENDLY = 3 * (1 - BETA) / (1 + BETA)  # Reno-equivalent segments per RTT
BETA_NS3 = 0.7  # ns-3's TcpCubic::Beta


class Cubic:
    """Per-connection CUBIC state; windows in segments, times in seconds."""

    def __init__(self):
        self.reset()

    def reset(self):  # bictcp_reset: also on entering the loss (RTO) state
        self.last_max = 0.0
        self.epoch_start = None
        self.origin = self.k = 0.0
        self.tcp_cwnd = 0.0
        self.ack_cnt = 0.0
        self.cwnd_cnt = 0.0

    def ssthresh(self, cwnd: float) -> float:  # cubictcp_recalc_ssthresh
        self.epoch_start = None
        self.cwnd_cnt = 0.0  # tcp_init_cwnd_reduction / tcp_enter_loss: snd_cwnd_cnt = 0
        if cwnd < self.last_max:  # fast convergence: release bandwidth to newer flows
            self.last_max = cwnd * (1 + BETA) / 2
        else:
            self.last_max = cwnd
        return max(math.floor(cwnd * BETA), 2.0)

    def tx_start(self, idle_s: float, now: float):  # CA_EVENT_TX_START
        if self.epoch_start is not None and idle_s > 0:
            self.epoch_start = min(self.epoch_start + idle_s, now)

    def avoid(self, cwnd: float, acked: int, now: float, min_rtt: float) -> float:
        """Congestion avoidance: the window after ``acked`` more segments were delivered."""
        self.ack_cnt += acked
        if self.epoch_start is None:
            self.epoch_start = now
            self.ack_cnt = acked
            self.tcp_cwnd = cwnd
            if self.last_max <= cwnd:
                self.k, self.origin = 0.0, cwnd
            else:
                self.k = ((self.last_max - cwnd) / C) ** (1 / 3)
                self.origin = self.last_max
        t = now - self.epoch_start + min_rtt
        target = self.origin + C * (t - self.k) ** 3
        cnt = cwnd / (target - cwnd) if target > cwnd else 100 * cwnd
        if self.last_max == 0 and cnt > 20:
            cnt = 20  # the first epoch, before any loss
        # TCP friendliness: at least Reno's rate at the same β (one segment per ~1.9 cwnd ACKs)
        per = cwnd / FRIENDLY
        while self.ack_cnt > per:
            self.ack_cnt -= per
            self.tcp_cwnd += 1
        if self.tcp_cwnd > cwnd:
            cnt = min(cnt, cwnd / (self.tcp_cwnd - cwnd))
        cnt = max(cnt, 2.0)
        # tcp_cong_avoid_ai: credits accumulated at a larger cnt are applied gently, as one
        if self.cwnd_cnt >= cnt:
            self.cwnd_cnt = 0.0
            cwnd += 1
        self.cwnd_cnt += acked
        if self.cwnd_cnt >= cnt:
            grow = math.floor(self.cwnd_cnt / cnt)
            self.cwnd_cnt -= grow * cnt
            cwnd += grow
        return cwnd


class Ns3Cubic:
    """ns-3 3.44's ``TcpCubic`` (``src/internet/model/tcp-cubic.cc``; the ``rfc6675`` behaviour):
    the same curve as :class:`Cubic` in ns-3's arithmetic — whole segments and truncated
    targets, at most one segment per ACK, the ACK credit (``m_cWndCnt``) and the last maximum
    kept across a timeout, the epoch's time counted from the smallest smoothed RTT seen
    (``m_delayMin``, not taken within ``CubicDelta`` = 10 ms of an epoch's start), no shift of
    the epoch over idle time."""

    SCALE = int(8 * (1024 + BETA_NS3 * 1024) / 3 / (1024 - BETA_NS3 * 1024))
    DELTA_S = 0.01

    def __init__(self):
        self.cwnd_cnt, self.last_max = 0, 0
        self.epoch_start = None
        self.reset()

    def reset(self):  # CubicReset, on a timeout
        self.origin, self.k, self.ack_cnt, self.tcp_cwnd = 0, 0.0, 0, 0
        self.delay_min = None

    def ssthresh(self, cwnd: float) -> float:  # GetSsThresh
        seg = math.floor(cwnd)
        self.last_max = int(seg * (1 + BETA_NS3) / 2) if seg < self.last_max else seg
        self.epoch_start = None
        return float(max(int(seg * BETA_NS3), 2))

    def tx_start(self, idle_s: float, now: float):
        """ns-3 does not shift the epoch over idle time."""

    def pkts_acked(self, now: float, srtt: float):
        if self.epoch_start is not None and now - self.epoch_start < self.DELTA_S:
            return
        if self.delay_min is None or srtt < self.delay_min:
            self.delay_min = srtt

    def avoid(self, cwnd: float, acked: int, now: float, min_rtt: float) -> float:
        seg = math.floor(cwnd)
        self.cwnd_cnt += acked
        cnt = self._update(seg, acked, now)
        if self.cwnd_cnt >= cnt:
            cwnd += 1
            self.cwnd_cnt -= cnt
        return cwnd

    def _update(self, seg: int, acked: int, now: float) -> int:
        self.ack_cnt += acked
        if self.epoch_start is None:
            self.epoch_start, self.ack_cnt, self.tcp_cwnd = now, acked, seg
            if self.last_max <= seg:
                self.k, self.origin = 0.0, seg
            else:
                self.k, self.origin = ((self.last_max - seg) / C) ** (1 / 3), self.last_max
        t = now + (self.delay_min or 0.0) - self.epoch_start
        delta = int(C * abs(t - self.k) ** 3)
        target = self.origin + delta if t >= self.k else (self.origin - delta) % (1 << 32)
        cnt = seg // (target - seg) if target > seg else 100 * seg
        if self.last_max == 0 and cnt > 20:
            cnt = 20
        per = (seg * self.SCALE) >> 3
        while per and self.ack_cnt > per:
            self.ack_cnt -= per
            self.tcp_cwnd += 1
        if self.tcp_cwnd > seg:
            cnt = min(cnt, seg // (self.tcp_cwnd - seg))
        return max(cnt, 2)


def prr_window(in_flight, ssthresh, recover_fs, prr_delivered, prr_out, limit) -> float:
    """cwnd in recovery (RFC 6937): proportional to what was delivered while more than ssthresh
    is in flight (``recover_fs``: Linux takes the window at the start, ns-3 the flight size),
    else up to ssthresh by at most ``limit`` (the slow-start reduction bound, whose exact form
    differs between the stacks: :meth:`.tcp.Tcp.prr`); at least one segment at the start, to
    retransmit at once."""
    delta = ssthresh - in_flight
    if delta < 0:
        snd = math.ceil(ssthresh * prr_delivered / max(recover_fs, 1)) - prr_out
    else:
        snd = min(delta, limit)
    return in_flight + max(snd, 0 if prr_out else 1)


def restart_window(cwnd: float, initial_window: int, idle_s: float, rto_s: float) -> float:
    """cwnd when sending resumes after ``idle_s`` (> RTO) with nothing in flight: halved per RTO
    idle, down to the initial window (``tcp_slow_start_after_idle``)."""
    restart = min(float(initial_window), cwnd)
    idle = idle_s - rto_s
    while idle > 0 and cwnd > restart:
        cwnd = math.floor(cwnd / 2)
        idle -= rto_s
    return max(cwnd, restart)
