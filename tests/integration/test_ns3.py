"""ns-3 as the reference simulator: one point-to-point scenario in ns-3 against the builtin
simulator on the same link (needs ``pip install 'isplit[ns3]'``; ~20 s to load ns-3)."""

import math

import numpy as np
import pytest

from isplit.latency import netsim, ns3sim

pytestmark = pytest.mark.skipif(
    ns3sim.unavailable() is not None, reason=f"ns-3: {ns3sim.unavailable()}"
)

# ns-3's point-to-point framing: 1448-byte segments, TCP with timestamps (32 B), a PPP header
TCP = {"payload": 1448, "app_header": 0, "transport_header": 32, "link_header": 2}
UDP = {"payload": 1448, "app_header": ns3sim.UDP_TAG, "transport_header": 8, "link_header": 2}


def test_ns3_and_builtin_agree_on_a_point_to_point_link():
    link = netsim.Link(10e6, 10e-3)
    # no loss: every frame after the first (slow start) takes exactly the closed form, in both
    expect = netsim.analytic_latency(30_000, link, "tcp", **TCP)
    ns3 = ns3sim.simulate(30_000, link, "tcp", n_frames=30, payload=1448)
    ours = netsim.simulate(30_000, link, "tcp", n_frames=30, **TCP)
    np.testing.assert_allclose(ns3.latency_s[1:], expect, rtol=1e-6)
    np.testing.assert_allclose(ours.latency_s[1:], expect, rtol=1e-9)
    # the first frame waits for slow start in both (how each grows the window per ACK differs)
    assert ns3.latency_s[0] == pytest.approx(ours.latency_s[0], rel=0.05)
    udp = ns3sim.simulate(10_000, link, "udp", n_frames=30, payload=1448)
    np.testing.assert_allclose(
        udp.latency_s, netsim.analytic_latency(10_000, link, "udp", **UDP), rtol=1e-6
    )

    # 2 % loss: the medians agree (losses repaired within about an RTT in both); the tails do
    # not have to — ns-3 has no RACK or tail loss probe (docs/latency.md)
    lossy = netsim.Link(10e6, 10e-3, 0.02)
    ns3 = ns3sim.simulate(30_000, lossy, "tcp", n_frames=400, seed=1, payload=1448)
    ours = netsim.simulate(30_000, lossy, "tcp", n_frames=400, seed=1, **TCP)
    assert len(ns3.latency_s) == 400 and ns3.frame_loss == 0
    p50 = (np.median(ns3.latency_s), np.median(ours.latency_s))
    assert abs(p50[1] - p50[0]) / p50[0] < 0.15, p50

    # UDP at 5 %: frame loss within 3σ of the exact 1 - (1 - p)^k in both
    lossy = netsim.Link(10e6, 10e-3, 0.05)
    ns3 = ns3sim.simulate(10_000, lossy, "udp", n_frames=400, seed=1, payload=1448)
    q = 1 - 0.95**ns3.packets_per_frame
    assert abs(ns3.frame_loss_sim - q) < 3 * math.sqrt(q * (1 - q) / 400)
    assert ns3.p50 == pytest.approx(netsim.analytic_latency(10_000, lossy, "udp", **UDP), rel=1e-6)


def test_wifi_scenario_runs_with_the_mac_retrying():
    link = netsim.Link(40e6, 2e-3, 0.05)  # the wifi-n profile at 5 % PHY loss
    r = ns3sim.simulate(10_000, link, "udp", n_frames=100, seed=1, medium="wifi-n")
    # the MAC retransmits what the PHY loses: (almost) no frame is lost at the IP layer
    assert r.frame_loss_sim <= 0.02 and np.isfinite(r.p95) and r.p95 < 0.05
