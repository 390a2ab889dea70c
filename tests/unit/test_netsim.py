"""The builtin packet-level simulator against closed forms, and its loss-recovery behaviour
(the TCP model's recovery mechanisms one by one: tests/unit/test_tcp.py)."""

import math

import numpy as np
import pytest

from isplit.latency import netsim as ns
from isplit.latency import stats
from isplit.latency.link import (
    Link,
    Stream,
    TcpOptions,
    analytic_latency,
    fps_max,
    serialisation_s,
    wire_sizes,
)

SEI = Link(1e9, 100e-6)


def sim(frame_bytes, link, protocol="tcp", *, seed=0, n_boot=200, tcp="linux", **kw):
    opts = {k: kw.pop(k) for k in ("window", "rto_s", "dupacks", "initial_window") if k in kw}
    stream = Stream(frame_bytes, protocol, tcp=TcpOptions(tcp, **opts), **kw)
    return ns.simulate(link, stream, seed=seed, n_boot=n_boot)


# --------------------------------------------------------------------------- packetisation


def test_packet_sizes_follow_sei_transmitter():
    # 2500 B over TCP: 1010 + 1010 + 480 payload, each + 8 app + 20 TCP + 20 IP (+ 14 Eth)
    assert Stream(2500, "tcp").ip_packets(1500) == [1058, 1058, 528]
    assert wire_sizes(SEI, Stream(2500, "tcp")) == [1072, 1072, 542]
    # UDP: 14 B app header (sequence number) + 8 B UDP header
    assert wire_sizes(SEI, Stream(2500, "udp")) == [1066, 1066, 536]
    assert wire_sizes(SEI, Stream(0, "tcp")) == [62]  # an empty frame still sends one packet
    assert sum(wire_sizes(SEI, Stream(10_000, "tcp", payload=1400))) == 10_000 + 8 * 62
    # Linux sockets: no application header, 32 B of TCP header with timestamps
    linux = Stream(3000, "tcp", payload=1448, app_header=0, transport_header=32)
    assert linux.ip_packets(1500) == [1500, 1500, 156]
    assert linux.ack_packet() == 52 and Stream(1, "tcp").ack_packet() == 40


def test_small_mtu_shrinks_the_payload():
    # 802.15.4-like 102 B IP packets: 102 - 20 - 20 - 8 = 54 B of data per TCP packet
    assert Stream(1, "tcp").chunk(102) == 54
    assert Stream(1, "udp").chunk(102) == 60
    assert len(Stream(540, "tcp").ip_packets(102)) == 10
    with pytest.raises(ValueError, match="no room"):
        Stream(1, "tcp").chunk(40)


def test_link_stream_and_options_are_checked():
    with pytest.raises(ValueError, match="bandwidth"):
        Link(0, 1e-3)
    with pytest.raises(ValueError, match="loss"):
        Link(1e6, 1e-3, loss=1.0)
    with pytest.raises(ValueError, match="cross_traffic"):
        Link(1e6, 1e-3, cross_traffic=1.0)
    with pytest.raises(ValueError, match="queue"):
        Link(1e6, 1e-3, queue=0)
    with pytest.raises(ValueError, match="contenders"):
        Link(1e6, 1e-3, contenders=2)  # contenders share a Wi-Fi channel, not a wire
    with pytest.raises(ValueError, match="protocol"):
        Stream(100, "quic")
    with pytest.raises(ValueError, match="fps"):
        Stream(100, "tcp", fps=0)
    # an option the behaviour has no counterpart for is refused, not ignored
    with pytest.raises(ValueError, match="initial_window needs a congestion window"):
        Stream(100, "tcp", tcp=TcpOptions("sei", initial_window=4))
    with pytest.raises(ValueError, match="tcp must be one of"):
        TcpOptions("reno").resolved()
    assert TcpOptions("rfc6675").resolved().slow_start_after_idle is False
    assert TcpOptions("linux").resolved().slow_start_after_idle is True


# --------------------------------------------------------------------------- zero loss


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize(
    "frame_bytes,link",
    [
        (0, SEI),
        (1010, SEI),
        (150_528, SEI),  # a 224 px uint8 RGB frame
        (3072, Link(100e3, 10e-3, mtu=102)),
        (40_000, Link(10e6, 20e-3)),
    ],
)
@pytest.mark.parametrize("tcp", ["linux", "sei", "rfc6675"])
def test_zero_loss_latency_is_the_analytic_value(protocol, frame_bytes, link, tcp):
    kw = {"device_s": 0.0123, "server_s": 0.0045, "answer_bytes": 0}
    stream = Stream(frame_bytes, protocol, n_frames=20, tcp=TcpOptions(tcp), **kw)
    expect = analytic_latency(link, stream)
    r = ns.simulate(link, stream)
    assert r.frame_loss == 0 and len(r.latency_s) == 20 and r.clean.all()
    # a first frame of more than 10 segments waits for the window to open (slow start,
    # tested in test_tcp.py); once it has, every frame goes back to back
    first = 1 if tcp != "sei" and protocol == "tcp" and r.packets_per_frame > 10 else 0
    np.testing.assert_allclose(r.latency_s[first:], expect, rtol=1e-9, atol=1e-12)
    assert (r.latency_s[:first] > expect).all()
    assert r.p50 == pytest.approx(expect, rel=1e-9) and r.p95 >= r.p50
    n = math.ceil(max(frame_bytes, 1) / stream.chunk(link.mtu))
    app = {"tcp": 8, "udp": 14}[protocol] + {"tcp": 20, "udp": 8}[protocol]
    by_hand = 0.0123 + (8 * frame_bytes + 8 * (app + 34) * n) / link.bandwidth_bps
    assert expect == pytest.approx(by_hand + link.delay_s + 0.0045, rel=1e-12)
    # a camera slower than every stage: nothing queues, every frame takes the analytic time
    slow = ns.simulate(link, Stream(frame_bytes, protocol, n_frames=20, fps=0.5 * r.fps_max,
                                    tcp=TcpOptions(tcp), **kw))  # fmt: skip
    settled = 10 if first else 0  # the window may need a second frame to open fully
    np.testing.assert_allclose(slow.latency_s[settled:], expect, rtol=1e-9, atol=1e-12)
    assert (slow.latency_s >= expect * (1 - 1e-12)).all()


def test_the_answer_comes_back_over_the_link():
    link = Link(1e6, 5e-3)
    for answer in (8, 1000):
        stream = Stream(3000, "udp", n_frames=5, answer_bytes=answer, server_s=0.002)
        r = ns.simulate(link, stream)
        back = 8 * (answer + 14 + 8 + 20 + 14) / 1e6 + 5e-3  # one datagram + the delay
        expect = analytic_latency(link, Stream(3000, "udp", answer_bytes=0, server_s=0.002))
        np.testing.assert_allclose(r.latency_s, expect + back, rtol=1e-9)
        # closed loop: the next frame is captured when the answer is back
        np.testing.assert_allclose(np.diff(r.capture_s), expect + back, rtol=1e-9)
    # over TCP the answer also carries the ACK of the frame's last segment: at most one pure
    # ACK (the receiver's every-second-segment rule) goes before it
    tcp = ns.simulate(link, Stream(3000, "tcp", n_frames=5, server_s=0.002))
    udp_like = analytic_latency(link, Stream(3000, "tcp", server_s=0.002))
    ack = 8 * (20 + 20 + 14) / 1e6
    assert ((tcp.latency_s >= udp_like - 1e-12) & (tcp.latency_s <= udp_like + ack + 1e-9)).all()


def test_fps_max_is_the_slowest_stage():
    link = Link(1e6, 1e-3)
    stream = Stream(10_000, "tcp", n_frames=3, device_s=0.01, server_s=0.02)
    ser = serialisation_s(link, stream)
    assert sim(10_000, link, n_frames=3, device_s=0.01, server_s=0.02).fps_max == pytest.approx(
        1 / max(0.01, ser, 0.02)
    )
    assert ser > 0.02 and fps_max(link, stream) == pytest.approx(1 / ser)


def test_stop_and_wait_window_adds_a_round_trip_per_packet():
    link = Link(1e6, 5e-3)
    stream = Stream(5000, "tcp", answer_bytes=0)
    sizes = wire_sizes(link, stream)
    r = sim(5000, link, n_frames=3, window=1, tcp="sei", answer_bytes=0)
    ser = sum(8 * s / link.bandwidth_bps for s in sizes)
    ack = 8 * (20 + 20 + 14) / link.bandwidth_bps
    n = len(sizes)
    expect = ser + n * link.delay_s + (n - 1) * (ack + link.delay_s)
    assert r.latency_s[0] == pytest.approx(expect, rel=1e-9)
    # the next frame's first segment also waits for the ACK of the previous frame's last one
    np.testing.assert_allclose(r.latency_s[1:], expect + ack + link.delay_s, rtol=1e-9)


# --------------------------------------------------------------------------- loss


def _mean_latency(frame_bytes, link, protocol, seeds=range(6), **kw):
    return np.mean([sim(frame_bytes, link, protocol, seed=s, **kw).latency_s.mean() for s in seeds])


@pytest.mark.parametrize("tcp", ["linux", "sei", "rfc6675"])
def test_latency_does_not_decrease_with_loss(tcp):
    means = [
        _mean_latency(20_000, Link(10e6, 2e-3, loss), "tcp", n_frames=60, tcp=tcp)
        for loss in (0.0, 0.01, 0.02, 0.05)
    ]
    assert all(b >= a for a, b in zip(means, means[1:], strict=False)), means
    assert means[-1] > means[0] * 1.5


def test_latency_does_not_increase_with_bandwidth():
    means = [
        _mean_latency(20_000, Link(bw, 2e-3, 0.02), "tcp", n_frames=60)
        for bw in (1e6, 10e6, 100e6, 1e9)
    ]
    assert all(b <= a for a, b in zip(means, means[1:], strict=False)), means


@pytest.mark.parametrize("loss,frame_bytes", [(0.01, 10_000), (0.05, 3000), (0.02, 1)])
def test_udp_frame_loss_matches_the_binomial(loss, frame_bytes):
    n_frames = 4000
    r = sim(frame_bytes, Link(1e9, 1e-4, loss), "udp", n_frames=n_frames, seed=3)
    p = 1 - (1 - loss) ** r.packets_per_frame
    assert r.frame_loss == pytest.approx(p, rel=1e-12)  # the exact probability
    sigma = math.sqrt(p * (1 - p) / n_frames)
    assert abs(r.frame_loss_sim - p) < 3 * sigma, (r.frame_loss_sim, p, sigma)
    assert len(r.latency_s) == n_frames - r.lost.sum()


def test_a_lost_answer_loses_a_udp_frame_and_is_resent_over_tcp():
    link = Link(10e6, 1e-3, 0.01, reverse_loss=0.05)
    udp = sim(3000, link, "udp", n_frames=4000, seed=2)
    p = 1 - 0.99**3 * 0.95
    assert udp.frame_loss == pytest.approx(p)
    assert abs(udp.frame_loss_sim - p) < 3 * math.sqrt(p * (1 - p) / 4000)
    tcp = sim(3000, link, "tcp", n_frames=300, seed=2)
    # a lost answer waits for the server's RTO; such frames count as lossy ones
    assert not tcp.lost.any() and np.mean(tcp.latency_s > 0.2) > 0.02
    assert tcp.p_clean == pytest.approx(0.99**3 * 0.95) and not tcp.clean.all()


def test_udp_loss_is_monotone_in_p_for_one_seed():
    lost = [sim(5000, Link(1e9, 1e-4, p), "udp", n_frames=500).lost for p in (0, 0.01, 0.03, 0.05)]
    for a, b in zip(lost, lost[1:], strict=False):
        assert not (a & ~b).any()  # a frame lost at p is lost at every p' > p


def test_sei_tcp_delivers_every_frame_and_its_p95_shows_the_rto():
    link = Link(1e9, 100e-6, 0.05)
    r = sim(10_000, link, n_frames=300, seed=1, tcp="sei")
    assert r.frame_loss == 0 and not r.lost.any() and len(r.latency_s) == 300
    assert r.p50 < 0.01  # most frames are unaffected or fixed by fast retransmit
    assert r.p95 >= 0.2  # a lost tail segment gets no duplicate ACKs: it waits for the RTO
    assert r.retransmissions > 0
    # a smaller RTO moves the tail with it
    r2 = sim(10_000, link, n_frames=300, seed=1, rto_s=0.05, tcp="sei")
    assert 0.05 <= r2.p95 < 0.2
    assert r2.p50 >= analytic_latency(link, Stream(10_000, "tcp"))


@pytest.mark.parametrize("tcp", ["linux", "sei", "rfc6675"])
def test_fast_retransmit_recovers_within_a_round_trip(tcp):
    link = Link(100e6, 1e-3, 0.005)
    r = sim(100_000, link, n_frames=200, seed=0, tcp=tcp)
    extra = r.latency_s - analytic_latency(link, Stream(100_000, "tcp"))
    # some frames lost a segment yet finished well before the 200 ms RTO
    assert ((extra > 1e-3) & (extra < 0.05)).any()


def test_seeded_runs_are_identical_and_seeds_differ():
    link = Link(10e6, 2e-3, 0.03, cross_traffic=0.3)
    for proto in ("tcp", "udp"):
        a = sim(30_000, link, proto, n_frames=80, seed=7, fps=20)
        b = sim(30_000, link, proto, n_frames=80, seed=7, fps=20)
        np.testing.assert_array_equal(a.frame_latency_s, b.frame_latency_s)
        c = sim(30_000, link, proto, n_frames=80, seed=8, fps=20)
        assert not np.array_equal(a.frame_latency_s, c.frame_latency_s, equal_nan=True)


def test_no_bootstrap_gives_point_estimates():
    r = sim(3000, Link(10e6, 1e-3, 0.05), n_frames=50, n_boot=0)
    assert np.isfinite(r.p95) and math.isnan(r.percentiles.p95_lo)
    p = stats.stratified(np.arange(10.0), np.ones(10, int), {1: 1.0}, n_boot=0)
    assert p.p50 == 4.0 and math.isnan(p.p50_hi)


# --------------------------------------------------------------------------- queues


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_queueing_when_the_camera_outpaces_the_link(protocol):
    link = Link(1e6, 1e-3)
    stream = Stream(10_000, protocol, answer_bytes=0)
    ser = serialisation_s(link, stream)  # ~86 ms → ~11.6 frames/s
    fps = 2 / ser
    r = sim(10_000, link, protocol, n_frames=50, fps=fps, answer_bytes=0)
    lat = r.latency_s
    assert lat[0] == pytest.approx(analytic_latency(link, stream), rel=1e-9)
    # each frame waits (ser - 1/fps) longer than the previous one
    np.testing.assert_allclose(np.diff(lat), ser - 1 / fps, rtol=1e-6)
    assert r.p95 > 10 * r.latency_s[0]


def test_device_compute_queues_too():
    r = sim(100, SEI, n_frames=20, fps=100, device_s=0.02)
    # (up to one pure ACK, 0.4 us, may go back before an answer)
    np.testing.assert_allclose(np.diff(r.latency_s), 0.01, atol=1e-6)
    assert r.fps_max == pytest.approx(50)


def test_a_drop_tail_queue_drops_what_does_not_fit():
    # 30 datagrams written at once into a queue of 10 (+ 1 being sent): every frame is lost
    full = sim(30 * 1000, Link(10e6, 1e-3, queue=10), "udp", n_frames=5, payload=1000)
    assert full.lost.all() and full.frame_loss_sim == 1
    fits = sim(30 * 1000, Link(10e6, 1e-3, queue=29), "udp", n_frames=5, payload=1000)
    assert not fits.lost.any()
    # TCP without small queues (rfc6675) fills the queue with its window and loses at the tail
    tcp = sim(60_000, Link(10e6, 1e-3, queue=5), n_frames=30, tcp="rfc6675")
    assert tcp.retransmissions > 0 and not tcp.lost.any()
    # Linux's small queues keep its own packets out of a full queue
    assert sim(60_000, Link(10e6, 1e-3, queue=5), n_frames=30).retransmissions == 0


def test_cross_traffic_waits_like_an_md1_queue():
    # one-packet frames arriving at random phases see the cross traffic's Poisson queue:
    # Pollaczek-Khinchine mean wait rho * S / (2 (1 - rho)), S a cross packet's time
    link = Link(10e6, 1e-3, cross_traffic=0.5)
    r = sim(100, link, "udp", n_frames=3000, fps=7.3, seed=1, answer_bytes=0)
    base = analytic_latency(link, Stream(100, "udp", answer_bytes=0))
    s = 8 * (1500 + 14) / 10e6
    wait = 0.5 * s / (2 * 0.5)
    assert np.mean(r.latency_s - base) == pytest.approx(wait, rel=0.12)
    busier = sim(100, Link(10e6, 1e-3, cross_traffic=0.8), "udp", n_frames=3000,
                 fps=7.3, seed=1, answer_bytes=0)  # fmt: skip
    assert np.mean(busier.latency_s - base) == pytest.approx(0.8 * s / (2 * 0.2), rel=0.12)


def test_closed_loop_waits_for_the_server():
    r = sim(1000, SEI, "udp", n_frames=5, device_s=0.01, server_s=0.03)
    lat = analytic_latency(SEI, Stream(1000, "udp", device_s=0.01, server_s=0.03))
    np.testing.assert_allclose(np.diff(r.capture_s), lat, rtol=1e-9)


def test_saturated_wifi_contenders_slow_the_stream_and_stop_with_it():
    # the contenders always have data: the run ends only because they stop with the stream
    alone = Link(65e6, 0.5e-3, medium="wifi-n")
    shared = Link(65e6, 0.5e-3, medium="wifi-n", contenders=4)
    for proto in ("tcp", "udp"):
        a = sim(30_000, alone, proto, n_frames=20, n_boot=0)
        b = sim(30_000, shared, proto, n_frames=20, n_boot=0)
        assert not b.lost.any() and np.isfinite(b.p50)
        # four stations' PPDUs of up to 5.5 ms go before the device's, now and then
        assert b.p50 > a.p50 + 5e-3, (a.p50, b.p50)


def test_seeds_pool_into_one_stratified_estimate():
    from isplit.latency import condition

    link, stream = Link(10e6, 10e-3, 0.05), Stream(3000, "tcp", n_frames=100)
    runs = [ns.simulate(link, stream, seed=s, n_boot=0) for s in (0, 1)]
    pooled = condition.pooled(runs, n_boot=0)
    assert pooled.n == 200
    lat = np.concatenate([r.latency_s for r in runs])
    lab = np.concatenate([r.clean for r in runs]).astype(int)
    w = runs[0].p_clean
    expect = stats.stratified(lat, lab, {1: w, 0: 1 - w}, n_boot=0)
    assert (pooled.p50, pooled.p95) == (expect.p50, expect.p95)
    # a medium without an exact clean weight: the plain sample percentiles of all frames
    lowpan = Link(250e3, 0.0, 0.05, mtu=1280, medium="ieee802154")
    runs = [ns.simulate(lowpan, Stream(500, "udp", n_frames=30), seed=s, n_boot=0) for s in (0, 1)]
    lat = np.concatenate([r.latency_s for r in runs])
    assert math.isnan(runs[0].p_clean)
    assert condition.pooled(runs, n_boot=0).p95 == np.quantile(lat, 0.95, method="inverted_cdf")


def test_wifi_mac_retries_reach_tcp_in_order():
    class Scripted:  # loses exactly the n-th MPDU transmission of the device
        def __init__(self, n):
            self.n, self.k = n, -1

        def lost(self):
            self.k += 1
            return self.k == self.n

    link = Link(65e6, 0.5e-3, 0.01, medium="wifi-n")
    stream = Stream(30_000, "tcp", n_frames=8, tcp=TcpOptions("rfc6675"))
    clean = ns.Network(link, stream, 0).run()
    for k in (0, 10, 20):  # an MPDU of frame 5 lost once, retried by the MAC
        net = ns.Network(link, stream, 0)
        net.up.wifi.loss = Scripted(5 * len(net.sizes) + k)
        net.run()
        # the AP holds the MPDUs after it until the retry arrives: a delay, no TCP recovery
        assert net.counts()["retransmissions"] == 0 and net.counts()["recoveries"] == 0
        lat, ref = net.done - net.capture, clean.done - clean.capture
        assert 0 < lat[5] - ref[5] < 1e-3
        assert np.all(np.abs(lat[6:] - ref[6:]) < 1e-3)  # no window cut slows what follows
