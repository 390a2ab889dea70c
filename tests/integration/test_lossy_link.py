"""A short validation under loss on the real Linux TCP and UDP stacks (tools/lossy_bridge.py):
one loss level, a few frames, against the simulator. Needs root and network namespaces (CI runs
as root); skipped with the reason otherwise."""

import pytest

from tools import lossy_validation
from tools.relay import netns_unavailable, tbf_burst

REASON = netns_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"lossy link test bed: {REASON}")


@pytest.mark.parametrize(
    ("rate_bps", "delay_s"),
    [(10e6, 0.01), (2e6, 0.02), (20e6, 0.02)],
    ids=["10M-10ms", "2M-20ms", "20M-20ms"],
)
def test_short_lossy_validation(tmp_path, rate_bps, delay_s):
    conds = [
        {"proto": proto, "frame_bytes": 1000, "loss": loss, "frames": 60}
        for loss in (0.0, 0.05)
        for proto in ("tcp", "udp")
    ]
    rows, delay = lossy_validation.run(
        conds,
        rate_bps=rate_bps,
        delay_s=delay_s,
        fps=20,
        seed=0,
        n_sim=400,
        work=tmp_path,
        log=lambda m: None,
    )
    # the bridge's delay plus its forwarding, less tbf's head start (a full bucket at line rate)
    head_start = tbf_burst(rate_bps) * 8 / rate_bps
    assert delay_s - head_start - 1e-3 < delay < delay_s + 3e-3
    for r in rows:
        assert r["kernel_drops"] == 0, r  # only the bridge's own, seeded drops are losses
        assert r["n_measured"] == 60 and r["bridge_data_frames"] >= 60
        # one-packet frames: the median is a loss-free frame, in both worlds
        assert abs(r["err_p50"]) <= lossy_validation.CRITERIA["p50"], r
        if r["proto"] == "udp":
            assert r["ok_frame_loss"], r
        if r["loss"] == 0:
            assert r["bridge_dropped"] == 0
    tcp = next(r for r in rows if r["proto"] == "tcp" and r["loss"] > 0)
    assert tcp["congestion_control"] == "cubic"
    # Linux retransmitted exactly what the bridge dropped (no spurious retransmission)
    assert tcp["kernel_retransmissions"] >= tcp["bridge_dropped"] > 0
