"""The same :class:`.link.Link` and :class:`.link.Stream` in ns-3 3.44, the field's reference
network simulator (``latency.simulator: ns3``; ``pip install isplit[ns3]``).

Why beside :mod:`.netsim`: a reader can hold the builtin simulator against an independent
implementation of the same link, and the wireless profiles get real MACs (:mod:`.ns3_media`:
802.11n/ac with contending stations, the LTE uplink with HARQ, 802.15.4 with 6LoWPAN).

What this backend honours, and what it refuses (a ``ValueError`` naming the field, never a
silent substitute — :func:`check`):

* **TCP** is ns-3's ``TcpSocketBase``: CUBIC, SACK, PRR, initial window, minimum RTO, delayed
  ACKs every second segment or 40 ms, duplicate threshold, no Nagle. That is the builtin model's
  behaviour ``rfc6675``; ``linux`` (RACK, tail loss probe, small queues) and ``sei`` (SCNSL's TCP)
  are refused, and so is ``slow_start_after_idle`` (ns-3 has no restart after idle). ``window``
  is the server's receive buffer; timestamps follow ``transport_header`` (32: on, 20: off).
* **The wire** (medium ``wire``): a point-to-point link of the link's rate and delay whose frames
  carry ``link_header`` bytes (PPP's 2 plus padding: an Ethernet header is 14), a drop-tail queue
  of ``queue`` packets, no queue discipline, static ARP.
* **Loss**: a loss process on data packets into the server (i.i.d. or Gilbert–Elliott, as
  :mod:`.loss`; ACKs pass), switched on after the handshake; ``reverse_loss`` on everything into
  the device; ``cross_traffic`` as Poisson UDP datagrams of the MTU from the device.
* **The stream**: TCP writes each frame as the bytes of its chunks and application headers
  (segments of ``chunk + app_header``), the answer likewise; UDP sends one datagram per chunk
  whose first 8 application bytes name the frame (so ``app_header`` ≥ 8), the answer one
  datagram back. Closed loop: the next frame when the answer is back, or, for a lost UDP frame,
  after a timeout of twice the frame's zero-load latency (the builtin model moves on when the
  frame's last packet would have arrived).

Reproducible: ns-3's global state is reset before each run (attribute defaults, the automatic
random stream counter, address allocators), ``RngSeedManager`` gets seed 1 and run ``seed + 1``,
and every random variable has a fixed stream: the same seed gives the same numbers bit for bit,
also in one process. Robust: the simulation runs until every frame is answered or given up, with
a limit of 20 zero-load stream durations + 60 s; frames still unanswered then count as lost
(``frame_loss``, ``counts["undelivered"]``), with no exception.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from isplit.latency import loss as lossmod
from isplit.latency import mac, netsim
from isplit.latency.link import Link, Stream, clean_weight, fps_max, packets

START_S = 1.0  # the stream starts after the handshake (and association, on a wireless link)
CROSS_PORT = 10  # the cross traffic's sink; its datagrams are not the stream's
TAG = 8  # UDP: frame id (u32), datagram index (u16), datagram count (u16)
STREAMS = {"uplink": 11, "reverse": 12, "cross": 13, "media": 100}
CPP = Path(__file__).with_name("ns3_stream.cc")


def unavailable() -> str | None:
    """Why ns-3 cannot be used here, or ``None`` (its stub module exits the interpreter when the
    package is missing, so it is looked up, not imported)."""
    if importlib.util.find_spec("ns3") is None:
        return "the ns3 package is not installed (pip install 'isplit[ns3]')"
    return None


def _ns():
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    from ns import ns

    if not hasattr(ns.cppyy.gbl, "isplit_ns3"):
        ns.cppyy.cppdef(CPP.read_text())
    return ns


def check_settings(st) -> None:
    """Refuse a latency config ns-3 cannot honour before any simulation starts."""
    if "tcp" in st.protocols:
        _check_tcp(st.tcp, st.slow_start_after_idle)


def _check_tcp(behaviour: str, slow_start_after_idle) -> None:
    if behaviour != "rfc6675":
        raise ValueError(
            f"tcp: {behaviour}: ns-3 3.44 has only its own TCP (SACK recovery of RFC 6675, PRR, "
            "CUBIC; no RACK, tail loss probe or small queues) - set tcp: rfc6675 for "
            "simulator: ns3, or use the builtin simulator"
        )
    if slow_start_after_idle:
        raise ValueError("slow_start_after_idle: ns-3 3.44 does not restart the window after idle")


def check(link: Link, stream: Stream) -> None:
    """Raise ``ValueError`` naming the first field this backend cannot honour (module doc)."""
    if stream.protocol == "tcp":
        o = stream.tcp.resolved()
        _check_tcp(o.behaviour, o.slow_start_after_idle)
        if stream.transport not in (20, 32):
            raise ValueError(
                f"transport_header {stream.transport}: ns-3's TCP header is 20 bytes, 32 with "
                "timestamps"
            )
    else:
        if stream.transport != 8:
            raise ValueError(f"transport_header {stream.transport}: a UDP header is 8 bytes")
        if stream.app < TAG:
            raise ValueError(
                f"app_header {stream.app}: ns-3's datagrams carry an {TAG}-byte frame tag; "
                f"give app_header >= {TAG}"
            )
    if link.medium == "wire" and link.link_header < 2:
        raise ValueError(f"link_header {link.link_header}: ns-3's wire has PPP's 2 bytes at least")
    if link.medium != "wire":
        from isplit.latency import ns3_media

        ns3_media.check(link, stream)


def _reset(ns, seed: int) -> None:
    """ns-3's process-wide state back to a fresh start, then the run's seed."""
    ns.Config.Reset()
    ns.RngSeedManager.ResetNextStreamIndex()
    ns.RngSeedManager.SetSeed(1)
    ns.RngSeedManager.SetRun(int(seed) + 1)
    for mac_type in (ns.Mac48Address, ns.Mac16Address, ns.Mac64Address, ns.Mac8Address):
        mac_type.ResetAllocationIndex()
    ns.Ipv4AddressGenerator.Reset()
    ns.Ipv6AddressGenerator.Reset()
    # addresses are set up, not discovered: no duplicate address detection holding IPv6 back
    ns.Config.SetDefault("ns3::Icmpv6L4Protocol::DAD", ns.BooleanValue(False))


def _tcp_defaults(ns, stream: Stream, link: Link) -> None:
    o = stream.tcp.resolved()
    seg = stream.chunk(link.mtu, link.ip_header) + stream.app
    cfg = ns.Config.SetDefault
    cfg("ns3::TcpL4Protocol::SocketType", ns.StringValue("ns3::TcpCubic"))
    cfg("ns3::TcpL4Protocol::RecoveryType", ns.StringValue("ns3::TcpPrrRecovery"))
    cfg("ns3::TcpSocket::SegmentSize", ns.UintegerValue(seg))
    cfg("ns3::TcpSocket::InitialCwnd", ns.UintegerValue(o.initial_window))
    cfg("ns3::TcpSocket::DelAckCount", ns.UintegerValue(2 if o.delayed_ack else 1))
    cfg("ns3::TcpSocket::DelAckTimeout", ns.TimeValue(ns.MilliSeconds(40)))
    cfg("ns3::TcpSocket::SndBufSize", ns.UintegerValue(1 << 26))
    rcv = 1 << 26 if o.window is None else o.window * seg
    cfg("ns3::TcpSocket::RcvBufSize", ns.UintegerValue(rcv))
    cfg("ns3::TcpSocket::TcpNoDelay", ns.BooleanValue(True))
    cfg("ns3::TcpSocket::DataRetries", ns.UintegerValue(1000))  # never give up a connection
    cfg("ns3::TcpSocketBase::MinRto", ns.TimeValue(ns.Seconds(o.rto_s)))
    cfg("ns3::TcpSocketBase::ReTxThreshold", ns.UintegerValue(o.dupacks))
    cfg("ns3::TcpSocketBase::Sack", ns.BooleanValue(True))
    cfg("ns3::TcpSocketBase::Timestamp", ns.BooleanValue(stream.transport == 32))
    cfg("ns3::TcpCubic::HyStart", ns.BooleanValue(False))  # the builtin model has none


def loss_model(ns, rate: float, spec, *, offset: int, data_only: bool, stream: int, rng):
    """A :class:`DataLoss` error model for the loss process ``rate``/``spec`` (off until
    :func:`isplit_ns3.EnableLater`)."""
    model = lossmod.from_config(rate, spec)
    trans, loss, pi = model.chain()
    em = ns.CreateObject[ns.cppyy.gbl.isplit_ns3.DataLoss]()
    if len(loss) == 1:
        em.Configure(offset, data_only, CROSS_PORT, float(loss[0]), 0.0, 0.0, 1.0, False, stream)
    else:
        bad = bool(rng.random() < pi[1])
        em.Configure(
            offset, data_only, CROSS_PORT, float(loss[0]), float(loss[1]), float(trans[0, 1]),
            float(trans[1, 0]), bad, stream,
        )  # fmt: skip
    em.Disable()
    return em


def _models(ns, link: Link, rng):
    """A function giving the loss models (uplink data, reverse or ``None``) for a medium whose
    frames carry ``offset`` bytes in front of the IP header."""

    def make(offset: int):
        up = loss_model(ns, link.loss, link.loss_model, offset=offset, data_only=True,
                        stream=STREAMS["uplink"], rng=rng)  # fmt: skip
        rev = None
        if link.reverse_loss:
            rev = loss_model(ns, link.reverse_loss, None, offset=offset, data_only=False,
                             stream=STREAMS["reverse"], rng=rng)  # fmt: skip
        return up, rev

    return make


def _wire(ns, nodes, link: Link, models_for):
    """Device (node 0) and server (node 1) on a point-to-point wire."""
    queue = 1_000_000 if link.queue is None else int(link.queue)
    devices = ns.cppyy.gbl.isplit_ns3.InstallWire(
        nodes.Get(0), nodes.Get(1), float(link.bandwidth_bps), float(link.delay_s),
        int(link.mtu), int(link.link_header - 2), queue,
    )  # fmt: skip
    up, rev = models_for(2)
    devices.Get(1).SetAttribute("ReceiveErrorModel", ns.PointerValue(up))
    models = [up]
    if rev is not None:
        devices.Get(0).SetAttribute("ReceiveErrorModel", ns.PointerValue(rev))
        models.append(rev)
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.1.1.0"), ns.Ipv4Mask("255.255.255.0"))
    ifaces = addresses.Assign(devices)
    ns.NeighborCacheHelper().PopulateNeighborCache()
    return ifaces.GetAddress(1), models, START_S, 0.0


def _address(ns, server, port: int, any_: bool = False):
    """A socket address on the server's IP version (802.15.4 carries IPv6)."""
    if "Ipv6" in type(server).__name__:
        ip = ns.Ipv6Address.GetAny() if any_ else server
        return ns.Inet6SocketAddress(ip, port).ConvertTo()
    ip = ns.Ipv4Address.GetAny() if any_ else server
    return ns.InetSocketAddress(ip, port).ConvertTo()


def zero_load_s(link: Link, stream: Stream) -> float:
    """A frame's latency on an idle link (the builtin model's), for timeouts and the limit."""
    return netsim.zero_load_latency(link, stream)


def simulate(link: Link, stream: Stream, *, seed: int = 0, n_boot: int = 200) -> netsim.SimResult:
    """The stream in ns-3 (module doc); the same arguments and result as
    :func:`.netsim.simulate`."""
    done, capture, drops = run(link, stream, seed)
    tcp = stream.protocol == "tcp"
    sizes = packets(link, stream)
    lost = done < 0
    latency = np.where(lost, np.nan, done - capture)
    app = stream.app
    dirty = _dirty(drops, stream, stream.frame_bytes + app * len(sizes), stream.answer_bytes + app)
    p_clean = clean_weight(link, stream)
    return netsim.result(
        latency,
        capture,
        lost,
        ~dirty,
        p_clean=p_clean,
        frame_loss=(1 - p_clean) if not tcp and link.medium == "wire" else None,
        fps_max=fps_max(link, stream) if link.medium == "wire" else math.nan,
        packets=len(sizes),
        wire_bytes=sum(sizes) + link.link_header * len(sizes),
        n_boot=n_boot,
        seed=seed,
        counts={"undelivered": int(lost.sum()) if tcp else 0},
    )


def run(link: Link, stream: Stream, seed: int, script=None):
    """One ns-3 run: per frame the answer's time (-1: never) and the capture time (both from
    the stream's start), and per loss model its drop log (key, first, data, index).
    ``script``: drop exactly these data packets (their numbers in sending order) instead of
    drawing losses."""
    check(link, stream)
    ns = _ns()
    _reset(ns, seed)
    tcp = stream.protocol == "tcp"
    rng = np.random.default_rng(seed)
    if tcp:
        _tcp_defaults(ns, stream, link)
    nodes = ns.NodeContainer()
    nodes.Create(2)
    ns.InternetStackHelper().Install(nodes)
    models_for = _models(ns, link, rng)
    if link.medium == "wire":
        server, models, start, connect_s = _wire(ns, nodes, link, models_for)
    else:
        from isplit.latency import ns3_media

        server, models, start, connect_s = ns3_media.build(ns, nodes, link, stream, rng, models_for)
    src, dst = nodes.Get(0), nodes.Get(1)
    kind = ns.TcpSocketFactory.GetTypeId() if tcp else ns.UdpSocketFactory.GetTypeId()
    rx = ns.Socket.CreateSocket(dst, kind)
    rx.Bind(_address(ns, server, 9, any_=True))
    if tcp:
        rx.Listen()
    v6 = "Ipv6" in type(server).__name__
    tx = ns.Socket.CreateSocket(src, kind)
    tx.Bind6() if v6 else tx.Bind()
    ns.cppyy.gbl.isplit_ns3.ConnectAt(tx, _address(ns, server, 9), connect_s)
    sizes = packets(link, stream)
    chunk, app = stream.chunk(link.mtu, link.ip_header), stream.app
    per_frame = stream.frame_bytes + app * len(sizes)
    last = sizes[-1] - app - stream.transport - link.ip_header
    t0 = zero_load_s(link, stream)
    fs = ns.cppyy.gbl.isplit_ns3.FrameStream(
        tcp, per_frame, chunk, app, len(sizes), last, stream.n_frames, float(stream.fps or 0),
        float(stream.device_s), float(stream.server_s),
        stream.answer_bytes + app if stream.answer_bytes else 0, 2 * t0 + 0.05,
    )  # fmt: skip
    cross = None
    if link.cross_traffic:
        sink = ns.Socket.CreateSocket(dst, ns.UdpSocketFactory.GetTypeId())
        sink.Bind(_address(ns, server, CROSS_PORT, any_=True))
        cs = ns.Socket.CreateSocket(src, ns.UdpSocketFactory.GetTypeId())
        cs.Bind6() if v6 else cs.Bind()
        ns.cppyy.gbl.isplit_ns3.ConnectAt(cs, _address(ns, server, CROSS_PORT), connect_s)
        size = link.mtu - link.ip_header - 8
        gap = 8 * (link.mtu + link.link_header) / (link.cross_traffic * link.bandwidth_bps)
        cross = ns.cppyy.gbl.isplit_ns3.Cross(cs, size, gap, STREAMS["cross"])
        cross.Start(max(connect_s + 0.01, start - mac.warmup_s(link)))
        fs.cross = cross
    fs.Start(tx, rx, start)
    if script is not None:
        models[0].Script(sorted(int(i) for i in script))
    for em in models:
        ns.cppyy.gbl.isplit_ns3.EnableLater(em, start - 0.01)
    per = max(t0, 1.0 / stream.fps if stream.fps else 0.0)
    limit = start + 20 * stream.n_frames * per + 60
    ns.cppyy.gbl.isplit_ns3.StopAt(limit)
    ns.Simulator.Run()
    done = np.array(list(fs.done), dtype=float)
    capture = np.array(list(fs.capture), dtype=float)
    drops = [
        (list(em.dropKey), list(em.dropFirst), list(em.dropData), list(em.dropIndex))
        for em in models
    ]  # read before the objects go
    ns.Simulator.Destroy()
    if link.medium != "wire":
        from isplit.latency import ns3_media

        ns3_media.release()
    return done, capture, drops


def _dirty(drops, stream: Stream, per_frame: int, per_answer: int) -> np.ndarray:
    """Frames one of whose packets (first transmissions) or answers the loss models dropped."""
    n = stream.n_frames
    dirty = np.zeros(n, dtype=bool)
    for k, (keys, first, data, _) in enumerate(drops):
        size = per_frame if k == 0 else per_answer
        for key, f, d in zip(keys, first, data, strict=True):
            if not d or key < 0:
                continue
            i = key if stream.protocol == "udp" else key // max(size, 1)
            if (f or k > 0) and i < n:
                dirty[int(i)] = True
    return dirty
