"""The event queue of the builtin simulator (:mod:`.netsim`, :mod:`.tcp`, :mod:`.mac`): events
are ``(time, priority, order)``-ordered callbacks. At equal times a freed transmitter is reused
before ACKs are read, ACKs before arrivals, arrivals before timers and timers before new frames
(the order a real sender sees them in is arbitrary; this one makes zero-loss runs exact); a
wireless MAC takes the channel last, once everything queued at that instant is in its queue.
"""

from __future__ import annotations

import heapq
import math

LINK, ACK, ARRIVE, TIMER, DELACK, READY, ACCESS = range(7)


class Events:
    """A discrete-event queue: ``at`` schedules ``fn(t, arg)``; ``run`` processes in order."""

    def __init__(self):
        self.heap: list = []
        self.order = 0

    def at(self, t: float, prio: int, fn, arg=None) -> None:
        heapq.heappush(self.heap, (t, prio, self.order, fn, arg))
        self.order += 1

    def run(self, until: float = math.inf) -> float:
        """Process events up to ``until``; the time of the last one processed."""
        heap, pop = self.heap, heapq.heappop
        t = -math.inf
        while heap and heap[0][0] <= until:
            t, _, _, fn, arg = pop(heap)
            fn(t, arg)
        return t
