"""Latency of each split under network profiles: ``latency.parquet``.

The Split-Et-Impera step after I-SPLIT (docs/method.md): every evaluated split, plus the
two ends LC (all on the device) and RC (raw frame to the server), is simulated packet by packet
(:mod:`.netsim`) over the configured links (:mod:`.profiles`) with the measured or imported
compute times (:mod:`.compute`); :mod:`.recommend` then picks the split that meets the
application's constraints, and :mod:`.figures` draws accuracy against p95 latency.

:func:`run_simulation` writes ``latency.parquet``, one row per layer × profile × protocol × loss:

=================  ======================================================================
column             meaning
=================  ======================================================================
layer              split layer (module name), or ``LC`` / ``RC``
label, layer_index from ``splits.parquet`` (LC: index −1 … RC: len; label = layer for both)
profile            network profile name (:mod:`.profiles`)
protocol           ``tcp`` or ``udp``
loss               Bernoulli loss probability per data packet
bandwidth_bps      link rate each way
delay_s            one-way propagation delay
mtu                largest IP packet
bytes              application bytes per frame (split: ``bytes`` of splits.parquet; LC: 4;
                   RC: 3·S·S uint8)
packets            packets per frame
wire_bytes         bytes on the wire per frame, all headers included
device_s           device compute per frame (head + encoder; LC: full model; RC: 0)
server_s           server compute per frame (decoder + tail; LC: 0; RC: full model)
latency_p50_s      median latency of the delivered frames
latency_p95_s      95th percentile of the same
latency_mean_s     mean of the same
frame_loss         fraction of frames lost (UDP; always 0 over TCP)
fps_max            1 / max(device_s, serialisation of one frame, server_s)
analytic_s         zero-loss closed form (:func:`.netsim.analytic_latency`)
top1               test accuracy of this configuration (LC, RC: the fine-tuned model)
n_frames, fps      simulation settings (fps NaN = closed loop)
seed               simulation seed
=================  ======================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.config import LatencySettings, settings
from isplit.io.files import write_table
from isplit.latency import compute, netsim, profiles

COLUMNS = [
    "layer",
    "label",
    "layer_index",
    "profile",
    "protocol",
    "loss",
    "bandwidth_bps",
    "delay_s",
    "mtu",
    "bytes",
    "packets",
    "wire_bytes",
    "device_s",
    "server_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_mean_s",
    "frame_loss",
    "fps_max",
    "analytic_s",
    "top1",
    "n_frames",
    "fps",
    "seed",
]


def _finetune_top1(path) -> float:
    if path is None:
        return float("nan")
    return float(json.loads(Path(path).read_text())["test"]["top1"])


def endpoints(splits: pd.DataFrame, input_size: int, lc_rc_top1: float) -> pd.DataFrame:
    """The split rows plus LC and RC, with the columns the simulation needs."""
    s = splits.sort_values("layer_index") if "layer_index" in splits else splits
    rows = pd.DataFrame(
        {
            "layer": s["layer"].astype(str),
            "label": s["label"].astype(str) if "label" in s else s["layer"].astype(str),
            "layer_index": s["layer_index"].astype(int) if "layer_index" in s else range(len(s)),
            "bytes": s["bytes"].astype(int),
            "top1": s["top1"].astype(float),
        }
    )
    n = int(rows["layer_index"].max()) + 1 if len(rows) else 0
    ends = pd.DataFrame(
        {
            "layer": [compute.LC, compute.RC],
            "label": [compute.LC, compute.RC],
            "layer_index": [-1, n],
            "bytes": [compute.LC_RESULT_BYTES, compute.rc_bytes(input_size)],
            "top1": [lc_rc_top1, lc_rc_top1],
        }
    )
    return pd.concat([ends.iloc[[0]], rows, ends.iloc[[1]]], ignore_index=True)


def run_simulation(
    *,
    splits_path: str | Path,
    compute_path: str | Path,
    finetune_metrics_path: str | Path | None,
    input_size: int,
    cfg: LatencySettings | Mapping | None,
    out_path: str | Path,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate every split (and LC/RC) over every selected profile × protocol × loss level.

    Every simulation uses the same ``seed`` (common random numbers): splits are compared under
    the same draws, and with UDP a packet lost at one loss level is lost at every higher one.
    Same inputs and config → identical ``latency.parquet`` (written atomically).
    """
    st = settings("latency", cfg)
    splits = pd.read_parquet(splits_path)
    local = pd.read_parquet(compute_path)
    table = endpoints(splits, int(input_size), _finetune_top1(finetune_metrics_path))
    layers = [x for x in table["layer"] if x not in (compute.LC, compute.RC)]
    dev = compute.side_times(local, st.device, side="device", layers=layers, stat=st.compute_stat)
    srv = compute.side_times(local, st.server, side="server", layers=layers, stat=st.compute_stat)
    fps = st.fps
    rows = []
    for prof in profiles.resolve(st.profiles, st.losses):
        for loss in prof.losses:
            link = prof.link(loss)
            for protocol in st.protocols:
                for r in table.itertuples(index=False):
                    res = netsim.simulate(
                        int(r.bytes),
                        link,
                        protocol,
                        n_frames=st.n_frames,
                        fps=fps,
                        device_s=dev[r.layer],
                        server_s=srv[r.layer],
                        seed=int(seed),
                        payload=st.payload,
                        rto_s=st.rto_s,
                        dupacks=st.dupacks,
                        window=st.window,
                    )
                    rows.append(
                        {
                            "layer": r.layer,
                            "label": r.label,
                            "layer_index": int(r.layer_index),
                            "profile": prof.name,
                            "protocol": protocol,
                            "loss": float(loss),
                            "bandwidth_bps": float(prof.bandwidth_bps),
                            "delay_s": float(prof.delay_s),
                            "mtu": int(prof.mtu),
                            "bytes": int(r.bytes),
                            "packets": res.packets_per_frame,
                            "wire_bytes": res.wire_bytes_per_frame,
                            "device_s": dev[r.layer],
                            "server_s": srv[r.layer],
                            "latency_p50_s": res.p50,
                            "latency_p95_s": res.p95,
                            "latency_mean_s": (
                                float(res.latency_s.mean()) if res.latency_s.size else np.nan
                            ),
                            "frame_loss": res.frame_loss,
                            "fps_max": res.fps_max,
                            "analytic_s": netsim.analytic_latency(
                                int(r.bytes),
                                link,
                                protocol,
                                device_s=dev[r.layer],
                                server_s=srv[r.layer],
                                payload=st.payload,
                            ),
                            "top1": float(r.top1),
                            "n_frames": st.n_frames,
                            "fps": float(fps) if fps else np.nan,
                            "seed": int(seed),
                        }
                    )
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_table(df, out_path)
    return df


__all__ = ["COLUMNS", "endpoints", "run_simulation"]
