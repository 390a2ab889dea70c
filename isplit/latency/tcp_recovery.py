"""Loss detection and timeouts of the Linux TCP model (:mod:`.tcp_linux`): RACK (RFC 8985,
``tcp_rack_detect_loss``), the reordering, tail-loss-probe and retransmission timers
(``tcp_rack_reo_timeout``, ``tcp_send_loss_probe``, ``tcp_retransmit_timer``). Plain functions
of the sender's state ``tcp`` (a :class:`.tcp_linux` run); the module docstring there says what
each mechanism does and where Linux does it.
"""

from __future__ import annotations

import heapq

LINUX_HZ = 250
JIFFY_S = 1.0 / LINUX_HZ
TIMEOUT_MIN_S = 2 * JIFFY_S  # TCP_TIMEOUT_MIN
RTO_MAX_S = 120.0  # TCP_RTO_MAX
OPEN, CWR, RECOVERY, LOSS = range(4)  # congestion states (tcp_set_ca_state)
RTO, PTO, REO = range(3)  # what the single retransmission timer slot holds


def mark_lost(tcp, s):
    """Mark segment ``s`` lost (again, if its retransmission was lost) and queue it."""
    if tcp.retr[s]:
        tcp.retr[s] = 0
        tcp.retrans_out -= 1
    if not tcp.lost[s]:
        tcp.lost[s] = 1
        tcp.lost_out += 1
    heapq.heappush(tcp.rtx, s)


def rack_advance(tcp, t, s):
    """RACK's reference point: the most recently sent segment known delivered."""
    xs = tcp.xmit[s]
    rtt = t - xs
    if rtt < tcp.min_rtt and tcp.ever[s]:
        return  # may be the original's ACK: ambiguous
    tcp.rack_rtt = rtt
    if xs > tcp.rack_xmit or (xs == tcp.rack_xmit and s > tcp.rack_seq):
        tcp.rack_xmit, tcp.rack_seq = xs, s


def rack_detect(tcp, t) -> bool:
    """Mark segments RACK deems lost; True when the reordering timer was armed."""
    if tcp.rack_xmit < 0:
        return False
    reo = 0.0
    if tcp.state < RECOVERY and tcp.sacked_out < tcp.o.dupthresh:
        reo = min(tcp.min_rtt / 4, tcp.srtt)
    wait = 0.0
    for s in tcp.tsorted:
        if tcp.lost[s] and not tcp.retr[s]:
            continue
        xs = tcp.xmit[s]
        if not (xs < tcp.rack_xmit or (xs == tcp.rack_xmit and s < tcp.rack_seq)):
            break
        remaining = tcp.rack_rtt + reo - (t - xs)
        if remaining <= 0:
            mark_lost(tcp, s)
        else:
            wait = max(wait, remaining)
    if wait > 0:
        tcp.arm(REO, t, wait + TIMEOUT_MIN_S)
        return True
    return False


def on_timer(tcp, t, gen):
    """The retransmission timer slot expired: reordering timeout, loss probe or RTO."""
    if gen != tcp.timer_gen:
        return
    kind, tcp.timer_kind = tcp.timer_kind, None
    if tcp.out() == 0:
        return
    if kind == REO:  # tcp_rack_reo_timeout
        prior_lost = tcp.lost_out
        rack_detect(tcp, t)
        if tcp.lost_out > prior_lost and tcp.state != RECOVERY and tcp.state != LOSS:
            tcp.enter_recovery()
            tcp.prr(1, False, True)
        tcp.try_send(t)
        if tcp.timer_kind != RTO:
            tcp.rearm_rto(t)
    elif kind == PTO:  # tcp_send_loss_probe
        tcp.counts["tlp"] += 1
        if tcp.tlp_high < 0:
            if tcp.snd_nxt < tcp.avail and tcp.in_flight() < tcp.cwnd:
                tcp.try_send(t)
            else:
                s = tcp.snd_nxt - 1
                if not tcp.sacked[s]:
                    tcp.tlp_seg, tcp.tlp_dup = s, False
                    tcp.probe = s
                    tcp.try_send(t)
            tcp.tlp_high = tcp.snd_nxt
        tcp.clear_timer()
        tcp.rearm_rto(t)
    else:  # tcp_retransmit_timer → tcp_enter_loss
        tcp.counts["rto"] += 1
        if tcp.state in (OPEN, CWR):
            tcp.ssthresh = tcp.cc.ssthresh(tcp.cwnd)
        tcp.cc.reset()  # CUBIC forgets its epoch and maximum in the loss state
        for s in list(tcp.tsorted):
            if not tcp.sacked[s]:
                mark_lost(tcp, s)
        tcp.state, tcp.high_seq, tcp.tlp_high = LOSS, tcp.snd_nxt, -1
        tcp.cwnd = tcp.in_flight() + 1.0
        tcp.rto = min(2 * tcp.rto, RTO_MAX_S)
        tcp.arm(RTO, t, tcp.rto)
        tcp.try_send(t)
