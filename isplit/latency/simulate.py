"""Latency of each candidate under network profiles: ``latency.parquet``.

The Split-Et-Impera step after I-SPLIT (docs/methods.md §5, docs/latency.md): every candidate
(:func:`isplit.recommend.candidates.endpoints`: the evaluated splits, LC and RC, given as a
table) is simulated packet by packet (:mod:`.netsim`, or ns-3 with ``simulator: ns3``:
:mod:`.ns3sim`) over the configured links (:mod:`.profiles`; one :class:`.link.Link` and
:class:`.link.Stream` per run: :func:`link_for`, :func:`stream_for`), with device and server
times from a named compute profile (:mod:`.devices`: the candidate's FLOPs and weight layers) or,
explicitly, from timings (``scale``/``table``: :mod:`.compute`); :mod:`isplit.recommend` then
picks the candidate that meets the application's constraints.

:func:`run_simulation` writes ``latency.parquet``, one row per candidate × profile × protocol ×
loss level:

=====================  =================================================================
column                 meaning
=====================  =================================================================
layer                  candidate: split layer (module name), ``LC``, or ``RC`` / the camera's
                       options ``RC-raw``, ``RC-jpeg<q>`` (:func:`endpoints`)
label, layer_index     from ``splits.parquet`` (LC: index −1 … RC: len; label = name)
profile                network profile name (:mod:`.profiles`)
protocol               ``tcp`` or ``udp``
loss                   average loss probability per data packet
loss_model             ``iid`` or ``gilbert-elliott(burst=…,bad_loss=…)``
simulator, tcp         ``builtin`` / ``ns3``; the TCP behaviour (``linux``, ``rfc6675``, ``sei``)
medium, contenders     the link's medium (``wire`` or a MAC, :mod:`.mac`) and the stations
                       saturating a shared Wi-Fi channel
cross_traffic, queue   other flows' share of the uplink; its drop-tail queue (NaN: unbounded)
bandwidth_bps          link rate each way (a wireless medium: its PHY rate)
delay_s                one-way propagation delay (wireless: behind the access point)
mtu                    largest IP packet
answer_bytes           the server's answer per frame (0: latency ends at the server)
bytes                  application bytes per frame
packets, wire_bytes    packets per frame; bytes on the wire per frame, all headers included
device_profile         what produced ``device_s``: a profile name (:mod:`.devices`),
                       ``scale:<f>`` (this machine × f) or ``table:<file>×<f>``
server_profile         the same for ``server_s``
device_flops,          work on the device (LC: the whole model; RC: 0) …
device_layers,
device_params
device_max_params      … and the most parameters the device profile holds (NaN = no limit)
server_flops,          work on the server (LC: 0; RC: the whole model)
server_layers
device_s, server_s     compute time per frame on each side
latency_p50_s          median frame latency (stratified estimate, :mod:`.stats`) …
latency_p50_lo_s/hi_s  … with its 95 % bootstrap interval
latency_p95_s, _lo_s,  95th percentile, the same way
_hi_s
latency_mean_s         mean of the delivered frames
n_delivered            frames the percentiles are over
frame_loss             UDP: exact probability that a frame loses a packet (TCP: 0)
frame_loss_sim,        the simulated fraction with its 95 % Wilson interval
_lo, _hi
p_clean                probability that no packet of a frame is lost (the stratum weight)
retransmissions,       TCP events over the run (retransmitted packets, timeouts, tail loss
rto_count, tlp_count   probes)
fps_max                1 / max(device_s, serialisation of one frame, server_s)
analytic_s             zero-loss closed form (:func:`.link.analytic_latency`; NaN off a wire)
top1, val_top1         test and validation accuracy of the candidate in the experiment's
                       metric (top-1 or balanced accuracy; the column names keep "top1")
delivered_top1,        the same × (1 − frame_loss): accuracy over all frames sent, a lost
delivered_val_top1     frame counting as wrong (= top1 over TCP)
n_frames, fps, seed    simulation settings (fps NaN = closed loop)
=====================  =================================================================
"""

from __future__ import annotations

import functools
import multiprocessing
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from tqdm import tqdm

from isplit.config import LatencySettings, settings
from isplit.io.files import write_table
from isplit.latency import compute, devices, netsim, profiles, stats
from isplit.latency.link import Link, Stream, TcpOptions, analytic_latency

COLUMNS = [
    "layer",
    "label",
    "layer_index",
    "profile",
    "protocol",
    "loss",
    "loss_model",
    "simulator",
    "tcp",
    "medium",
    "contenders",
    "cross_traffic",
    "queue",
    "bandwidth_bps",
    "delay_s",
    "mtu",
    "answer_bytes",
    "bytes",
    "packets",
    "wire_bytes",
    "device_profile",
    "server_profile",
    "device_flops",
    "device_layers",
    "device_params",
    "device_max_params",
    "server_flops",
    "server_layers",
    "device_s",
    "server_s",
    *stats.PERCENTILE_COLUMNS,
    "latency_mean_s",
    "n_delivered",
    "frame_loss",
    "frame_loss_sim",
    "frame_loss_sim_lo",
    "frame_loss_sim_hi",
    "p_clean",
    "retransmissions",
    "rto_count",
    "tlp_count",
    "fps_max",
    "analytic_s",
    "top1",
    "val_top1",
    "delivered_top1",
    "delivered_val_top1",
    "n_frames",
    "fps",
    "seed",
]


def side_times(
    cands: pd.DataFrame, spec, side: str, compute_path, stat: str
) -> tuple[dict, str, float]:
    """Seconds per frame on ``side`` for every candidate, the name of what produced them, and
    the device's parameter limit (NaN = none)."""
    prof = devices.resolve(spec, side)
    if prof is not None:
        work = cands[[f"{side}_flops", f"{side}_layers"]].astype(float)
        if work.isna().any().any():
            raise ValueError(
                f"latency.{side}: profile {prof.name!r} needs the {side} FLOPs and weight layers "
                "of every candidate (splits.parquet has no *_layers columns: rerun gather)"
            )
        t = prof.seconds(work.iloc[:, 0], work.iloc[:, 1])
        limit = np.nan if prof.max_params is None else float(prof.max_params)
        return dict(zip(cands["layer"], map(float, t), strict=True)), prof.name, limit
    if compute_path is None:
        raise ValueError(f"latency.{side} = {dict(spec)} times this machine: needs --compute")
    local = pd.read_parquet(compute_path)
    timed = dict(zip(cands["layer"], cands["timed_as"], strict=True))
    names = [x for x in timed.values() if x not in (compute.LC, compute.RC)]
    t = compute.side_times(local, spec, side=side, layers=names, stat=stat)
    t = {layer: t[part] for layer, part in timed.items()}
    scale = float(spec.get("scale", 1.0))
    name = (
        f"table:{Path(spec['table']).name}x{scale:g}" if spec.get("table") else f"scale:{scale:g}"
    )
    return t, name, np.nan


def _simulator(name: str):
    """The simulate function of ``latency.simulator``."""
    if name == "ns3":
        from isplit.latency import ns3sim

        return ns3sim.simulate
    return netsim.simulate


def link_for(prof: profiles.Profile, loss: float, st: LatencySettings) -> Link:
    """The link of one profile at one loss level under the configured conditions."""
    return prof.link(loss, loss_model=st.loss_model, cross_traffic=st.cross_traffic, queue=st.queue)


def stream_for(st: LatencySettings, frame_bytes: int, protocol: str, **kw) -> Stream:
    """The stream of one candidate (``kw``: ``device_s``, ``server_s``) as configured."""
    tcp = TcpOptions(
        st.tcp,
        rto_s=st.rto_s,
        dupacks=st.dupacks,
        window=st.window,
        initial_window=st.initial_window,
        slow_start_after_idle=st.slow_start_after_idle,
        delayed_ack=st.delayed_ack,
    )
    return Stream(
        int(frame_bytes),
        protocol,
        n_frames=st.n_frames,
        fps=st.fps,
        payload=st.payload,
        answer_bytes=st.answer_bytes,
        tcp=tcp,
        **kw,
    )


def _simulate_one(task, *, st: LatencySettings, dev: dict, srv: dict, names: tuple, seed: int):
    """One candidate on one link, protocol and loss level: a ``latency.parquet`` row."""
    prof, loss, protocol, r = task
    dev_name, srv_name, dev_limit = names
    link = link_for(prof, loss, st)
    stream = stream_for(st, r.bytes, protocol, device_s=dev[r.layer], server_s=srv[r.layer])
    res = _simulator(st.simulator)(link, stream, seed=int(seed), n_boot=st.n_boot)
    fps = st.fps
    pct = res.percentiles
    n_sim = len(res.lost)
    sim_lo, sim_hi = stats.wilson(int(res.lost.sum()), n_sim)
    kept = 1.0 - res.frame_loss
    return {
        "layer": r.layer,
        "label": r.label,
        "layer_index": int(r.layer_index),
        "profile": prof.name,
        "protocol": protocol,
        "loss": float(loss),
        "loss_model": link.loss_process().describe(),
        "simulator": st.simulator,
        "tcp": st.tcp if protocol == "tcp" else "",
        "medium": link.medium,
        "contenders": int(link.contenders),
        "cross_traffic": float(link.cross_traffic),
        "queue": np.nan if link.queue is None else float(link.queue),
        "bandwidth_bps": float(prof.bandwidth_bps),
        "delay_s": float(prof.delay_s),
        "mtu": int(prof.mtu),
        "answer_bytes": int(stream.answer_bytes),
        "bytes": int(r.bytes),
        "packets": res.packets_per_frame,
        "wire_bytes": res.wire_bytes_per_frame,
        "device_profile": dev_name,
        "server_profile": srv_name,
        "device_flops": float(r.device_flops),
        "device_layers": float(r.device_layers),
        "device_params": float(r.device_params),
        "device_max_params": dev_limit,
        "server_flops": float(r.server_flops),
        "server_layers": float(r.server_layers),
        "device_s": dev[r.layer],
        "server_s": srv[r.layer],
        "latency_p50_s": pct.p50,
        "latency_p50_lo_s": pct.p50_lo,
        "latency_p50_hi_s": pct.p50_hi,
        "latency_p95_s": pct.p95,
        "latency_p95_lo_s": pct.p95_lo,
        "latency_p95_hi_s": pct.p95_hi,
        "latency_mean_s": pct.mean,
        "n_delivered": pct.n,
        "frame_loss": res.frame_loss,
        "frame_loss_sim": res.frame_loss_sim,
        "frame_loss_sim_lo": sim_lo,
        "frame_loss_sim_hi": sim_hi,
        "p_clean": res.p_clean,
        "retransmissions": int(res.counts.get("retransmissions", 0)),
        "rto_count": int(res.counts.get("rto", 0)),
        "tlp_count": int(res.counts.get("tlp", 0)),
        "fps_max": res.fps_max,
        "analytic_s": analytic_latency(link, stream) if link.medium == "wire" else np.nan,
        "top1": float(r.test),
        "val_top1": float(r.val),
        "delivered_top1": float(r.test) * kept,
        "delivered_val_top1": float(r.val) * kept,
        "n_frames": st.n_frames,
        "fps": float(fps) if fps else np.nan,
        "seed": int(seed),
    }


def run_simulation(
    *,
    candidates: pd.DataFrame,
    compute_path: str | Path | None,
    cfg: LatencySettings | Mapping | None,
    out_path: str | Path,
    seed: int = 0,
    workers: int = 1,
) -> pd.DataFrame:
    """Simulate every candidate (a :func:`isplit.recommend.candidates.endpoints` table: name,
    bytes, work on each side, accuracies, ``timed_as``) over every selected profile × protocol
    × loss level, in ``workers`` processes (the builtin simulator).

    Every simulation uses the same ``seed`` (common random numbers): candidates are compared
    under the same draws. ``compute_path`` (the local timing table) is needed only when a side
    is ``scale``/``table``. Same inputs and config → identical ``latency.parquet`` (written
    atomically).
    """
    st = settings("latency", cfg)
    if st.simulator == "ns3":
        from isplit.latency import ns3sim

        ns3sim.check_settings(st)  # refuse before hours of simulation, not in the middle
    cands = candidates
    dev, dev_name, dev_limit = side_times(cands, st.device, "device", compute_path, st.compute_stat)
    srv, srv_name, _ = side_times(cands, st.server, "server", compute_path, st.compute_stat)
    tasks = [
        (prof, loss, protocol, r)
        for prof in profiles.resolve(st.profiles, st.losses)
        for loss in prof.losses
        for protocol in st.protocols
        for r in (SimpleNamespace(**d) for d in cands.to_dict("records"))
    ]
    one = functools.partial(
        _simulate_one, st=st, dev=dev, srv=srv, names=(dev_name, srv_name, dev_limit), seed=seed
    )
    # every simulation is seeded by itself, so spreading them over processes changes nothing
    # but the wall time; ns-3 is imported once per process (seconds), so it stays in one
    workers = max(1, min(int(workers), len(tasks))) if st.simulator == "builtin" else 1
    progress = tqdm(total=len(tasks), desc="simulate", unit="run", mininterval=5, file=sys.stderr)
    rows = []
    if workers == 1:
        for t in tasks:
            rows.append(one(t))
            progress.update()
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch/BLAS state in the workers
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for row in pool.map(one, tasks, chunksize=1):
                rows.append(row)
                progress.update()
    progress.close()
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_table(df, out_path)
    return df


__all__ = ["COLUMNS", "run_simulation", "side_times"]
