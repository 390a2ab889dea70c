"""One model of a link and of a camera stream over it, shared by the builtin simulator
(:mod:`.netsim`), ns-3 (:mod:`.ns3sim`) and the real-network harness
(``tools/lossy_validation.py``): each backend reads the same :class:`Link` and :class:`Stream`
and either honours every field or refuses the run, naming the field.

* :class:`Link`: rate and one-way delay each way, the largest IP packet (MTU), the medium (a wire,
  or a wireless MAC: :mod:`.mac`), the loss process of data packets device → server (average rate
  and i.i.d. or Gilbert–Elliott bursts, :mod:`.loss`), loss of packets server → device (ACKs and
  answers), other flows' share of the uplink (``cross_traffic``), the uplink's drop-tail queue.
* :class:`Stream`: frame size, frames, camera rate or closed loop, device and server compute, the
  packetisation (application chunk and headers), the answer's size, and the transport with its
  options (:class:`TcpOptions`).

Packetisation as Split-Et-Impera's transmitter does it (docs/methods.md §5.1): a frame is cut into
chunks of ``payload`` bytes (SEI: 1010); each chunk gets SEI's application header (8 B over TCP, 14
B over UDP), the transport header (TCP 20 B, UDP 8 B) and IPv4 (20 B), and a chunk never makes an
IP packet larger than the MTU. A frame of 0 bytes still sends one header-only packet. On a wire
the link adds ``link_header`` bytes per packet (14: SCNSL's Ethernet header; preamble, FCS and
gap not counted); a wireless medium adds its own framing (:mod:`.mac`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from isplit.latency import loss as lossmod

ETH_HEADER = 14  # SCNSL's extra link-layer header
IP_HEADER = 20
IPV6_HEADER = 40  # 802.15.4 carries IPv6 (6LoWPAN compresses it on the air)
TCP_HEADER = 20
UDP_HEADER = 8
APP_HEADER = {"tcp": 8, "udp": 14}  # SEI's per-packet application header
TRANSPORT_HEADER = {"tcp": TCP_HEADER, "udp": UDP_HEADER}
SEI_PAYLOAD = 1010  # SEI transmitter: buffer_len (1024) − 14
ANSWER_BYTES = 8  # the server's answer: a class index and the frame's number
PROTOCOLS = ("tcp", "udp")
MEDIA = ("wire", "wifi-n", "wifi-ac", "lte", "ieee802154")
# the TCP behaviours of the builtin model (tcp.py says what each has); ns-3 has rfc6675 only
BEHAVIOURS = ("linux", "rfc6675", "sei")


@dataclass(frozen=True)
class Link:
    """A link between the device and the server (module doc). ``queue``: packets the uplink's
    drop-tail queue holds besides the one being sent (``None``: unbounded). ``cross_traffic``:
    the share of the uplink's rate that other flows use (Poisson arrivals of MTU-sized packets
    into the same queue). ``contenders``: stations saturating a shared wireless channel."""

    bandwidth_bps: float
    delay_s: float
    loss: float = 0.0
    mtu: int = 1500
    medium: str = "wire"
    link_header: int = ETH_HEADER
    loss_model: dict | None = field(default=None, hash=False)
    reverse_loss: float = 0.0
    cross_traffic: float = 0.0
    queue: int | None = None
    contenders: int = 0

    def __post_init__(self):
        if not self.bandwidth_bps > 0:
            raise ValueError(f"bandwidth_bps must be > 0, got {self.bandwidth_bps}")
        if not self.delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if not 0 <= self.reverse_loss < 1:
            raise ValueError(f"reverse_loss must be in [0, 1), got {self.reverse_loss}")
        if not 0 <= self.cross_traffic < 1:
            raise ValueError(f"cross_traffic must be in [0, 1), got {self.cross_traffic}")
        if self.queue is not None and self.queue < 1:
            raise ValueError(f"queue must be >= 1 packet or None, got {self.queue}")
        if self.medium not in MEDIA:
            raise ValueError(f"medium must be one of {MEDIA}, got {self.medium!r}")
        if self.contenders < 0 or (self.contenders and not self.medium.startswith("wifi")):
            raise ValueError(
                f"contenders ({self.contenders}) are stations on a shared Wi-Fi channel: "
                f"needs a wifi medium and >= 0, the medium is {self.medium!r}"
            )
        if self.link_header < 0 or self.mtu < IP_HEADER + 1:
            raise ValueError(f"link_header must be >= 0 and mtu > 20, got {self}")
        self.loss_process()  # validates the loss model

    @property
    def ip_header(self) -> int:
        return IPV6_HEADER if self.medium == "ieee802154" else IP_HEADER

    def loss_process(self) -> lossmod.LossModel:
        return lossmod.from_config(self.loss, self.loss_model)

    def with_loss(self, loss: float) -> Link:
        return replace(self, loss=float(loss))


@dataclass(frozen=True)
class TcpOptions:
    """The builtin TCP model's options (``behaviour``: :data:`BEHAVIOURS`). ``None`` takes the
    behaviour's own value; an option a behaviour has no counterpart for is refused
    (:meth:`resolved`). ``window``: segments in flight at most (the receiver's window)."""

    behaviour: str = "linux"
    rto_s: float = 0.2
    dupacks: int = 3
    window: int | None = None
    initial_window: int | None = None
    slow_start_after_idle: bool | None = None
    delayed_ack: bool | None = None

    def resolved(self) -> TcpOptions:
        """Every ``None`` replaced by the behaviour's value; a contradiction raises."""
        b = self.behaviour
        if b not in BEHAVIOURS:
            raise ValueError(f"tcp must be one of {BEHAVIOURS}, got {b!r}")
        if not self.rto_s > 0 or self.dupacks < 1:
            raise ValueError(f"rto_s must be > 0 and dupacks >= 1: {self.rto_s}, {self.dupacks}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None, got {self.window}")
        if b == "sei":
            for name in ("initial_window", "slow_start_after_idle"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs a congestion window; tcp: sei has none")
            return replace(self, delayed_ack=bool(self.delayed_ack))
        iw = 10 if self.initial_window is None else int(self.initial_window)
        if iw < 1:
            raise ValueError(f"initial_window must be >= 1, got {iw}")
        ssai = self.slow_start_after_idle
        if ssai is None:
            ssai = b == "linux"  # ns-3's TCP (rfc6675) never restarts the window after idle
        delack = True if self.delayed_ack is None else bool(self.delayed_ack)
        return replace(self, initial_window=iw, slow_start_after_idle=ssai, delayed_ack=delack)


@dataclass(frozen=True)
class Stream:
    """Frames from the device's camera to the server and the answers back (module doc).

    ``fps=None`` is closed loop: frame ``i + 1`` is captured when frame ``i``'s answer is back
    (one frame in flight). ``answer_bytes=0``: no answer, a frame is done when the server has
    computed it (SEI's definition). ``app_header`` / ``transport_header``: ``None`` = SEI's."""

    frame_bytes: int
    protocol: str = "tcp"
    n_frames: int = 200
    fps: float | None = None
    device_s: float = 0.0
    server_s: float = 0.0
    payload: int = SEI_PAYLOAD
    app_header: int | None = None
    transport_header: int | None = None
    answer_bytes: int = ANSWER_BYTES
    tcp: TcpOptions = TcpOptions()

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.frame_bytes < 0 or self.answer_bytes < 0:
            raise ValueError(f"frame and answer bytes must be >= 0: {self.frame_bytes}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0 or None, got {self.fps}")
        if self.device_s < 0 or self.server_s < 0:
            raise ValueError("device_s and server_s must be >= 0")
        if self.payload < 1:
            raise ValueError(f"payload must be >= 1, got {self.payload}")
        if min(self.app, self.transport) < 0:
            raise ValueError("header sizes must be >= 0")
        if self.protocol == "tcp":
            self.tcp.resolved()  # validates

    @property
    def app(self) -> int:
        p = self.protocol
        return APP_HEADER[p] if self.app_header is None else int(self.app_header)

    @property
    def transport(self) -> int:
        p = self.protocol
        return TRANSPORT_HEADER[p] if self.transport_header is None else int(self.transport_header)

    def chunk(self, mtu: int, ip_header: int = IP_HEADER) -> int:
        """Application bytes per packet: SEI's chunk, unless the MTU forces smaller ones."""
        room = int(mtu) - ip_header - self.transport - self.app
        if room < 1:
            raise ValueError(f"MTU {mtu} leaves no room for data under the {self.protocol} headers")
        return min(int(self.payload), room)

    def ip_packets(self, mtu: int, ip_header: int = IP_HEADER) -> list[int]:
        """IP packet sizes (bytes, headers included) of one frame."""
        chunk = self.chunk(mtu, ip_header)
        head = self.app + self.transport + ip_header
        n = max(1, math.ceil(self.frame_bytes / chunk))
        sizes = [chunk + head] * n
        sizes[-1] = self.frame_bytes - chunk * (n - 1) + head
        return sizes

    def answer_packet(self, ip_header: int = IP_HEADER) -> int:
        """IP bytes of the answer (0: no answer)."""
        if not self.answer_bytes:
            return 0
        return self.answer_bytes + self.app + self.transport + ip_header

    def ack_packet(self, ip_header: int = IP_HEADER) -> int:
        return self.transport + ip_header


def packets(link: Link, stream: Stream) -> list[int]:
    """IP packet sizes of one frame over ``link`` (its MTU and IP version)."""
    return stream.ip_packets(link.mtu, link.ip_header)


def wire_sizes(link: Link, stream: Stream) -> list[int]:
    """Bytes on a wire per packet of one frame: IP packet + the link's header."""
    return [s + link.link_header for s in packets(link, stream)]


def clean_weight(link: Link, stream: Stream) -> float:
    """Exact probability that neither a frame's packets nor its answer meet a loss: the weight
    of the clean stratum in :mod:`.stats`. Known where the medium draws loss a fixed number of
    times per frame (a wire; the first transmission of each Wi-Fi MPDU without contenders; LTE's
    residual loss after the radio); NaN where fragments, retries or collisions make that number
    random (802.15.4, contended Wi-Fi): then one stratum, plain sample percentiles."""
    if link.medium == "ieee802154" or link.contenders:
        return math.nan
    p = lossmod.clean_probability(link.loss_process(), len(packets(link, stream)))
    return p * (1 - link.reverse_loss) ** (stream.answer_bytes > 0)


def serialisation_s(link: Link, stream: Stream) -> float:
    """Time a wire is busy sending one frame: every packet with its headers."""
    return 8 * sum(wire_sizes(link, stream)) / link.bandwidth_bps


def answer_s(link: Link, stream: Stream) -> float:
    """The answer's way back over an idle wire (0 without an answer)."""
    size = stream.answer_packet(link.ip_header)
    return 0.0 if not size else 8 * (size + link.link_header) / link.bandwidth_bps + link.delay_s


def analytic_latency(link: Link, stream: Stream) -> float:
    """Zero-loss latency on an idle wire: device compute + serialisation of all packets (headers
    included) + one propagation delay + server compute + the answer's way back. Packets go back
    to back, so only the last one's propagation adds up."""
    return (
        stream.device_s
        + serialisation_s(link, stream)
        + link.delay_s
        + stream.server_s
        + answer_s(link, stream)
    )


def fps_max(link: Link, stream: Stream) -> float:
    """Throughput bound of the pipeline device → link → server: its slowest stage sets it."""
    return 1.0 / max(stream.device_s, serialisation_s(link, stream), stream.server_s)
