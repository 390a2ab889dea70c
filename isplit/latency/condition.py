"""One link condition, simulated and written frame by frame: the unit behind ``isplit
simulate-link``, the backend comparisons and the validation (docs/latency.md §10).

A condition is a network profile (:mod:`.profiles`) at one loss level with the link's other
conditions (cross traffic, queue, contenders), and a stream of frames of one size over one
protocol; :func:`run` simulates it with either backend and :func:`frames` gives one row per
frame: ``frame``, ``capture_s``, ``latency_s`` (NaN when lost), ``delivered``, ``clean`` (none of
its packets, nor its answer, lost).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from isplit.latency import netsim, profiles, stats
from isplit.latency.link import Link, Stream, TcpOptions

BACKENDS = ("builtin", "ns3")
#: the TCP each backend runs unless told otherwise (ns-3 has only its own)
DEFAULT_TCP = {"builtin": "linux", "ns3": "rfc6675"}


def link_of(profile: str, loss: float, **conditions) -> Link:
    """A named profile's link at ``loss``; ``conditions`` override its other fields
    (``cross_traffic``, ``queue``, ``contenders``, ``loss_model``, ``reverse_loss``, …)."""
    (prof,) = profiles.resolve([profile])
    link = prof.link(loss)
    return replace(link, **conditions) if conditions else link


def run(backend: str, link: Link, stream: Stream, *, seed: int, n_boot: int = 200):
    """The condition in ``backend`` (:data:`BACKENDS`): a :class:`.netsim.SimResult`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "ns3":
        from isplit.latency import ns3sim

        return ns3sim.simulate(link, stream, seed=seed, n_boot=n_boot)
    return netsim.simulate(link, stream, seed=seed, n_boot=n_boot)


def stream_of(frame_bytes: int, protocol: str, frames: int, backend: str, tcp=None, **kw):
    """A stream with the backend's default TCP behaviour unless ``tcp`` names one."""
    opts = TcpOptions(tcp or DEFAULT_TCP[backend])
    return Stream(int(frame_bytes), protocol, n_frames=int(frames), tcp=opts, **kw)


def pooled(results: list[netsim.SimResult], *, n_boot: int = 200, seed: int = 0):
    """Stratified p50/p95 (:mod:`.stats`) of one condition's runs with several seeds, their
    delivered frames pooled, with intervals from the runs (:func:`.stats.stratified_runs`);
    the clean weight is the runs' exact one (one stratum where the medium has none: NaN)."""
    lat = [r.latency_s for r in results]
    w = results[0].p_clean
    if np.isfinite(w):
        lab = [r.clean[~r.lost].astype(int) for r in results]
        weights = {1: w, 0: 1 - w}
    else:
        lab, weights = [np.ones(x.size, int) for x in lat], {1: 1.0}
    return stats.stratified_runs(lat, lab, weights, n_boot=n_boot, seed=seed)


def frames(res: netsim.SimResult) -> pd.DataFrame:
    """One row per frame of a result."""
    n = len(res.lost)
    return pd.DataFrame(
        {
            "frame": np.arange(n),
            "capture_s": res.capture_s,
            "latency_s": res.frame_latency_s,
            "delivered": ~res.lost,
            "clean": res.clean,
        }
    )


def summary(res: netsim.SimResult) -> str:
    """p50, p95 (stratified, with intervals) and frame loss, in one line per value."""
    p = res.percentiles

    def ms(v):
        return "n/a" if not np.isfinite(v) else f"{v * 1e3:.3f} ms"

    return "\n".join(
        [
            f"p50 {ms(p.p50)} [{ms(p.p50_lo)}, {ms(p.p50_hi)}]",
            f"p95 {ms(p.p95)} [{ms(p.p95_lo)}, {ms(p.p95_hi)}]",
            f"frame loss {res.frame_loss:.4%} "
            f"(simulated {res.frame_loss_sim:.4%} of {len(res.lost)} frames)",
            f"frames delivered {p.n}, packets per frame {res.packets_per_frame}",
        ]
    )
