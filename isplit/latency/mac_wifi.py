"""802.11n/ac in the builtin simulator (media ``wifi-n``, ``wifi-ac``): one channel shared by the
device's station, the access point and ``contenders`` saturated stations, with the timing of
the standard as ns-3 3.44 implements it (:mod:`.ns3_media` builds the same scene there).

* **PHY**: a PPDU lasts the preamble (HT-mixed 36 µs; VHT 40 µs) + ``4 µs · ceil((16 + 8·bytes
  + 6) / bits per symbol)`` (+ 6 µs signal extension at 2.4 GHz); the data rate is the profile's
  MCS (``wifi-n``: HT MCS 7, 20 MHz, long guard interval, 260 bits per symbol = 65 Mb/s;
  ``wifi-ac``: VHT MCS 9, 80 MHz, 1560 bits = 390 Mb/s).
* **MAC framing**: an MPDU is the IP packet + 8 bytes LLC/SNAP + a 26-byte QoS data header + 4
  bytes FCS. What the station's queue holds when it wins the channel goes in one A-MPDU (each
  MPDU with a 4-byte delimiter, padded to 4 bytes but the last; at most 64 MPDUs, 65,535 bytes
  and a PPDU of 5,484 µs) answered by a 32-byte block ACK; a single HT MPDU goes alone and is
  answered by a 14-byte ACK; both at 24 Mb/s OFDM after SIFS.
* **Access** (EDCA, best effort): a station transmits after the medium has been idle for AIFS
  (SIFS + 3 slots) and its backoff counter (slots, drawn uniformly from [0, CW] after each of its
  transmissions, counting down only while the medium is idle) has run out — at the next slot
  boundary if a frame arrives to an idle station whose counter is spent (ns-3 aligns its
  backoff to the slot grid). Two stations
  ending their backoff in the same slot collide: no ACK, both double CW (15 … 1023). A station
  whose MPDUs were all lost doubles CW; one whose block ACK came back resets it.
* **Loss**: the link's loss process per transmission of each of the device's MPDUs; a lost MPDU
  stays at the head of the queue and is sent again (at most 7 retries, then lost for IP), so
  loss becomes delay; ``reverse_loss`` for the access point's MPDUs to the device. Neither
  touches the ACKs.
* **In order**: the receiving MAC hands MPDUs up in the order they were queued (802.11's
  block-ACK reordering buffer): one received after a lost one waits until the lost one's retry
  arrives or is given up, so TCP sees MAC retries as delay, never as reordering.
* **Behind the AP** the server is ``delay`` away over a 100 Gb/s wire (:class:`.mac.Wire`; it
  decides which packets reach the AP's queue together).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from isplit.latency.engine import ACCESS, ACK, LINK

LLC_SNAP, QOS_HEADER, FCS, DELIMITER = 8, 26, 4, 4
BLOCK_ACK_BYTES, ACK_BYTES = 32, 14
CONTROL_BPS = 24e6  # the block ACK's and ACK's non-HT rate
RETRY_LIMIT = 7
CONTENDER_PACKET = 1472 + 8 + 20  # a saturating station's UDP datagram as an IP packet
BACKHAUL_BPS = 100e9
PPP_HEADER = 2


@dataclass(frozen=True)
class Phy:
    bits_per_symbol: int
    preamble_s: float
    extension_s: float
    sifs_s: float
    slot_s: float = 9e-6
    cw_min: int = 15
    cw_max: int = 1023
    aifsn: int = 3
    max_ppdu_s: float = 5.484e-3
    single_mpdu: bool = True  # HT: one MPDU goes without A-MPDU framing (VHT: never)

    @property
    def rate_bps(self) -> float:
        return self.bits_per_symbol / 4e-6

    @property
    def aifs_s(self) -> float:
        return self.sifs_s + self.aifsn * self.slot_s

    def ppdu_s(self, nbytes: int) -> float:
        symbols = math.ceil((16 + 8 * nbytes + 6) / self.bits_per_symbol)
        return self.preamble_s + 4e-6 * symbols + self.extension_s

    def control_s(self, nbytes: int) -> float:
        """A non-HT response frame at 24 Mb/s (96 bits per symbol)."""
        return 20e-6 + 4e-6 * math.ceil((16 + 8 * nbytes + 6) / 96) + self.extension_s


PHYS = {
    "wifi-n": Phy(260, 36e-6, 6e-6, 10e-6),
    "wifi-ac": Phy(1560, 40e-6, 0.0, 16e-6, single_mpdu=False),
}


def mpdu(ip_bytes: int) -> int:
    return ip_bytes + LLC_SNAP + QOS_HEADER + FCS


def psdu(ip_sizes, phy: Phy) -> int:
    """Bytes of the PSDU carrying these IP packets (one MPDU alone, or an A-MPDU)."""
    if len(ip_sizes) == 1 and phy.single_mpdu:
        return mpdu(ip_sizes[0])
    sub = [DELIMITER + mpdu(s) for s in ip_sizes]
    return sum(4 * math.ceil(b / 4) for b in sub[:-1]) + sub[-1]


class Station:
    """A transmitter on the channel: its queue, backoff and contention window."""

    def __init__(self, name, saturated=False):
        self.name, self.saturated = name, saturated
        self.q: deque = deque()
        self.cw = 15
        self.counter = 0  # backoff slots left, as of the start of the current idle period
        self.own = 0
        self.seq = 0  # the next MPDU's sequence number
        self.rx_next = 0  # the receiver's next sequence number to hand up
        self.rx_held: dict = {}  # seq → MPDU received (None: given up) above rx_next

    def has_data(self) -> bool:
        return self.saturated or bool(self.q)


class Wifi:
    """The shared channel (module doc). ``loss``/``reverse``: the loss processes of the device's
    and the access point's MPDUs; ``rng``: backoff draws."""

    def __init__(self, events, phy: Phy, delay, loss, reverse, rng, contenders, limit=None):
        from isplit.latency.mac import Wire

        self.ev, self.phy, self.delay, self.rng = events, phy, delay, rng
        self.to_server = Wire(events, BACKHAUL_BPS, delay, PPP_HEADER, None)
        self.from_server = Wire(events, BACKHAUL_BPS, delay, PPP_HEADER, None)
        self.loss, self.reverse, self.limit = loss, reverse, limit
        self.sta, self.ap = Station("sta"), Station("ap")
        self.stations = [self.sta, self.ap] + [
            Station(f"c{k}", saturated=True) for k in range(contenders)
        ]
        for st in self.stations:
            st.cw = phy.cw_min
            st.counter = int(rng.integers(0, st.cw + 1))
        self.busy = False
        self.idle_since = self.ppdu_end = 0.0
        self.gen = 0  # invalidates a scheduled access when the plan changes
        self.on_free = None
        if contenders:
            self._plan(0.0)

    # ------------------------------------------------------------------ queues
    def enqueue(self, st: Station, t, pkt) -> None:
        if st is self.sta and self.limit is not None and len(st.q) >= self.limit:
            if pkt[3] is not None:
                pkt[3](t, pkt[2], True)
            return
        was_empty = not st.q
        if was_empty and st.counter == 0 and self._busy_at(t):
            st.counter = int(self.rng.integers(0, st.cw + 1))  # busy medium: back off
        st.q.append([*pkt, 0, st.seq])  # nbytes, on_arrive, arg, on_lost, retries, seq
        st.seq += 1
        if pkt[1] is not None and st is self.sta:
            st.own += 1
        if was_empty and not self.busy:
            self._plan(t, arrival=st)

    def _busy_at(self, t) -> bool:
        """A PPDU or its ACK on the air (not the SIFS between them, as ns-3 sees it)."""
        return self.busy and not (self.ppdu_end <= t < self.ppdu_end + self.phy.sifs_s)

    def _ready_at(self, st: Station, t, arrival) -> float:
        start = self.idle_since + self.phy.aifs_s
        ready = start + st.counter * self.phy.slot_s
        if ready >= t:
            return ready
        # a spent counter: access at the next slot boundary (ns-3's EDCA aligns the backoff
        # start to the slot grid, so frames queued within the slot go together)
        return start + math.ceil((t - start) / self.phy.slot_s - 1e-9) * self.phy.slot_s

    def _plan(self, t, arrival=None):
        """Schedule the next transmission on the idle medium."""
        ready = [(self._ready_at(st, t, arrival), k) for k, st in enumerate(self.stations)]
        ready = [(r, k) for r, k in ready if self.stations[k].has_data()]
        if not ready:
            return
        first = min(r for r, _ in ready)
        winners = [k for r, k in ready if r - first < 1e-12]
        self.gen += 1
        self.ev.at(first, ACCESS, self._transmit, (self.gen, winners))

    # ------------------------------------------------------------------ air
    def _transmit(self, t, x):
        gen, winners = x
        if gen != self.gen or self.busy:
            return
        idle = t - self.idle_since - self.phy.aifs_s
        elapsed = max(0, math.floor(idle / self.phy.slot_s + 1e-9))
        for st in self.stations:  # the others freeze their counters
            st.counter = max(0, st.counter - elapsed)
        self.busy = True
        collision = len(winners) > 1
        end = t
        plans = []
        for k in winners:
            st = self.stations[k]
            batch = self._batch(st)
            sizes = [CONTENDER_PACKET] * batch if st.saturated else [p[0] for p in batch]
            air = self.phy.ppdu_s(psdu(sizes, self.phy))
            plans.append((st, batch, air))
            end = max(end, t + air)
        single = not collision and self._single(plans[0])
        reply = self.phy.control_s(ACK_BYTES if single else BLOCK_ACK_BYTES)
        done = end + self.phy.sifs_s + reply
        self.ppdu_end = end
        for st, batch, _ in plans:  # received at the PPDU's end; the medium is busy until done
            self.ev.at(end, LINK, self._after, (st, batch, collision))
        self.ev.at(done, LINK, self._idle, None)

    def _single(self, plan) -> bool:
        st, batch, _ = plan
        return self.phy.single_mpdu and not st.saturated and len(batch) == 1

    def _batch(self, st: Station):
        """What goes in the station's next PPDU: the head of its queue, as much as fits."""
        if st.saturated:
            n = 0
            while n < 64:
                nxt = psdu([CONTENDER_PACKET] * (n + 1), self.phy)
                if nxt > 65535 or self.phy.ppdu_s(nxt) > self.phy.max_ppdu_s:
                    break
                n += 1
            return max(n, 1)
        out = []
        for pkt in st.q:
            trial = [p[0] for p in out] + [pkt[0]]
            b = psdu(trial, self.phy)
            if out and (len(trial) > 64 or b > 65535 or self.phy.ppdu_s(b) > self.phy.max_ppdu_s):
                break
            out.append(pkt)
        return out

    def _after(self, t, x):
        st, batch, collision = x
        if st.saturated:
            ok = not collision
        else:
            ok = False
            loss = self.loss if st is self.sta else self.reverse
            for pkt in batch:
                lost = collision or (pkt[1] is not None and loss is not None and loss.lost())
                if lost:
                    pkt[4] += 1
                    if pkt[3] is not None:
                        pkt[3](t, pkt[2], pkt[4] > RETRY_LIMIT)
                    if pkt[4] > RETRY_LIMIT:
                        self._remove(st, pkt, t)
                        self._hand_up(st, t, pkt[5], None)
                else:
                    ok = True
                    self._remove(st, pkt, t)
                    self._hand_up(st, t, pkt[5], pkt)
        st.cw = self.phy.cw_min if ok else min(2 * st.cw + 1, self.phy.cw_max)
        st.counter = int(self.rng.integers(0, st.cw + 1))

    def _hand_up(self, st: Station, t, seq, pkt) -> None:
        """The receiver's reordering buffer: MPDUs of ``st`` go up in sequence order."""
        st.rx_held[seq] = pkt
        while st.rx_next in st.rx_held:
            p = st.rx_held.pop(st.rx_next)
            st.rx_next += 1
            if p is None or p[1] is None:
                continue
            if st is self.sta:  # on to the server over the wire behind the AP
                self.to_server.send(t, p[0], p[1], p[2])
            else:
                self.ev.at(t, ACK, p[1], p[2])

    def _remove(self, st, pkt, t):
        st.q.remove(pkt)
        if st is self.sta and pkt[1] is not None:
            st.own -= 1
            if self.on_free is not None:
                self.ev.at(t, LINK, lambda tt, _: self.on_free(tt))

    def stop(self) -> None:
        """The saturated stations fall silent: once the stream is over nothing else would end
        the run."""
        for st in self.stations:
            st.saturated = False

    def _idle(self, t, _):
        self.busy = False
        self.idle_since = t
        self._plan(t)


class Uplink:
    """The device's side of the channel as :mod:`.netsim` sees a link direction."""

    def __init__(self, wifi: Wifi):
        self.wifi = wifi

    @property
    def own(self) -> int:
        return self.wifi.sta.own

    @property
    def on_free(self):
        return self.wifi.on_free

    @on_free.setter
    def on_free(self, fn):
        self.wifi.on_free = fn

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        self.wifi.enqueue(self.wifi.sta, t, (nbytes, on_arrive, arg, on_lost))

    def stop(self) -> None:
        self.wifi.stop()


class Downlink:
    """Server → device: over the wire behind the access point, then the AP's queue."""

    def __init__(self, wifi: Wifi):
        self.wifi = wifi

    def send(self, t, nbytes, on_arrive=None, arg=None, on_lost=None):
        pkt = (nbytes, on_arrive, arg, on_lost)
        self.wifi.from_server.send(t, nbytes, self._at_ap, pkt)

    def _at_ap(self, t, pkt):
        self.wifi.enqueue(self.wifi.ap, t, pkt)


def zero_load_s(phy: Phy, ip_sizes, delay) -> float:
    """One frame's packets through an idle channel, as one access after AIFS (no backoff)."""
    total, batch = 0.0, []
    for s in ip_sizes:
        trial = batch + [s]
        if batch and phy.ppdu_s(psdu(trial, phy)) > phy.max_ppdu_s:
            total += phy.ppdu_s(psdu(batch, phy)) + phy.sifs_s + phy.control_s(BLOCK_ACK_BYTES)
            total += phy.aifs_s
            batch = [s]
        else:
            batch = trial
    return phy.aifs_s + total + phy.ppdu_s(psdu(batch, phy)) + delay
