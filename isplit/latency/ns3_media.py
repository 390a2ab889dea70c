"""The wireless profiles' MACs in ns-3 (:mod:`.ns3sim`): 802.11n/ac with contending stations, the
LTE uplink with HARQ, and IEEE 802.15.4 with 6LoWPAN — the scenes :func:`build` sets up.

* **Wi-Fi** (``wifi-n``: 802.11n, 2.4 GHz, 20 MHz, HtMcs7; ``wifi-ac``: 802.11ac, 5 GHz, 80 MHz,
  VhtMcs9; constant rate, long guard interval, A-MPDU aggregation and block ACKs as ns-3 sets them
  up): the device is a station 5 m from the access point, which reaches the server over a wire
  of the profile's delay (rate 100 Gb/s: a LAN behind the AP). ``contenders`` more stations 5 m
  from the AP send UDP datagrams of 1,472 bytes as fast as their MAC takes them (saturated).
  The loss process applies to the device's data frames as the AP's PHY receives them, before the
  MAC acknowledges them (``WifiPhy::PostReceptionErrorModel``), so the MAC retransmits; the
  link-layer ACKs and the other stations' frames are never lost to it.
"""

from __future__ import annotations

import math

from isplit.latency.link import Link, Stream

WIFI = {
    # medium: standard, data mode, width (MHz), band
    "wifi-n": ("WIFI_STANDARD_80211n", "HtMcs7", 20, "BAND_2_4GHZ"),
    "wifi-ac": ("WIFI_STANDARD_80211ac", "VhtMcs9", 80, "BAND_5GHZ"),
}
BACKHAUL_BPS = 100e9
LOWPAN_DISTANCE_M = 10.0
LTE_RB, LTE_DISTANCE_M = 50, 50.0  # 10 MHz; close to the eNB
LTE_CONNECT_S, LTE_START_S = 0.5, 1.5
CONNECT_S = 0.5  # after association / attachment
START_S = 1.5
LLC_SNAP = 8  # in front of the IP header in an 802.11 MSDU


def check(link: Link, stream: Stream) -> None:
    """Refuse what the wireless scenes cannot honour."""
    if link.medium == "ieee802154":
        if link.reverse_loss or link.cross_traffic or link.queue is not None:
            raise ValueError(
                "ieee802154 in ns-3: reverse_loss, cross_traffic and queue are not built into "
                "the 6LoWPAN scene; use the builtin simulator for them"
            )
        if link.loss_process().kind != "iid":
            raise ValueError("ieee802154 in ns-3: only i.i.d. loss of MAC data frames")
        return
    if link.medium == "lte":
        if link.reverse_loss or link.queue is not None:
            raise ValueError(
                "lte in ns-3: reverse_loss and a queue in packets are not built into the LTE "
                "scene (its RLC buffer counts bytes); use the builtin simulator for them"
            )
        return
    if link.medium in WIFI:
        return
    raise ValueError(f"medium {link.medium!r}: no ns-3 scene")


def build(ns, nodes, link: Link, stream: Stream, rng, models_for):
    """The scene of ``link.medium`` around the device (node 0) and the server (node 1): the
    server's address, the loss models, when the stream starts, when the device connects."""
    if link.medium == "ieee802154":
        return _lowpan(ns, nodes, link, models_for)
    if link.medium == "lte":
        return _lte(ns, nodes, link, models_for)
    return _wifi(ns, nodes, link, models_for)


def _lte(ns, nodes, link: Link, models_for):
    """UE (the device) → eNB → EPC (S1-U, SGW/PGW) → the server over a wire of the profile's
    delay. RLC unacknowledged mode with a buffer that never drops (as the builtin model's
    queue), the UE 50 m from the eNB (a clean channel: HARQ rarely needed), the loss process on
    the device's IP packets into the PGW (after the radio: residual loss)."""
    from isplit.latency.ns3sim import STREAMS

    cfg = ns.Config.SetDefault
    cfg("ns3::LteRlcUm::MaxTxBufferSize", ns.UintegerValue(1 << 26))
    cfg("ns3::LteEnbNetDevice::UlBandwidth", ns.UintegerValue(LTE_RB))
    cfg("ns3::LteEnbNetDevice::DlBandwidth", ns.UintegerValue(LTE_RB))
    lte = ns.CreateObject[ns.LteHelper]()
    epc = ns.CreateObject[ns.PointToPointEpcHelper]()
    lte.SetEpcHelper(epc)
    _keep.extend([lte, epc])
    pgw = epc.GetPgwNode()
    wire = ns.cppyy.gbl.isplit_ns3.InstallWire(
        pgw, nodes.Get(1), BACKHAUL_BPS, float(link.delay_s), int(link.mtu), 0, 1_000_000
    )
    up, _ = models_for(2)
    wire.Get(1).SetAttribute("ReceiveErrorModel", ns.PointerValue(up))
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("1.0.0.0"), ns.Ipv4Mask("255.0.0.0"))
    server = addresses.Assign(wire).GetAddress(1)
    routing = ns.Ipv4StaticRoutingHelper()
    srv = routing.GetStaticRouting(nodes.Get(1).GetObject[ns.Ipv4]())
    srv.AddNetworkRouteTo(ns.Ipv4Address("7.0.0.0"), ns.Ipv4Mask("255.0.0.0"), 1)
    enb = ns.NodeContainer()
    enb.Create(1)
    _place(ns, LTE_DISTANCE_M, enb, ns.NodeContainer(nodes.Get(0)))
    enbd = lte.InstallEnbDevice(enb)
    ued = lte.InstallUeDevice(ns.NodeContainer(nodes.Get(0)))
    lte.AssignStreams(enbd, STREAMS["media"])
    lte.AssignStreams(ued, STREAMS["media"] + 50)
    epc.AssignUeIpv4Address(ns.NetDeviceContainer(ued))
    ue = routing.GetStaticRouting(nodes.Get(0).GetObject[ns.Ipv4]())
    ue.SetDefaultRoute(epc.GetUeDefaultGatewayAddress(), 1)
    lte.Attach(ued, enbd.Get(0))
    return server, [up], LTE_START_S, LTE_CONNECT_S


def _place(ns, distance_m: float, *containers) -> None:
    """Fixed positions on a line ``distance_m`` apart, in the order of ``containers``' nodes."""
    mobility = ns.MobilityHelper()
    pos = ns.CreateObject[ns.ListPositionAllocator]()
    for i in range(sum(c.GetN() for c in containers)):
        pos.Add(ns.Vector(i * distance_m, 0.0, 0.0))
    mobility.SetPositionAllocator(pos)
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel")
    for c in containers:
        mobility.Install(c)


def _lowpan(ns, nodes, link: Link, models_for):
    from isplit.latency.ns3sim import STREAMS

    _place(ns, LOWPAN_DISTANCE_M, nodes)  # before the devices: their PHYs take it at install
    lr = ns.LrWpanHelper()
    _keep.append(lr)  # its destructor disposes of the channel: it must outlive the run
    lr.SetPropagationDelayModel("ns3::ConstantSpeedPropagationDelayModel")
    lr.AddPropagationLossModel("ns3::LogDistancePropagationLossModel")
    devices = lr.Install(nodes)
    lr.CreateAssociatedPan(devices, 1)
    lr.AssignStreams(devices, STREAMS["media"])
    six = ns.SixLowPanHelper()
    sixdev = six.Install(devices)
    up, _ = models_for(0)
    up.LowPan()
    phy = ns.DynamicCast[ns.lrwpan.LrWpanNetDevice](devices.Get(1)).GetPhy()
    phy.SetPostReceptionErrorModel(up)
    addresses = ns.Ipv6AddressHelper()
    addresses.SetBase(ns.Ipv6Address("2001:db8::"), ns.Ipv6Prefix(64))
    ifaces = addresses.Assign(sixdev)
    six.AddContext(sixdev, 0, ns.Ipv6Prefix("2001:db8::", 64), ns.Seconds(1e6))
    ns.cppyy.gbl.isplit_ns3.StaticNeighbours(
        nodes.Get(0), nodes.Get(1), sixdev.Get(0), sixdev.Get(1)
    )
    return ifaces.GetAddress(1, 1), [up], START_S, CONNECT_S


def _wifi(ns, nodes, link: Link, models_for):
    from isplit.latency.ns3sim import CROSS_PORT, STREAMS

    standard, mode, width, band = WIFI[link.medium]
    ap = ns.NodeContainer()
    ap.Create(1)
    others = ns.NodeContainer()
    if link.contenders:
        others.Create(link.contenders)
    stack = ns.InternetStackHelper()
    stack.Install(ap)
    if link.contenders:
        stack.Install(others)
    wifi = ns.WifiHelper()
    wifi.SetStandard(getattr(ns, standard))
    wifi.SetRemoteStationManager(
        "ns3::ConstantRateWifiManager", "DataMode", ns.StringValue(mode),
        "ControlMode", ns.StringValue(mode),
    )  # fmt: skip
    phy = ns.YansWifiPhyHelper()
    phy.SetChannel(ns.YansWifiChannelHelper.Default().Create())
    phy.Set("ChannelSettings", ns.StringValue(f"{{0, {width}, {band}, 0}}"))
    mac = ns.WifiMacHelper()
    ssid = ns.Ssid("isplit")
    stations = ns.NodeContainer()
    stations.Add(nodes.Get(0))
    stations.Add(others)
    mac.SetType("ns3::StaWifiMac", "Ssid", ns.SsidValue(ssid))
    sta = wifi.Install(phy, mac, stations)
    mac.SetType("ns3::ApWifiMac", "Ssid", ns.SsidValue(ssid))
    apd = wifi.Install(phy, mac, ap)
    mobility = ns.MobilityHelper()
    pos = ns.CreateObject[ns.ListPositionAllocator]()
    pos.Add(ns.Vector(0.0, 0.0, 0.0))
    for k in range(stations.GetN()):
        a = 2 * math.pi * k / max(stations.GetN(), 1)
        pos.Add(ns.Vector(5 * math.cos(a), 5 * math.sin(a), 0.0))
    mobility.SetPositionAllocator(pos)
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel")
    mobility.Install(ap)
    mobility.Install(stations)
    devices = ns.NetDeviceContainer()
    devices.Add(sta)
    devices.Add(apd)
    wifi.AssignStreams(devices, STREAMS["media"])
    up, rev = models_for(LLC_SNAP)
    ap_phy = ns.DynamicCast[ns.WifiNetDevice](apd.Get(0)).GetPhy()
    ap_phy.SetPostReceptionErrorModel(up)
    models = [up]
    if rev is not None:
        ns.DynamicCast[ns.WifiNetDevice](sta.Get(0)).GetPhy().SetPostReceptionErrorModel(rev)
        models.append(rev)
    wire = ns.cppyy.gbl.isplit_ns3.InstallWire(
        ap.Get(0), nodes.Get(1), BACKHAUL_BPS, float(link.delay_s), int(link.mtu), 0, 1_000_000
    )
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.1.1.0"), ns.Ipv4Mask("255.255.255.0"))
    addresses.Assign(devices)
    addresses.SetBase(ns.Ipv4Address("10.1.2.0"), ns.Ipv4Mask("255.255.255.0"))
    server = addresses.Assign(wire).GetAddress(1)
    ns.Ipv4GlobalRoutingHelper.PopulateRoutingTables()
    ns.NeighborCacheHelper().PopulateNeighborCache()
    # association flushes the stations' ARP caches: without this, a frame's fourth packet
    # onwards waited for ARP in a queue of three and the first frame was lost
    ns.cppyy.gbl.isplit_ns3.PopulateNeighborsAt(CONNECT_S)
    for k in range(link.contenders):
        s = ns.Socket.CreateSocket(others.Get(k), ns.UdpSocketFactory.GetTypeId())
        s.Bind()
        s.Connect(ns.InetSocketAddress(server, CROSS_PORT).ConvertTo())
        rate = 2 * _phy_rate(link)  # offered at twice what the PHY carries: always backlogged
        c = ns.cppyy.gbl.isplit_ns3.Cross(s, 1472, 8 * 1500 / rate, STREAMS["cross"] + 1 + k)
        c.Start(CONNECT_S)
        _keep.append(c)
    return server, models, START_S, CONNECT_S


_keep: list = []  # C++ objects the simulation holds by raw pointer, alive until it ends


def release() -> None:
    _keep.clear()


def _phy_rate(link: Link) -> float:
    return link.bandwidth_bps
