"""The same camera stream in ns-3, the field's reference network simulator (``latency.simulator:
ns3``; ``pip install isplit[ns3]``).

Why beside :mod:`.netsim`: a reader can hold our fast simulator against ns-3's TCP/IP stack on the
same link, and the Wi-Fi profiles can use a real 802.11 MAC (contention, rate, link-layer
retransmissions) instead of a wire with residual i.i.d. loss.

Scenarios (both carry one stream from node 0, the device, to node 1, the server):

* ``medium="wire"`` (every profile): a point-to-point link of the profile's rate and one-way
  delay (``PointToPointHelper``, a 2-byte PPP header, an unbounded device queue, no queue
  discipline), and a ``RateErrorModel`` dropping packets that arrive at the server with the loss
  rate (i.i.d.; switched on after the TCP handshake, since the simulators compare established
  connections). TCP is ns-3's ``TcpCubic`` with SACK, timestamps, PRR recovery, initial window
  10, minimum RTO 200 ms, delayed ACKs every second segment or 40 ms, no Nagle. ns-3 (3.44) has no
  RACK and no tail loss probe: a lost last segment waits for the RTO, as in SCNSL.
* ``medium="wifi"`` (``wifi-n``, ``wifi-ac``): a station and an access point 5 m apart on an
  802.11n (HtMcs7, 20 MHz) or 802.11ac (VhtMcs9, 80 MHz) channel at constant rate; the loss rate
  is applied to received frames *before* the MAC acknowledges them
  (``WifiPhy::PostReceptionErrorModel``), so the MAC retransmits them (up to 7 times) and the
  profile's loss becomes link-layer delay rather than IP loss. The profile's bandwidth and delay
  are not used: the MAC and PHY decide them.

A frame is written to the socket when it is ready (TCP: one write of ``frame_bytes``, segmented by
the stack into ``payload``-byte segments; UDP: ``ceil(frame_bytes / payload)`` datagrams with an
8-byte header naming the frame); it is delivered when its last byte (TCP) or its last datagram
(UDP) arrives. Capture, device and server compute, the closed loop and ``fps`` are as in
:mod:`.netsim`, so :func:`simulate` returns the same :class:`.netsim.SimResult` (stratified
percentiles included). ns-3's random streams are seeded with ``seed`` (RngRun = seed + 1).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from isplit.latency import loss as lossmod
from isplit.latency import netsim, stats

UDP_TAG = 8  # frame id (u32), datagram index (u16), datagram count (u16)
START_S = 1.0  # the stream starts after the handshake
WIFI = {
    "wifi-n": ("WIFI_STANDARD_80211n", "HtMcs7", 20),
    "wifi-ac": ("WIFI_STANDARD_80211ac", "VhtMcs9", 80),
}

_CPP = r"""
#include <vector>
namespace isplit_ns3 {
using namespace ns3;

class FrameStream {
 public:
  std::vector<double> capture, done;
  std::vector<int> got;
  FrameStream(bool tcp, uint32_t frameBytes, uint32_t payload, uint32_t nFrames, double fps,
              double deviceS, double serverS, double frameTimeS)
      : tcp(tcp), frameBytes(frameBytes), payload(payload), nFrames(nFrames), fps(fps),
        deviceS(deviceS), serverS(serverS), frameTimeS(frameTimeS),
        capture(nFrames, 0.0), done(nFrames, -1.0), got(nFrames, 0) {}

  void Start(Ptr<Socket> tx, Ptr<Socket> rx, double startS) {
    this->tx = tx;
    if (tcp) {
      rx->SetAcceptCallback(MakeNullCallback<bool, Ptr<Socket>, const Address&>(),
                            MakeCallback(&FrameStream::Accept, this));
      tx->SetSendCallback(MakeCallback(&FrameStream::Space, this));
    } else {
      rx->SetRecvCallback(MakeCallback(&FrameStream::RecvUdp, this));
      // a warm-up burst (frame id out of range, ignored): the MAC's block-ack agreement and
      // queues are set up before the first frame, as the TCP handshake does for TCP
      Simulator::Schedule(Seconds(startS / 2), &FrameStream::WarmUp, this);
    }
    t0 = startS;
    if (fps > 0) {
      double deviceFree = 0;
      for (uint32_t i = 0; i < nFrames; i++) {
        capture[i] = i / fps;
        deviceFree = std::max(capture[i], deviceFree) + deviceS;
        Simulator::Schedule(Seconds(t0 + deviceFree), &FrameStream::Ready, this, i);
      }
    } else {
      Simulator::Schedule(Seconds(t0 + deviceS), &FrameStream::Ready, this, 0);
    }
  }

 private:
  bool tcp;
  uint32_t frameBytes, payload, nFrames;
  double fps, deviceS, serverS, frameTimeS, t0 = 0;
  Ptr<Socket> tx;
  uint64_t pending = 0, received = 0;
  uint32_t next = 0;

  void WarmUp() {
    uint8_t head[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0};
    for (int k = 0; k < 8; k++) tx->Send(Create<Packet>(head, 8));
  }
  void Accept(Ptr<Socket> s, const Address&) {
    s->SetRecvCallback(MakeCallback(&FrameStream::RecvTcp, this));
  }
  void Ready(uint32_t i) {
    if (tcp) {
      pending += frameBytes;
      Space(tx, tx->GetTxAvailable());
      return;
    }
    uint32_t count = std::max<uint32_t>(1, (frameBytes + payload - 1) / payload);
    for (uint32_t k = 0; k < count; k++) {
      uint32_t len = std::min(payload, frameBytes - std::min(frameBytes, k * payload));
      std::vector<uint8_t> buf(8 + len, 0);
      memcpy(buf.data(), &i, 4);
      uint16_t idx = k, cnt = count;
      memcpy(buf.data() + 4, &idx, 2);
      memcpy(buf.data() + 6, &cnt, 2);
      tx->Send(Create<Packet>(buf.data(), buf.size()));
    }
    if (fps <= 0 && i + 1 < nFrames) {  // closed loop without feedback: when it would be done
      double t = Simulator::Now().GetSeconds() - t0 + frameTimeS + serverS;
      capture[i + 1] = t;
      Simulator::Schedule(Seconds(frameTimeS + serverS + deviceS), &FrameStream::Ready, this,
                          i + 1);
    }
  }
  void Space(Ptr<Socket> s, uint32_t avail) {
    while (pending > 0 && s->GetTxAvailable() > 0) {
      uint32_t n = std::min<uint64_t>(pending, s->GetTxAvailable());
      int sent = s->Send(Create<Packet>(n));
      if (sent <= 0) break;
      pending -= sent;
    }
  }
  void Delivered(uint32_t i) {
    double now = Simulator::Now().GetSeconds() - t0;
    done[i] = now;
    if (tcp && fps <= 0 && i + 1 < nFrames) {
      capture[i + 1] = now + serverS;
      Simulator::Schedule(Seconds(serverS + deviceS), &FrameStream::Ready, this, i + 1);
    }
  }
  void RecvTcp(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() > 0) {
      received += p->GetSize();
      while (next < nFrames && received >= (uint64_t)(next + 1) * frameBytes) Delivered(next++);
    }
  }
  void RecvUdp(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() >= 8) {
      uint8_t head[8];
      p->CopyData(head, 8);
      uint32_t i;
      uint16_t cnt;
      memcpy(&i, head, 4);
      memcpy(&cnt, head + 6, 2);
      if (i < nFrames && ++got[i] == cnt) Delivered(i);
    }
  }
};

void SetErrorModelEnabled(Ptr<ErrorModel> em, bool on) {
  if (on) em->Enable(); else em->Disable();
}
void ScheduleErrorModel(Ptr<ErrorModel> em, double atS) {
  Simulator::Schedule(Seconds(atS), &SetErrorModelEnabled, em, true);
}
}  // namespace isplit_ns3
"""


def medium_of(profile: str) -> str:
    """The ns-3 scenario of a network profile (module doc)."""
    return profile if profile in WIFI else "wire"


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
        ns.cppyy.cppdef(_CPP)
    return ns


def _tcp_defaults(ns, payload: int, rto_s: float, initial_window: int) -> None:
    cfg = ns.Config.SetDefault
    cfg("ns3::TcpL4Protocol::SocketType", ns.StringValue("ns3::TcpCubic"))
    cfg("ns3::TcpL4Protocol::RecoveryType", ns.StringValue("ns3::TcpPrrRecovery"))
    cfg("ns3::TcpSocket::SegmentSize", ns.UintegerValue(payload))
    cfg("ns3::TcpSocket::InitialCwnd", ns.UintegerValue(initial_window))
    cfg("ns3::TcpSocket::DelAckCount", ns.UintegerValue(2))
    cfg("ns3::TcpSocket::DelAckTimeout", ns.TimeValue(ns.MilliSeconds(40)))
    cfg("ns3::TcpSocket::SndBufSize", ns.UintegerValue(1 << 26))
    cfg("ns3::TcpSocket::RcvBufSize", ns.UintegerValue(1 << 26))
    cfg("ns3::TcpSocket::TcpNoDelay", ns.BooleanValue(True))
    cfg("ns3::TcpSocketBase::MinRto", ns.TimeValue(ns.Seconds(rto_s)))
    cfg("ns3::TcpSocketBase::Sack", ns.BooleanValue(True))
    cfg("ns3::TcpSocketBase::Timestamp", ns.BooleanValue(True))


def _wire(ns, nodes, link, loss: float):
    p2p = ns.PointToPointHelper()
    p2p.SetDeviceAttribute("DataRate", ns.DataRateValue(ns.DataRate(int(link.bandwidth_bps))))
    p2p.SetChannelAttribute("Delay", ns.TimeValue(ns.Seconds(link.delay_s)))
    p2p.SetDeviceAttribute("Mtu", ns.UintegerValue(int(link.mtu)))
    p2p.SetQueue(
        "ns3::DropTailQueue<Packet>", "MaxSize", ns.QueueSizeValue(ns.QueueSize("1000000p"))
    )
    devices = p2p.Install(nodes)
    em = ns.CreateObject[ns.RateErrorModel]()
    em.SetAttribute("ErrorRate", ns.DoubleValue(loss))
    em.SetAttribute("ErrorUnit", ns.StringValue("ERROR_UNIT_PACKET"))
    em.Disable()
    devices.Get(1).SetAttribute("ReceiveErrorModel", ns.PointerValue(em))
    return devices, em


def _wifi(ns, nodes, medium: str, loss: float):
    standard, mode, width = WIFI[medium]
    wifi = ns.WifiHelper()
    wifi.SetStandard(getattr(ns, standard))
    wifi.SetRemoteStationManager(
        "ns3::ConstantRateWifiManager",
        "DataMode",
        ns.StringValue(mode),
        "ControlMode",
        ns.StringValue(mode),
    )
    channel = ns.YansWifiChannelHelper.Default()
    phy = ns.YansWifiPhyHelper()
    phy.SetChannel(channel.Create())
    band = "BAND_5GHZ" if width > 20 else "BAND_2_4GHZ"
    phy.Set("ChannelSettings", ns.StringValue(f"{{0, {width}, {band}, 0}}"))
    em = ns.CreateObject[ns.RateErrorModel]()
    em.SetAttribute("ErrorRate", ns.DoubleValue(loss))
    em.SetAttribute("ErrorUnit", ns.StringValue("ERROR_UNIT_PACKET"))
    em.Disable()
    phy.Set("PostReceptionErrorModel", ns.PointerValue(em))
    mac = ns.WifiMacHelper()
    ssid = ns.Ssid("isplit")
    mac.SetType("ns3::StaWifiMac", "Ssid", ns.SsidValue(ssid))
    sta = wifi.Install(phy, mac, nodes.Get(0))
    mac.SetType("ns3::ApWifiMac", "Ssid", ns.SsidValue(ssid))
    ap = wifi.Install(phy, mac, nodes.Get(1))
    mobility = ns.MobilityHelper()
    pos = ns.CreateObject[ns.ListPositionAllocator]()
    pos.Add(ns.Vector(0.0, 0.0, 0.0))
    pos.Add(ns.Vector(5.0, 0.0, 0.0))
    mobility.SetPositionAllocator(pos)
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel")
    mobility.Install(nodes)
    devices = ns.NetDeviceContainer()
    devices.Add(sta)
    devices.Add(ap)
    return devices, em


def simulate(
    frame_bytes: int,
    link: netsim.Link,
    protocol: str,
    *,
    n_frames: int = 200,
    fps: float | None = None,
    device_s: float = 0.0,
    server_s: float = 0.0,
    seed: int = 0,
    payload: int = 1448,
    rto_s: float = 0.2,
    initial_window: int = 10,
    medium: str = "wire",
    loss_model=None,
    n_boot: int = 200,
    **_ignored,
) -> netsim.SimResult:
    """The stream in ns-3 (module doc); arguments as :func:`.netsim.simulate`, which this can
    stand in for (options ns-3 has no counterpart for are ignored). ``payload``: the TCP segment
    size and the UDP datagram data size."""
    if (loss_model or {}).get("kind", "iid") != "iid":
        raise ValueError("the ns-3 scenarios model i.i.d. loss only (a RateErrorModel)")
    if medium != "wire" and medium not in WIFI:
        raise ValueError(f"medium must be 'wire' or one of {sorted(WIFI)}, got {medium!r}")
    ns = _ns()
    p = protocol.lower()
    tcp = p == "tcp"
    ns.RngSeedManager.SetSeed(1)
    ns.RngSeedManager.SetRun(int(seed) + 1)
    if tcp:
        _tcp_defaults(ns, int(payload), float(rto_s), int(initial_window))
    nodes = ns.NodeContainer()
    nodes.Create(2)
    ns.InternetStackHelper().Install(nodes)
    if medium == "wire":
        devices, em = _wire(ns, nodes, link, link.loss)
    else:
        devices, em = _wifi(ns, nodes, medium, link.loss)
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.1.1.0"), ns.Ipv4Mask("255.255.255.0"))
    ifaces = addresses.Assign(devices)
    ns.TrafficControlHelper().Uninstall(devices)
    # static ARP entries: an ARP exchange would delay the first frame (ns-3 holds 3 packets)
    ns.NeighborCacheHelper().PopulateNeighborCache()
    kind = ns.TcpSocketFactory.GetTypeId() if tcp else ns.UdpSocketFactory.GetTypeId()
    server = ifaces.GetAddress(1)
    rx = ns.Socket.CreateSocket(nodes.Get(1), kind)
    rx.Bind(ns.InetSocketAddress(ns.Ipv4Address.GetAny(), 9).ConvertTo())
    if tcp:
        rx.Listen()
    tx = ns.Socket.CreateSocket(nodes.Get(0), kind)
    tx.Bind()
    tx.Connect(ns.InetSocketAddress(server, 9).ConvertTo())
    data = int(payload) if tcp else int(payload)
    wire = netsim.packet_sizes(
        int(frame_bytes),
        link.mtu,
        p,
        data,
        app_header=0 if tcp else UDP_TAG,
        transport_header=32 if tcp else 8,
        link_header=2,
    )
    frame_time = 8 * sum(wire) / link.bandwidth_bps + link.delay_s
    stream = ns.cppyy.gbl.isplit_ns3.FrameStream(
        tcp,
        int(frame_bytes),
        data,
        int(n_frames),
        float(fps or 0),
        float(device_s),
        float(server_s),
        frame_time,
    )
    stream.Start(tx, rx, START_S)
    ns.cppyy.gbl.isplit_ns3.ScheduleErrorModel(em, START_S - 0.01)
    horizon = START_S + n_frames * (frame_time + device_s + server_s + 1.0 / (fps or 1e9)) + 120
    ns.Simulator.Stop(ns.Seconds(horizon))
    ns.Simulator.Run()
    done = np.array(list(stream.done), dtype=float)
    capture = np.array(list(stream.capture), dtype=float)
    ns.Simulator.Destroy()
    lost = done < 0
    if tcp and lost.any():
        raise RuntimeError(f"ns-3: {int(lost.sum())} TCP frames undelivered within {horizon} s")
    lat = np.full(n_frames, np.nan)
    lat[~lost] = netsim._server_queue(done[~lost], capture[~lost], server_s)
    model = lossmod.LossModel(link.loss)
    k = len(wire)
    p_clean = lossmod.clean_probability(model, k) if medium == "wire" else 1.0
    delivered = ~lost
    # ns-3 does not say which frames lost a packet: one stratum (plain sample percentiles)
    pct = stats.stratified(
        lat[delivered], np.ones(int(delivered.sum()), int), {1: 1.0}, n_boot=n_boot, seed=seed
    )
    return netsim.SimResult(
        latency_s=lat[delivered],
        lost=lost,
        p50=pct.p50,
        p95=pct.p95,
        frame_loss=float(lost.mean()) if not tcp else 0.0,
        fps_max=1.0 / max(device_s, 8 * sum(wire) / link.bandwidth_bps, server_s),
        packets_per_frame=k,
        wire_bytes_per_frame=sum(wire),
        capture_s=capture,
        clean=np.ones(n_frames, dtype=bool),
        p_clean=p_clean,
        frame_loss_sim=float(lost.mean()),
        percentiles=pct,
        counts={},
    )
