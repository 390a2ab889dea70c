"""The TCP model's recovery mechanisms one at a time (scripted losses) for each behaviour, the
loss models and the seed-stable statistics of ``isplit.latency``."""

import math

import numpy as np
import pytest

from isplit.latency import loss as lossmod
from isplit.latency import netsim as ns
from isplit.latency import stats
from isplit.latency import tcp as tl
from isplit.latency.link import Link, Stream, TcpOptions, analytic_latency

LINK = Link(100e6, 10e-3)  # RTT 20 ms: recovery in about one RTT is easy to tell from an RTO


def sim(frame_bytes, link, protocol="tcp", *, seed=0, tcp="linux", **kw):
    opts = {k: kw.pop(k) for k in ("initial_window", "slow_start_after_idle") if k in kw}
    return ns.simulate(link, Stream(frame_bytes, protocol, tcp=TcpOptions(tcp, **opts), **kw),
                       seed=seed)  # fmt: skip


class Scripted:
    """Drops exactly the listed transmissions (0 = the first packet the sender transmits)."""

    def __init__(self, drops):
        self.drops, self.i = set(drops), -1

    def lost(self):
        self.i += 1
        return self.i in self.drops


def one_frame(frame_bytes, drops, link=LINK, **opts):
    """One frame with the listed transmissions lost: its delay over the loss-free value, whether
    it counts as lossy, and the sender's event counts."""
    stream = Stream(frame_bytes, "tcp", n_frames=1, answer_bytes=0, tcp=TcpOptions(**opts))
    net = ns.Network(link, stream, 0)
    net.up.loss = Scripted(drops)
    net.run()
    extra = net.done[0] - net.capture[0] - analytic_latency(link, stream)
    return extra, net.dirty[0], net.counts()


def test_a_hole_is_repaired_in_one_round_trip_by_sack_and_rack():
    extra, dirty, counts = one_frame(10 * 1010, [3])  # the 4th of 10 segments
    assert dirty and counts["recoveries"] == 1 and counts["rto"] == 0
    rtt = 2 * LINK.delay_s
    assert rtt * 0.9 < extra < 1.5 * rtt


def test_a_lost_tail_pair_is_repaired_by_the_tail_loss_probe():
    extra, _, counts = one_frame(10 * 1010, [8, 9])  # the last two segments
    assert counts["tlp"] == 1 and counts["rto"] == 0
    assert extra < 0.15  # 2·srtt + 8 ms for the probe, then an RTT: far below the 200 ms RTO


def test_a_lone_lost_tail_segment_waits_about_an_rto():
    # once the others are ACKed one segment is outstanding: Linux adds 200 ms to the probe
    # timeout for the peer's delayed ACK, so the probe comes when the RTO would
    extra, _, counts = one_frame(10 * 1010, [9])
    assert counts["rto"] + counts["tlp"] == 1
    assert 0.2 < extra < 0.35
    extra, _, _ = one_frame(500, [0])  # a one-segment frame: RTO = srtt + 200 ms
    assert extra == pytest.approx(
        math.ceil((0.2 + 2 * LINK.delay_s + 1e-5) / tl.JIFFY_S) * tl.JIFFY_S, abs=5e-3
    )


def test_the_rto_backs_off_when_the_retransmission_is_lost_too():
    once, _, _ = one_frame(500, [0])  # the probe (at the RTO's time) repairs it
    twice, _, counts = one_frame(500, [0, 1])  # the probe is lost: an RTO later
    assert counts == {"retransmissions": 2, "rto": 1, "tlp": 1, "recoveries": 0}
    assert twice == pytest.approx(2 * once, rel=0.05)
    thrice, _, counts = one_frame(500, [0, 1, 2])  # so is the RTO's: the RTO doubles
    assert counts["rto"] == 2 and thrice == pytest.approx(4 * once, rel=0.05)


def test_min_rto_is_a_parameter():
    base, _, _ = one_frame(500, [0])
    short, _, _ = one_frame(500, [0], rto_s=0.05)
    assert short < base - 0.1


def test_the_behaviours_differ_where_their_stacks_do():
    rtt = 2 * LINK.delay_s
    # the first of 3 segments lost: only 2 SACKed above it, short of the duplicate threshold
    linux, _, c = one_frame(3 * 1010, [0])  # RACK: lost once a later segment is delivered
    assert c["rto"] == 0 and rtt < linux < 2 * rtt
    ns3, _, c = one_frame(3 * 1010, [0], behaviour="rfc6675")  # RFC 6675: only the RTO finds it
    assert c["rto"] == 1 and ns3 > 0.19
    # with 3 SACKed segments above the hole both repair it in about a round trip
    for behaviour in ("linux", "rfc6675"):
        extra, _, c = one_frame(10 * 1010, [3], behaviour=behaviour)
        assert c["rto"] == 0 and c["recoveries"] == 1 and rtt * 0.9 < extra < 1.5 * rtt
    # a lone lost segment: ns-3's RTO is max(srtt + 4 rttvar, 200 ms), Linux's srtt + 200 ms
    # (its probe comes then too), SCNSL's a fixed 200 ms
    ns3, _, c = one_frame(500, [0], behaviour="rfc6675")
    assert c["tlp"] == 0 and ns3 == pytest.approx(0.2, abs=1e-9)
    sei, _, c = one_frame(500, [0], behaviour="sei")
    assert sei == pytest.approx(0.2, abs=1e-9)
    linux, _, _ = one_frame(500, [0])
    assert linux > 0.2 + rtt * 0.9


def test_slow_start_opens_the_window_round_by_round():
    # 150 segments, initial window 10, serialisation negligible: the window doubles every RTT
    # (10 + 20 + 40 + 80 ≥ 150), so the first frame needs 3 more round trips than the analytic
    # back-to-back value; the second frame finds the window open
    link = Link(1e12, 10e-3)
    frame = 150 * 1010
    # device compute longer than an RTT: the previous frame's ACKs are back before a frame goes
    r = sim(frame, link, n_frames=2, device_s=0.05, answer_bytes=0)
    expect = analytic_latency(link, Stream(frame, "tcp", device_s=0.05, answer_bytes=0))
    assert r.latency_s[0] - expect == pytest.approx(3 * 2 * link.delay_s, rel=0.02)
    assert r.latency_s[1] == pytest.approx(expect, rel=1e-9)
    r = sim(frame, link, n_frames=2, initial_window=40, device_s=0.05, answer_bytes=0)
    assert r.latency_s[0] - expect == pytest.approx(2 * 2 * link.delay_s, rel=0.02)


def test_slow_start_after_idle_restarts_every_frame_after_a_long_gap():
    link = Link(1e12, 10e-3)
    frame = 40 * 1010
    expect = analytic_latency(link, Stream(frame, "tcp", answer_bytes=0))
    gap = sim(frame, link, n_frames=4, fps=1.0, answer_bytes=0)  # 1 s idle > RTO
    assert (gap.latency_s > expect + 0.03).all()
    keep = sim(frame, link, n_frames=4, fps=1.0, slow_start_after_idle=False, answer_bytes=0)
    np.testing.assert_allclose(keep.latency_s[1:], expect, rtol=1e-9)


def test_linux_recovers_faster_than_sei_under_loss():
    link = Link(10e6, 5e-3, 0.02)
    kw = {"n_frames": 400, "seed": 3}
    linux = sim(30_000, link, **kw)
    sei = sim(30_000, link, tcp="sei", **kw)
    assert linux.p95 < sei.p95 and sei.p95 > 0.2
    assert linux.counts["rto"] < sei.counts["rto"]


# --------------------------------------------------------------------------- loss models


def test_gilbert_elliott_keeps_the_average_rate_and_makes_bursts():
    model = lossmod.LossModel(0.05, "gilbert-elliott", burst_length=5)
    drops = lossmod.PacketLoss(model, np.random.default_rng(0))
    seq = np.array([drops.lost() for _ in range(200_000)])
    assert seq.mean() == pytest.approx(0.05, abs=0.005)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, seq.astype(int), 0])))[::2]
    assert runs.mean() == pytest.approx(5, rel=0.1)  # mean burst = burst_length
    # frames of 10 packets: bursts concentrate the losses, so fewer frames lose anything
    iid = lossmod.LossModel(0.05)
    assert lossmod.clean_probability(model, 10) > lossmod.clean_probability(iid, 10)
    assert lossmod.clean_probability(iid, 10) == pytest.approx(0.95**10)
    frames = seq[: 10 * 20_000].reshape(-1, 10).any(axis=1)
    p_lost = 1 - lossmod.clean_probability(model, 10)
    assert frames.mean() == pytest.approx(p_lost, abs=4 * math.sqrt(p_lost / 20_000))


def test_loss_model_validation_and_config():
    assert lossmod.from_config(0.02, None) == lossmod.LossModel(0.02)
    ge = lossmod.from_config(0.02, {"kind": "gilbert-elliott", "burst_length": 3})
    assert ge.kind == "gilbert-elliott" and ge.burst_length == 3
    with pytest.raises(ValueError, match="kind"):
        lossmod.LossModel(0.1, "pareto")
    with pytest.raises(ValueError, match="burst_length"):
        lossmod.LossModel(0.1, "gilbert-elliott", burst_length=0.5)
    spec = {"kind": "gilbert-elliott", "burst_length": 3}
    r = ns.simulate(Link(10e6, 1e-3, 0.02, loss_model=spec), Stream(20_000, "udp", n_frames=50))
    expect = 1 - lossmod.clean_probability(ge, r.packets_per_frame)
    assert r.frame_loss == pytest.approx(expect)


# --------------------------------------------------------------------------- statistics


def test_p95_at_five_percent_loss_does_not_depend_on_the_seed():
    # one-packet frames at p = 5 %: the p95 knife edge (a plain sample p95 flips
    # between ~6 ms and ~220 ms from seed to seed); the stratified one does not move
    link = Link(1e9, 100e-6, 0.05)
    for tcp in ("linux", "sei"):
        p95 = {sim(1000, link, n_frames=1000, seed=s, tcp=tcp).p95 for s in range(5)}
        assert max(p95) - min(p95) < 0.005, (tcp, p95)
    plain = {
        float(np.percentile(sim(1000, link, n_frames=200, seed=s).latency_s, 95)) for s in range(10)
    }
    assert max(plain) > 0.1 > min(plain)  # why the stratification is needed


def test_stratified_quantiles_and_intervals():
    rng = np.random.default_rng(0)
    clean = rng.normal(1.0, 0.01, 900)
    lossy = rng.normal(3.0, 0.1, 100)
    lat = np.r_[clean, lossy]
    lab = np.r_[np.ones(900, int), np.zeros(100, int)]
    # with the true weights 0.8 / 0.2 the p95 is in the lossy part although only 10 % sampled
    p = stats.stratified(lat, lab, {1: 0.8, 0: 0.2}, n_boot=100)
    assert 2.8 < p.p95 < 3.2 and p.p95_lo <= p.p95 <= p.p95_hi
    assert 0.98 < p.p50 < 1.02 and p.p50_lo <= p.p50 <= p.p50_hi and p.n == 1000
    assert p.mean == pytest.approx(0.8 * clean.mean() + 0.2 * lossy.mean())
    # a stratum weight of exactly 0.95 puts the p95 at the clean stratum's top
    p = stats.stratified(lat, lab, {1: 0.95, 0: 0.05}, n_boot=50)
    assert p.p95 == pytest.approx(clean.max())
    empty = stats.stratified(np.zeros(0), np.zeros(0), {1: 1.0})
    assert empty.n == 0 and math.isnan(empty.p95)
    lo, hi = stats.wilson(5, 100)
    assert lo < 0.05 < hi and stats.wilson(0, 0) == (0.0, 1.0)
