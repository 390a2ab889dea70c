// The camera stream in ns-3 (isplit/latency/ns3sim.py compiles this with cppyy): the device's
// frames and the server's answers over real ns-3 sockets, a loss process for data packets, a
// point-to-point device whose frames carry any link-layer header, and Poisson cross traffic.
#include <algorithm>
#include <cstring>
#include <vector>

namespace isplit_ns3 {
using namespace ns3;

// Drops packets carrying transport data (a TCP segment with payload, a UDP datagram of the
// stream) with an i.i.d. or Gilbert-Elliott process, and logs what it dropped; ACKs pass (or,
// with dataOnly false, everything is subject to it: the reverse direction). ipOffset: bytes in
// front of the IPv4 header (PPP 2, LLC/SNAP 8, none on LTE's IP).
class DataLoss : public ErrorModel {
 public:
  static TypeId GetTypeId() {
    static TypeId tid =
        TypeId("isplit_ns3::DataLoss").SetParent<ErrorModel>().AddConstructor<DataLoss>();
    return tid;
  }
  std::vector<int64_t> dropKey;  // UDP: frame id; TCP: stream offset of the segment
  std::vector<int> dropFirst;    // 1: a first transmission
  std::vector<int> dropData;     // 1: it carried data (else a pure ACK)
  std::vector<uint64_t> dropIndex;  // its number among the packets subject to loss
  uint64_t seen = 0, dropped = 0;

  DataLoss() : m_rng(CreateObject<UniformRandomVariable>()) {}
  // 802.15.4: drop MAC data frames (any fragment), never ACKs; what they carry is not parsed
  void LowPan() { m_lowpan = true; }
  void Configure(uint32_t ipOffset, bool dataOnly, uint16_t skipPort, double goodLoss,
                 double badLoss, double pGoodBad, double pBadGood, bool startBad,
                 int64_t stream) {
    m_offset = ipOffset;
    m_dataOnly = dataOnly;
    m_skipPort = skipPort;
    m_loss[0] = goodLoss;
    m_loss[1] = badLoss;
    m_pgb = pGoodBad;
    m_pbg = pBadGood;
    m_bad = startBad;
    m_rng->SetStream(stream);
  }
  // drop exactly these packets (numbers among those subject to loss), no random draws: the
  // scripted losses of the tests, identical in both simulators
  void Script(std::vector<uint64_t> drops) { m_script = drops; m_scripted = true; }

 private:
  Ptr<UniformRandomVariable> m_rng;
  uint32_t m_offset = 0;
  bool m_dataOnly = true, m_bad = false, m_lowpan = false;
  uint16_t m_skipPort = 0;
  double m_loss[2] = {0, 0}, m_pgb = 0, m_pbg = 1;
  int64_t m_maxSeq = -1;
  std::vector<uint64_t> m_script;
  bool m_scripted = false;

  bool DoCorrupt(Ptr<Packet> p) override {
    int64_t key = -1;
    bool tcp = false, data = true;
    if (!Parse(p, key, tcp, data)) return false;
    seen++;
    bool lost;
    if (m_scripted) {
      lost = std::find(m_script.begin(), m_script.end(), seen - 1) != m_script.end();
    } else {
      lost = m_rng->GetValue() < m_loss[m_bad];
      if (m_pgb > 0 || m_bad) m_bad = m_rng->GetValue() < (m_bad ? 1 - m_pbg : m_pgb);
    }
    bool first = !tcp || key > m_maxSeq;
    if (tcp && data) m_maxSeq = std::max(m_maxSeq, key);
    if (lost) {
      dropped++;
      dropKey.push_back(key);
      dropFirst.push_back(first ? 1 : 0);
      dropData.push_back(data ? 1 : 0);
      dropIndex.push_back(seen - 1);
    }
    return lost;
  }
  void DoReset() override {}

  // true for a packet subject to loss; key: what it carries (see dropKey)
  bool Parse(Ptr<Packet> p, int64_t& key, bool& tcp, bool& data) {
    if (m_lowpan) {
      uint8_t fc = 0;
      if (p->CopyData(&fc, 1) < 1) return false;
      return (fc & 0x7) == 1;  // a data frame
    }
    uint8_t b[80];
    uint32_t n = p->CopyData(b, std::min<uint32_t>(sizeof(b), p->GetSize()));
    if (n < m_offset + 20) return false;  // no IP packet: link-layer control, never lost here
    const uint8_t* ip = b + m_offset;
    if ((ip[0] >> 4) != 4) return false;
    uint32_t ihl = (ip[0] & 0xF) * 4, total = (ip[2] << 8) | ip[3];
    const uint8_t* l4 = ip + ihl;
    if (ip[9] == 17 && n >= m_offset + ihl + 12) {
      uint16_t dport = (l4[2] << 8) | l4[3];
      if (dport == m_skipPort) return false;
      uint32_t id;
      std::memcpy(&id, l4 + 8, 4);
      key = id;
      return true;
    }
    if (ip[9] == 6 && n >= m_offset + ihl + 13) {
      uint32_t seq = (l4[4] << 24) | (l4[5] << 16) | (l4[6] << 8) | l4[7];
      uint32_t doff = (l4[12] >> 4) * 4;
      key = int64_t(seq) - 1;  // ns-3's initial sequence number is 0, data starts at 1
      tcp = true;
      data = total > ihl + doff;
      return data || !m_dataOnly;
    }
    data = false;
    return !m_dataOnly;
  }
};

// A point-to-point device whose frames carry `extra` bytes beyond PPP's 2: the link-layer
// header a profile asks for (an Ethernet header: 14 = 2 + 12), as padding removed on receipt.
class WireDevice : public PointToPointNetDevice {
 public:
  uint32_t extra = 0;
  bool Send(Ptr<Packet> packet, const Address& dest, uint16_t protocol) override {
    if (extra) packet->AddPaddingAtEnd(extra);
    return PointToPointNetDevice::Send(packet, dest, protocol);
  }
  void SetReceiveCallback(NetDevice::ReceiveCallback cb) override {
    m_up = cb;
    PointToPointNetDevice::SetReceiveCallback(MakeCallback(&WireDevice::Up, this));
  }

 private:
  NetDevice::ReceiveCallback m_up;
  bool Up(Ptr<NetDevice> dev, Ptr<const Packet> p, uint16_t protocol, const Address& from) {
    Ptr<Packet> q = p->Copy();
    if (extra) q->RemoveAtEnd(extra);
    return m_up(dev, q, protocol, from);
  }
};

// Two WireDevices joined by a point-to-point channel, each with a drop-tail queue of
// `queuePackets` and the error models given.
NetDeviceContainer InstallWire(Ptr<Node> a, Ptr<Node> b, double rateBps, double delayS,
                               uint32_t mtu, uint32_t extra, uint32_t queuePackets) {
  Ptr<PointToPointChannel> channel = CreateObject<PointToPointChannel>();
  channel->SetAttribute("Delay", TimeValue(Seconds(delayS)));
  NetDeviceContainer out;
  for (Ptr<Node> node : {a, b}) {
    Ptr<WireDevice> dev = CreateObject<WireDevice>();
    dev->extra = extra;
    dev->SetAttribute("DataRate", DataRateValue(DataRate(uint64_t(rateBps))));
    dev->SetAttribute("Mtu", UintegerValue(mtu));
    dev->SetAddress(Mac48Address::Allocate());
    Ptr<DropTailQueue<Packet>> q = CreateObject<DropTailQueue<Packet>>();
    q->SetAttribute("MaxSize", QueueSizeValue(QueueSize(QueueSizeUnit::PACKETS, queuePackets)));
    dev->SetQueue(q);
    node->AddDevice(dev);
    dev->Attach(channel);
    out.Add(dev);
  }
  return out;
}

// Other flows: UDP datagrams of `bytes` at exponential gaps of mean `meanGapS`.
class Cross {
 public:
  Cross(Ptr<Socket> s, uint32_t bytes, double meanGapS, int64_t stream)
      : m_s(s), m_bytes(bytes), m_gap(CreateObject<ExponentialRandomVariable>()) {
    m_gap->SetAttribute("Mean", DoubleValue(meanGapS));
    m_gap->SetStream(stream);
  }
  void Start(double atS) { Simulator::Schedule(Seconds(atS), &Cross::Send, this); }
  void Stop() { m_on = false; }

 private:
  Ptr<Socket> m_s;
  uint32_t m_bytes;
  Ptr<ExponentialRandomVariable> m_gap;
  bool m_on = true;
  void Send() {
    if (!m_on) return;
    m_s->Send(Create<Packet>(m_bytes));
    Simulator::Schedule(Seconds(m_gap->GetValue()), &Cross::Send, this);
  }
};

// The frames and their answers. TCP: frame i is `frameWire` bytes of the stream (data and one
// application header per chunk), its answer `answerWire` bytes back on the same connection.
// UDP: frame i is `count` datagrams of app + chunk bytes, the first 8 application bytes naming
// (frame, index, count); the answer one datagram back. Times are from `t0`.
class FrameStream {
 public:
  std::vector<double> capture, done, served;
  uint32_t finished = 0, nFrames;
  Cross* cross = nullptr;

  FrameStream(bool tcp, uint32_t frameWire, uint32_t chunk, uint32_t app, uint32_t count,
              uint32_t lastChunk, uint32_t nFrames, double fps, double deviceS, double serverS,
              uint32_t answerWire, double timeoutS)
      : nFrames(nFrames), m_tcp(tcp), m_frameWire(frameWire), m_chunk(chunk), m_app(app),
        m_count(count), m_last(lastChunk), m_fps(fps), m_deviceS(deviceS), m_serverS(serverS),
        m_answerWire(answerWire), m_timeoutS(timeoutS), capture(nFrames, 0.0),
        done(nFrames, -1.0), served(nFrames, -1.0), m_got(nFrames, 0), m_over(nFrames, 0) {}

  // tx: the device's socket (connected); rx: the server's (bound; listening for TCP)
  void Start(Ptr<Socket> tx, Ptr<Socket> rx, double t0) {
    m_tx = tx;
    m_t0 = t0;
    if (m_tcp) {
      rx->SetAcceptCallback(MakeNullCallback<bool, Ptr<Socket>, const Address&>(),
                            MakeCallback(&FrameStream::Accept, this));
      tx->SetSendCallback(MakeCallback(&FrameStream::Space, this));
      tx->SetRecvCallback(MakeCallback(&FrameStream::AnswerTcp, this));
    } else {
      rx->SetRecvCallback(MakeCallback(&FrameStream::RecvUdp, this));
      tx->SetRecvCallback(MakeCallback(&FrameStream::AnswerUdp, this));
      m_rx = rx;
    }
    if (m_fps > 0) {
      double deviceFree = 0;
      for (uint32_t i = 0; i < nFrames; i++) {
        capture[i] = i / m_fps;
        deviceFree = std::max(capture[i], deviceFree) + m_deviceS;
        Simulator::Schedule(Seconds(t0 + deviceFree) - Simulator::Now(), &FrameStream::Ready,
                            this, i);
      }
    } else {
      Simulator::Schedule(Seconds(t0 + m_deviceS) - Simulator::Now(), &FrameStream::Ready, this,
                          0u);
    }
  }

 private:
  bool m_tcp;
  uint32_t m_frameWire, m_chunk, m_app, m_count, m_last;
  double m_fps, m_deviceS, m_serverS;
  uint32_t m_answerWire;
  double m_timeoutS, m_t0 = 0, m_serverFree = 0;
  std::vector<uint32_t> m_got;
  std::vector<char> m_over;
  Ptr<Socket> m_tx, m_rx, m_conn;
  uint64_t m_pending = 0, m_rxBytes = 0, m_ansBytes = 0;
  uint32_t m_rxNext = 0, m_ansNext = 0;

  double Now() { return Simulator::Now().GetSeconds() - m_t0; }

  void Ready(uint32_t i) {
    if (m_tcp) {
      m_pending += m_frameWire;
      Space(m_tx, 0);
      return;
    }
    for (uint32_t k = 0; k < m_count; k++) {
      uint32_t len = m_app + (k + 1 == m_count ? m_last : m_chunk);
      std::vector<uint8_t> buf(len, 0);
      uint16_t idx = k, cnt = m_count;
      std::memcpy(buf.data(), &i, 4);
      std::memcpy(buf.data() + 4, &idx, 2);
      std::memcpy(buf.data() + 6, &cnt, 2);
      m_tx->Send(Create<Packet>(buf.data(), len));
    }
    Simulator::Schedule(Seconds(m_timeoutS), &FrameStream::GiveUp, this, i);
  }
  // a lost UDP frame (or answer): the closed loop moves on after the timeout
  void GiveUp(uint32_t i) {
    if (done[i] < 0 && !m_over[i]) Over(i);
  }
  void Over(uint32_t i) {
    m_over[i] = 1;
    finished++;
    if (m_fps <= 0 && i + 1 < nFrames) {
      capture[i + 1] = Now();
      Simulator::Schedule(Seconds(m_deviceS), &FrameStream::Ready, this, i + 1);
    }
    if (finished == nFrames) {  // a late answer may still come: a grace period, then stop
      if (cross) cross->Stop();
      Simulator::Stop(Seconds(m_timeoutS));
    }
  }
  void Space(Ptr<Socket> s, uint32_t) {
    while (m_pending > 0 && s->GetTxAvailable() > 0) {
      uint32_t n = std::min<uint64_t>(m_pending, s->GetTxAvailable());
      int sent = s->Send(Create<Packet>(n));
      if (sent <= 0) break;
      m_pending -= sent;
    }
  }
  void Accept(Ptr<Socket> s, const Address&) {
    m_conn = s;
    s->SetRecvCallback(MakeCallback(&FrameStream::RecvTcp, this));
  }
  // the server has frame i: compute (FIFO), then answer
  void Received(uint32_t i, Address from) {
    m_serverFree = std::max(Now(), m_serverFree) + m_serverS;
    Simulator::Schedule(Seconds(m_serverFree - Now()), &FrameStream::Answer, this, i, from);
  }
  void Answer(uint32_t i, Address from) {
    served[i] = Now();
    if (!m_answerWire) {
      Finish(i);
      return;
    }
    if (m_tcp) {
      m_conn->Send(Create<Packet>(m_answerWire));
      return;
    }
    std::vector<uint8_t> buf(m_answerWire, 0);
    std::memcpy(buf.data(), &i, 4);
    m_rx->SendTo(Create<Packet>(buf.data(), m_answerWire), 0, from);
  }
  void Finish(uint32_t i) {
    if (done[i] >= 0) return;
    done[i] = Now();
    if (!m_over[i]) Over(i);
  }
  void RecvTcp(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() > 0) {
      m_rxBytes += p->GetSize();
      while (m_rxNext < nFrames && m_rxBytes >= uint64_t(m_rxNext + 1) * m_frameWire)
        Received(m_rxNext++, Address());
    }
  }
  void AnswerTcp(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() > 0) {
      m_ansBytes += p->GetSize();
      while (m_ansNext < nFrames && m_ansBytes >= uint64_t(m_ansNext + 1) * m_answerWire)
        Finish(m_ansNext++);
    }
  }
  void RecvUdp(Ptr<Socket> s) {
    Ptr<Packet> p;
    Address from;
    while ((p = s->RecvFrom(from)) && p->GetSize() >= 8) {
      uint8_t head[8];
      p->CopyData(head, 8);
      uint32_t i;
      uint16_t cnt;
      std::memcpy(&i, head, 4);
      std::memcpy(&cnt, head + 6, 2);
      if (i < nFrames && ++m_got[i] == cnt) Received(i, from);
    }
  }
  void AnswerUdp(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() >= 4) {
      uint32_t i;
      p->CopyData(reinterpret_cast<uint8_t*>(&i), 4);
      if (i < nFrames) Finish(i);
    }
  }
};

// dump what an error model sees (to find where the IP header is on a medium)
class Peek : public ErrorModel {
 public:
  static TypeId GetTypeId() {
    static TypeId tid = TypeId("isplit_ns3::Peek").SetParent<ErrorModel>().AddConstructor<Peek>();
    return tid;
  }
  std::vector<std::string> seen;
 private:
  bool DoCorrupt(Ptr<Packet> p) override {
    uint8_t b[48];
    uint32_t n = p->CopyData(b, std::min<uint32_t>(48, p->GetSize()));
    char s[200];
    int k = snprintf(s, sizeof(s), "%u:", p->GetSize());
    for (uint32_t i = 0; i < n && k < 190; i++) k += snprintf(s + k, sizeof(s) - k, " %02x", b[i]);
    seen.push_back(s);
    return false;
  }
  void DoReset() override {}
};

// Permanent neighbour entries between two IPv6 nodes on one (6LoWPAN) device each: ns-3's
// NeighborCacheHelper finds neighbours through the channel, which lists the 802.15.4 devices,
// not the 6LoWPAN ones on top of them.
void StaticNeighbours(Ptr<Node> a, Ptr<Node> b, Ptr<NetDevice> da, Ptr<NetDevice> db) {
  Ptr<Ipv6L3Protocol> ia = a->GetObject<Ipv6L3Protocol>(), ib = b->GetObject<Ipv6L3Protocol>();
  Ptr<Ipv6Interface> fa = ia->GetInterface(ia->GetInterfaceForDevice(da));
  Ptr<Ipv6Interface> fb = ib->GetInterface(ib->GetInterfaceForDevice(db));
  for (auto [from, to, dev] : {std::tuple{fa, fb, db}, std::tuple{fb, fa, da}}) {
    for (uint32_t k = 0; k < to->GetNAddresses(); k++) {
      NdiscCache::Entry* e = from->GetNdiscCache()->Add(to->GetAddress(k).GetAddress());
      e->SetMacAddress(dev->GetAddress());
      e->MarkPermanent();
    }
  }
}

void ConnectAt(Ptr<Socket> s, Address to, double atS) {
  Simulator::Schedule(Seconds(atS), [s, to]() { s->Connect(to); });
}

// A device's ARP cache is flushed when its link comes up (a Wi-Fi station's, on association),
// so the static entries are written again once the link is up.
void PopulateNeighborsAt(double atS) {
  Simulator::Schedule(Seconds(atS), []() { NeighborCacheHelper().PopulateNeighborCache(); });
}

void EnableLater(Ptr<ErrorModel> em, double atS) {
  Simulator::Schedule(Seconds(atS), &ErrorModel::Enable, em);
}
void StopAt(double atS) { Simulator::Stop(Seconds(atS)); }
}  // namespace isplit_ns3
