"""SCNSL's TCP, as Split-Et-Impera simulates it (the ``tcp="sei"`` model of :mod:`.netsim`).

Cumulative ACK for every segment received (no delayed ACK), in-order delivery to the
application, a retransmission timer (RFC 6298 rules for starting and restarting it, its value
fixed at ``rto_s`` = 200 ms as in SCNSL, doubled on each consecutive timeout up to 60 s and reset
by new data being acknowledged), fast retransmit after ``dupacks`` duplicate ACKs and NewReno
partial-ACK handling (RFC 6582). No congestion control: the window is unlimited (``window=None``:
a frame is sent back-to-back) or a fixed number of segments in flight. No SACK, tail-loss probe
or RACK, so a lost last segment of a frame waits for the RTO — SCNSL's behaviour, and the reason
its p95 under loss is the 200 ms timeout. Kept to reproduce the original setting; the default is
:mod:`.tcp_linux`.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

RTO_MAX_S = 60.0  # RFC 6298 (2.5): an upper bound on the backed-off RTO

# event kinds, ordered so that at equal times a freed link is reused before new work arrives
_LINK_FREE, _ACK, _ARRIVE, _RTO, _READY = range(5)


def simulate(
    sizes,
    link,
    n_frames,
    fps,
    device_s,
    server_s,
    loss,
    ack_loss,
    ack_bytes,
    rto_s,
    dupacks,
    window,
):
    """Run the stream; per frame: delivery time at the receiver, capture time, whether one of
    its own packets was lost on first transmission (``dirty``), and event counts."""
    m = len(sizes)
    n_seg = m * n_frames
    bw, delay = link.bandwidth_bps, link.delay_s
    ser = [8 * s / bw for s in sizes]
    ack_ser = 8 * ack_bytes / bw
    dirty = np.zeros(n_frames, dtype=bool)
    rtos = 0

    heap: list = []
    order = 0

    def push(t, kind, arg=0):
        nonlocal order
        heapq.heappush(heap, (t, kind, order, arg))
        order += 1

    capture = np.zeros(n_frames)
    delivered = np.full(n_frames, np.nan)
    if fps:
        device_free = 0.0
        for i in range(n_frames):
            capture[i] = i / fps
            device_free = max(capture[i], device_free) + device_s
            push(device_free, _READY, i)
    else:
        push(device_s, _READY, 0)

    # sender
    avail = snd_nxt = snd_una = 0
    link_busy = False
    rtx: deque = deque()
    queued: set = set()
    dup = 0
    in_recovery = False
    recover = 0
    rto_cur = rto_s
    timer_gen = 0
    timer_on = False
    retransmissions = 0
    # receiver
    got = bytearray(n_seg)
    rcv_next = 0
    next_frame = 0
    rev_free = 0.0

    def start_timer(t):
        nonlocal timer_gen, timer_on
        timer_gen += 1
        timer_on = True
        push(t + rto_cur, _RTO, timer_gen)

    def try_send(t):
        nonlocal link_busy, snd_nxt, retransmissions
        if link_busy:
            return
        seg = -1
        retransmitting = False
        while rtx:
            s = rtx.popleft()
            queued.discard(s)
            if s >= snd_una:
                seg = s
                retransmissions += 1
                retransmitting = True
                break
        if seg < 0:
            if snd_nxt >= avail or (window is not None and snd_nxt - snd_una >= window):
                return
            seg = snd_nxt
            snd_nxt += 1
        d = ser[seg % m]
        link_busy = True
        push(t + d, _LINK_FREE)
        if not loss.lost():
            push(t + d + delay, _ARRIVE, seg)
        elif not retransmitting:
            dirty[seg // m] = True
        if not timer_on:
            start_timer(t)

    def queue_rtx(s, front=False):
        if s in queued:
            return
        queued.add(s)
        if front:
            rtx.appendleft(s)
        else:
            rtx.append(s)

    while heap:
        t, kind, _, arg = heapq.heappop(heap)
        if kind == _LINK_FREE:
            link_busy = False
            try_send(t)
        elif kind == _ARRIVE:
            if not got[arg]:
                got[arg] = 1
                while rcv_next < n_seg and got[rcv_next]:
                    rcv_next += 1
                while next_frame < n_frames and rcv_next >= (next_frame + 1) * m:
                    delivered[next_frame] = t
                    if not fps and next_frame + 1 < n_frames:
                        # closed loop: the next frame is captured when this one is done
                        capture[next_frame + 1] = t + server_s
                        push(t + server_s + device_s, _READY, next_frame + 1)
                    next_frame += 1
            rev_free = max(t, rev_free) + ack_ser
            if ack_loss is None or not ack_loss.lost():
                push(rev_free + delay, _ACK, rcv_next)
        elif kind == _ACK:
            a = arg
            if a > snd_una:
                snd_una = a
                dup = 0
                rto_cur = rto_s
                if in_recovery:
                    if a >= recover:
                        in_recovery = False
                    else:  # NewReno partial ACK: the next hole is lost too
                        queue_rtx(a, front=True)
                if snd_una < snd_nxt:
                    start_timer(t)
                else:
                    timer_gen += 1
                    timer_on = False
            elif a == snd_una and snd_una < snd_nxt:
                dup += 1
                if dup == dupacks and not in_recovery:
                    in_recovery = True
                    recover = snd_nxt
                    queue_rtx(a, front=True)
            try_send(t)
        elif kind == _RTO:
            if arg != timer_gen:
                continue  # a timer that was restarted or stopped since
            timer_on = False
            if snd_una < snd_nxt:
                rtos += 1
                queue_rtx(snd_una, front=True)
                in_recovery = True
                recover = snd_nxt
                dup = 0
                rto_cur = min(2 * rto_cur, RTO_MAX_S)
                start_timer(t)
                # start_timer used the doubled value: RFC 6298 (5.5) backs off before (5.6)
            try_send(t)
        else:  # _READY
            avail += m
            try_send(t)

    counts = {"retransmissions": retransmissions, "rto": rtos, "tlp": 0, "recoveries": 0}
    return delivered, capture, dirty, counts
