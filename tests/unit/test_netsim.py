"""The packet-level simulator against closed forms and its loss-recovery behaviour (the
Linux TCP model's recovery mechanisms one by one: tests/unit/test_tcp_linux.py)."""

import math

import numpy as np
import pytest

from isplit.latency import netsim as ns

SEI = ns.Link(1e9, 100e-6)


# --------------------------------------------------------------------------- packetisation


def test_packet_sizes_follow_sei_transmitter():
    # 2500 B over TCP: 1010 + 1010 + 480 payload, each + 8 app + 20 TCP + 20 IP + 14 Eth
    assert ns.packet_sizes(2500, 1500, "tcp") == [1072, 1072, 542]
    # UDP: 14 B app header (sequence number) + 8 B UDP header
    assert ns.packet_sizes(2500, 1500, "udp") == [1066, 1066, 536]
    assert ns.packet_sizes(0, 1500, "tcp") == [62]  # an empty frame still sends one packet
    assert sum(ns.packet_sizes(10_000, 1500, "tcp", payload=1400)) == 10_000 + 8 * 62


def test_small_mtu_shrinks_the_payload():
    # 802.15.4-like 102 B IP packets: 102 - 20 - 20 - 8 = 54 B of data per TCP packet
    assert ns.payload_per_packet(102, "tcp") == 54
    assert ns.payload_per_packet(102, "udp") == 60
    assert len(ns.packet_sizes(540, 102, "tcp")) == 10
    with pytest.raises(ValueError, match="no room"):
        ns.payload_per_packet(40, "tcp")


def test_link_and_arguments_are_checked():
    with pytest.raises(ValueError):
        ns.Link(0, 1e-3)
    with pytest.raises(ValueError):
        ns.Link(1e6, 1e-3, loss=1.0)
    with pytest.raises(ValueError, match="protocol"):
        ns.simulate(100, SEI, "quic")
    with pytest.raises(ValueError):
        ns.simulate(100, SEI, "tcp", fps=0)


# --------------------------------------------------------------------------- zero loss


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize(
    "frame_bytes,link",
    [
        (0, SEI),
        (1010, SEI),
        (150_528, SEI),  # a 224 px uint8 RGB frame
        (3072, ns.Link(100e3, 10e-3, mtu=102)),
        (40_000, ns.Link(10e6, 20e-3)),
    ],
)
@pytest.mark.parametrize("tcp", ["linux", "sei"])
def test_zero_loss_latency_is_the_analytic_value(protocol, frame_bytes, link, tcp):
    kw = {"device_s": 0.0123, "server_s": 0.0045}
    expect = ns.analytic_latency(frame_bytes, link, protocol, **kw)
    r = ns.simulate(frame_bytes, link, protocol, n_frames=20, tcp=tcp, **kw)
    assert r.frame_loss == 0 and len(r.latency_s) == 20 and r.clean.all()
    # Linux: a first frame of more than 10 segments waits for the window to open (slow start,
    # tested in test_tcp_linux.py); once it has, every frame goes back to back
    first = 1 if tcp == "linux" and protocol == "tcp" and r.packets_per_frame > 10 else 0
    np.testing.assert_allclose(r.latency_s[first:], expect, rtol=1e-9, atol=1e-12)
    assert (r.latency_s[:first] > expect).all()
    assert r.p50 == pytest.approx(expect, rel=1e-9) and r.p95 >= r.p50
    n = math.ceil(max(frame_bytes, 1) / ns.payload_per_packet(link.mtu, protocol))
    headers = 8 * (ns.APP_HEADER[protocol] + ns.TRANSPORT_HEADER[protocol] + 20 + 14) * n
    by_hand = 0.0123 + (8 * frame_bytes + headers) / link.bandwidth_bps + link.delay_s + 0.0045
    assert expect == pytest.approx(by_hand, rel=1e-12)
    # a camera slower than every stage: nothing queues, every frame takes the analytic time
    slow = ns.simulate(frame_bytes, link, protocol, n_frames=20, fps=0.5 * r.fps_max, tcp=tcp, **kw)
    settled = 10 if first else 0  # the window may need a second frame to open fully
    np.testing.assert_allclose(slow.latency_s[settled:], expect, rtol=1e-9, atol=1e-12)
    assert (slow.latency_s >= expect * (1 - 1e-12)).all()


def test_fps_max_is_the_slowest_stage():
    link = ns.Link(1e6, 1e-3)
    ser = ns.serialisation_s(10_000, link, "tcp")
    r = ns.simulate(10_000, link, "tcp", n_frames=3, device_s=0.01, server_s=0.02)
    assert r.fps_max == pytest.approx(1 / max(0.01, ser, 0.02))
    assert ser > 0.02  # here the link is the bottleneck


def test_stop_and_wait_window_adds_a_round_trip_per_packet():
    link = ns.Link(1e6, 5e-3)
    sizes = ns.packet_sizes(5000, link.mtu, "tcp")
    r = ns.simulate(5000, link, "tcp", n_frames=3, window=1, tcp="sei")
    ser = sum(8 * s / link.bandwidth_bps for s in sizes)
    ack = 8 * ns.ACK_WIRE_BYTES / link.bandwidth_bps
    n = len(sizes)
    expect = ser + n * link.delay_s + (n - 1) * (ack + link.delay_s)
    assert r.latency_s[0] == pytest.approx(expect, rel=1e-9)
    # the next frame's first segment also waits for the ACK of the previous frame's last one
    np.testing.assert_allclose(r.latency_s[1:], expect + ack + link.delay_s, rtol=1e-9)


# --------------------------------------------------------------------------- loss


def _mean_latency(frame_bytes, link, protocol, seeds=range(6), **kw):
    return np.mean(
        [ns.simulate(frame_bytes, link, protocol, seed=s, **kw).latency_s.mean() for s in seeds]
    )


@pytest.mark.parametrize("tcp", ["linux", "sei"])
def test_latency_does_not_decrease_with_loss(tcp):
    means = [
        _mean_latency(20_000, ns.Link(10e6, 2e-3, loss), "tcp", n_frames=60, tcp=tcp)
        for loss in (0.0, 0.01, 0.02, 0.05)
    ]
    assert all(b >= a for a, b in zip(means, means[1:], strict=False)), means
    assert means[-1] > means[0] * 1.5


def test_latency_does_not_increase_with_bandwidth():
    means = [
        _mean_latency(20_000, ns.Link(bw, 2e-3, 0.02), "tcp", n_frames=60)
        for bw in (1e6, 10e6, 100e6, 1e9)
    ]
    assert all(b <= a for a, b in zip(means, means[1:], strict=False)), means


@pytest.mark.parametrize("loss,frame_bytes", [(0.01, 10_000), (0.05, 3000), (0.02, 1)])
def test_udp_frame_loss_matches_the_binomial(loss, frame_bytes):
    n_frames = 4000
    r = ns.simulate(frame_bytes, ns.Link(1e9, 1e-4, loss), "udp", n_frames=n_frames, seed=3)
    p = 1 - (1 - loss) ** r.packets_per_frame
    assert r.frame_loss == pytest.approx(p, rel=1e-12)  # the exact probability
    sigma = math.sqrt(p * (1 - p) / n_frames)
    assert abs(r.frame_loss_sim - p) < 3 * sigma, (r.frame_loss_sim, p, sigma)
    assert len(r.latency_s) == n_frames - r.lost.sum()


def test_udp_loss_is_monotone_in_p_for_one_seed():
    lost = [
        ns.simulate(5000, ns.Link(1e9, 1e-4, p), "udp", n_frames=500).lost
        for p in (0.0, 0.01, 0.03, 0.05)
    ]
    for a, b in zip(lost, lost[1:], strict=False):
        assert not (a & ~b).any()  # a frame lost at p is lost at every p' > p


def test_sei_tcp_delivers_every_frame_and_its_p95_shows_the_rto():
    link = ns.Link(1e9, 100e-6, 0.05)
    r = ns.simulate(10_000, link, "tcp", n_frames=300, seed=1, tcp="sei")
    assert r.frame_loss == 0 and not r.lost.any() and len(r.latency_s) == 300
    base = ns.analytic_latency(10_000, link, "tcp")
    assert r.p50 < 0.01  # most frames are unaffected or fixed by fast retransmit
    assert r.p95 >= 0.2  # a lost tail segment gets no duplicate ACKs: it waits for the RTO
    assert r.retransmissions > 0
    # a smaller RTO moves the tail with it
    r2 = ns.simulate(10_000, link, "tcp", n_frames=300, seed=1, rto_s=0.05, tcp="sei")
    assert 0.05 <= r2.p95 < 0.2
    assert r2.p50 >= base


@pytest.mark.parametrize("tcp", ["linux", "sei"])
def test_fast_retransmit_recovers_within_a_round_trip(tcp):
    link = ns.Link(100e6, 1e-3, 0.005)
    r = ns.simulate(100_000, link, "tcp", n_frames=200, seed=0, tcp=tcp)
    base = ns.analytic_latency(100_000, link, "tcp")
    extra = r.latency_s - base
    # some frames lost a segment yet finished well before the 200 ms RTO
    assert ((extra > 1e-3) & (extra < 0.05)).any()


@pytest.mark.parametrize("tcp", ["linux", "sei"])
def test_ack_loss_still_delivers_everything(tcp):
    link = ns.Link(10e6, 1e-3, 0.02)
    r = ns.simulate(20_000, link, "tcp", n_frames=100, seed=2, ack_loss=0.05, tcp=tcp)
    assert r.frame_loss == 0 and len(r.latency_s) == 100
    assert np.isfinite(r.latency_s).all()


def test_seeded_runs_are_identical():
    link = ns.Link(10e6, 2e-3, 0.03)
    for proto in ("tcp", "udp"):
        a = ns.simulate(30_000, link, proto, n_frames=80, seed=7, fps=20)
        b = ns.simulate(30_000, link, proto, n_frames=80, seed=7, fps=20)
        np.testing.assert_array_equal(a.latency_s, b.latency_s)
        np.testing.assert_array_equal(a.lost, b.lost)
        c = ns.simulate(30_000, link, proto, n_frames=80, seed=8, fps=20)
        assert not (np.array_equal(a.lost, c.lost) and np.array_equal(a.latency_s, c.latency_s))


# --------------------------------------------------------------------------- queueing


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_queueing_when_the_camera_outpaces_the_link(protocol):
    link = ns.Link(1e6, 1e-3)
    ser = ns.serialisation_s(10_000, link, protocol)  # ~86 ms → ~11.6 frames/s
    fps = 2 / ser
    r = ns.simulate(10_000, link, protocol, n_frames=50, fps=fps)
    lat = r.latency_s
    assert lat[0] == pytest.approx(ns.analytic_latency(10_000, link, protocol), rel=1e-9)
    # each frame waits (ser - 1/fps) longer than the previous one
    np.testing.assert_allclose(np.diff(lat), ser - 1 / fps, rtol=1e-6)
    assert r.p95 > 10 * r.latency_s[0]


def test_device_compute_queues_too():
    r = ns.simulate(100, SEI, "tcp", n_frames=20, fps=100, device_s=0.02)
    np.testing.assert_allclose(np.diff(r.latency_s), 0.01, rtol=1e-6)
    assert r.fps_max == pytest.approx(50)


def test_closed_loop_waits_for_the_server():
    r = ns.simulate(1000, SEI, "udp", n_frames=5, device_s=0.01, server_s=0.03)
    lat = ns.analytic_latency(1000, SEI, "udp", device_s=0.01, server_s=0.03)
    np.testing.assert_allclose(np.diff(r.capture_s), lat, rtol=1e-9)
