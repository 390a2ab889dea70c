"""Real TCP and UDP under random loss against the simulator: measurement, simulation, comparison.

One *condition* is a protocol, a frame size and a loss level. For each, a fresh
:func:`tools.lossy_bridge.lossy_link` test bed is built (tbf at ``rate_bps`` on both ends, a
bridge delaying every frame by ``delay_s`` and dropping data frames device → server with
probability ``loss``), :mod:`tools.frame_stream` sends ``frames`` frames at ``fps`` from the
device namespace to the server namespace, and the per-frame latencies (server completion − due
time) are held against :func:`isplit.latency.netsim.simulate` on the same link: the same rate,
the bridge's delay as measured at loss 0 (:func:`calibrate`), the same loss rate, Linux's packet
sizes (TCP: 1448-byte segments with a 32-byte header, 8 bytes of frame header in the stream;
UDP: 1460 bytes + a 12-byte header per datagram), ``tcp="linux"``, the same ``fps``.

Both sides are summarised the same way (:mod:`isplit.latency.stats`): frames are classed clean
or lossy — measured ones from the bridge's drop log (a first transmission of one of the frame's
packets dropped), simulated ones by the simulator — and p50/p95 come from the mixture with the
exact clean weight ``(1 − p)^k``, with bootstrap intervals; the plain sample percentiles are
kept beside them. UDP frame loss is compared with its exact value ``1 − (1 − p)^k``, whose 3σ
binomial interval over the measured frames is the criterion.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.latency import netsim, stats
from isplit.latency.link import Link, Stream, TcpOptions, serialisation_s
from tools.frame_stream import TCP_HEADER, UDP_DATA, UDP_HEADER
from tools.lossy_bridge import lossy_link
from tools.relay import wait_for_line

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = {"p50": 0.15, "p95": 0.25, "udp_sigma": 3.0}
LINUX_TCP = {"payload": 1448, "app_header": 0, "transport_header": 32}
LINUX_UDP = {"payload": UDP_DATA, "app_header": UDP_HEADER.size, "transport_header": 8}


def sim_stream(proto: str, frame_bytes: int, **kw) -> Stream:
    """A frame_stream frame as the simulator sends it: Linux's packetisation, the real TCP
    (``tcp: linux``), and done when the server has it (the measured time; the 8-byte answer
    that carries the ACK back is an ACK at the frame's end in the simulator)."""
    if proto == "tcp":
        fr, nbytes = LINUX_TCP, frame_bytes + TCP_HEADER.size
    else:
        fr, nbytes = LINUX_UDP, frame_bytes
    return Stream(nbytes, proto, answer_bytes=0, tcp=TcpOptions("linux"), **fr, **kw)


def measure(cond: dict, *, rate_bps, delay_s, fps, seed, work: Path) -> tuple[pd.DataFrame, dict]:
    """Run one condition on a fresh test bed: per frame ``due``, ``done`` (NaN = lost) and
    ``clean`` (no first transmission of its packets dropped); and the bridge's counts."""
    proto, nbytes, loss = cond["proto"], cond["frame_bytes"], cond["loss"]
    name = f"{proto}-{nbytes}-{loss:g}"
    py = [sys.executable, "-m", "tools.frame_stream"]
    with lossy_link(rate_bps, loss=loss, delay_s=delay_s, seed=seed, work=work) as link:
        slog, clog = work / f"{name}.server.csv", work / f"{name}.client.csv"
        out = work / f"{name}.server.log"
        with open(out, "w") as f:
            server = subprocess.Popen(
                [
                    *link.prefix("server"),
                    *py,
                    "server",
                    "--proto",
                    proto,
                    "--log",
                    str(slog),
                    "--idle-s",
                    "3",
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:
            port = int(wait_for_line(server, out, "listening on", 60).rsplit(":", 1)[1])
            cmd = [
                *link.prefix("device"),
                *py,
                "client",
                "--proto",
                proto,
                "--host",
                link.ip_server,
                "--port",
                str(port),
                "--frame-bytes",
                str(nbytes),
                "--frames",
                str(cond["frames"]),
                "--fps",
                str(fps),
                "--log",
                str(clog),
            ]
            r = subprocess.run(
                cmd, capture_output=True, text=True, cwd=ROOT, timeout=60 + 3 * cond["frames"] / fps
            )
            if r.returncode != 0:
                raise RuntimeError(f"client failed for {name}:\n{r.stderr[-2000:]}")
            cc = [x.split()[-1] for x in r.stdout.splitlines() if "congestion control" in x]
            server.wait(timeout=120)
            counters = kernel_counters(link.prefix("device")[:4])
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(30)
    bridge = link.stats()
    sent = pd.read_csv(clog)
    done = pd.read_csv(slog).set_index("frame_id")["t_done"]
    df = pd.DataFrame({"frame_id": sent["frame_id"], "due": sent["t_due"]})
    df["done"] = df["frame_id"].map(done)
    per_frame = nbytes + (TCP_HEADER.size if proto == "tcp" else 0)
    hit = set()
    for d_proto, _, key, length, first in bridge["drops"]:
        if d_proto == proto and (first or proto == "udp"):
            hit.add(int(key) // per_frame if proto == "tcp" else int(key))
            if proto == "tcp" and length:  # a drop spanning into the next frame hits it too
                hit.add((int(key) + int(length) - 1) // per_frame)
    df["clean"] = ~df["frame_id"].isin(hit)
    info = {k: v for k, v in bridge.items() if k != "drops"}
    info["bridge_log"] = link.stats_path.name
    info["congestion_control"] = cc[0] if cc else ""
    info.update(counters)
    return df, info


NSTAT = {  # the device namespace's TCP counters (nstat names) held against the simulator's
    "TcpRetransSegs": "retransmissions",
    "TcpExtTCPTimeouts": "rto",
    "TcpExtTCPLossProbes": "tlp",
    "TcpExtTCPSackRecovery": "recoveries",
}


def kernel_counters(prefix: list[str]) -> dict:
    """The device side's TCP event counts (a fresh namespace starts them at 0)."""
    r = subprocess.run([*prefix, "nstat", "-asz"], capture_output=True, text=True, timeout=30)
    out = dict.fromkeys((f"kernel_{v}" for v in NSTAT.values()), np.nan)
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in NSTAT:
            out[f"kernel_{NSTAT[parts[0]]}"] = int(parts[1])
    return out


def summarise(latency, clean, p_clean: float, seed: int = 0, runs=None) -> dict:
    """Stratified p50/p95 with intervals, and the plain sample percentiles. ``runs``: each
    frame's run where frames of several independent runs are pooled (the intervals then
    resample runs, :func:`isplit.latency.stats.stratified_runs`)."""
    lat = np.asarray(latency, float)
    weights = {1: p_clean, 0: 1 - p_clean}
    if runs is not None and len(np.unique(runs)) > 1:
        runs = np.asarray(runs)
        ids = np.unique(runs)
        pct = stats.stratified_runs(
            [lat[runs == i] for i in ids],
            [np.asarray(clean, int)[runs == i] for i in ids],
            weights,
            seed=seed,
        )
    else:
        pct = stats.stratified(lat, np.asarray(clean, int), weights, seed=seed)
    plain = np.percentile(lat, [50, 95]) if lat.size else [np.nan, np.nan]
    lossy = lat[~np.asarray(clean, bool)]
    return {
        "p50": pct.p50,
        "p50_lo": pct.p50_lo,
        "p50_hi": pct.p50_hi,
        "p95": pct.p95,
        "p95_lo": pct.p95_lo,
        "p95_hi": pct.p95_hi,
        "plain_p50": float(plain[0]),
        "plain_p95": float(plain[1]),
        # the recovery itself: the median latency of frames that lost a packet
        "lossy_p50": float(np.median(lossy)) if lossy.size else np.nan,
        "n_lossy": int(lossy.size),
        "n": pct.n,
    }


def simulate(cond: dict, *, rate_bps, delay_s, fps, n_frames: int, seed: int) -> dict:
    """Runs as long as the measured one (``cond["frames"]`` frames from a fresh connection),
    repeated with seeds ``seed, seed + 1, …`` until ``n_frames`` frames are pooled: a stream
    the link cannot sustain has no stationary latency, only one per run length."""
    link = Link(rate_bps, delay_s, cond["loss"])
    stream = sim_stream(cond["proto"], cond["frame_bytes"], n_frames=cond["frames"], fps=fps)
    runs = [
        netsim.simulate(link, stream, seed=seed + k, n_boot=10)
        for k in range(max(1, math.ceil(n_frames / cond["frames"])))
    ]
    lat = np.concatenate([r.latency_s for r in runs])
    clean = np.concatenate([r.clean[~r.lost] for r in runs])
    run_of = np.concatenate([np.full(len(x.latency_s), k) for k, x in enumerate(runs)])
    r = runs[0]
    out = summarise(lat, clean, r.p_clean, seed, run_of)
    out.update(frame_loss=r.frame_loss, packets=r.packets_per_frame, p_clean=r.p_clean)
    out["runs"] = len(runs)
    # event counts per run, to hold against the kernel's
    out.update({k: float(np.mean([x.counts[k] for x in runs])) for k in r.counts})
    return out


def calibrate(df: pd.DataFrame, proto: str, frame_bytes: int, rate_bps: float) -> float:
    """The link's one-way delay as the simulator must see it: the measured median latency of a
    loss-free run minus the frame's serialisation (the bridge's forwarding time included)."""
    lat = (df["done"] - df["due"]).dropna()
    ser = serialisation_s(Link(rate_bps, 0.0), sim_stream(proto, frame_bytes))
    return float(np.median(lat) - ser)


def compare(cond: dict, meas: pd.DataFrame, sim: dict, bridge: dict, seed: int) -> dict:
    """One row of the table; ``meas`` may pool several runs (its ``run`` column)."""
    lat = (meas["done"] - meas["due"]).to_numpy()
    got = np.isfinite(lat)
    runs = meas["run"].to_numpy() if "run" in meas else np.zeros(len(meas), int)
    m = summarise(lat[got], meas["clean"].to_numpy()[got], sim["p_clean"], seed, runs[got])
    # the spread of one run's plain p95 from one loss pattern to the next
    run_p95 = [
        float(np.percentile(x, 95)) if x.size else np.nan
        for x in (lat[got & (runs == i)] for i in np.unique(runs))
    ]
    n = len(meas)
    row = {
        **cond,
        "packets": sim["packets"],
        "n_measured": n,
        "runs_measured": len(run_p95),
        "meas_run_p95_min": min(run_p95),
        "meas_run_p95_max": max(run_p95),
        "bridge_data_frames": bridge["data_a_to_b"],
        "bridge_dropped": bridge["dropped"],
        "bridge_loss": bridge["dropped"] / max(bridge["data_a_to_b"], 1),
        "kernel_drops": bridge["kernel_drops"],
        "congestion_control": bridge["congestion_control"],
        "bridge_log": bridge["bridge_log"],
        **{k: bridge.get(k) for k in bridge if k.startswith("kernel_")},
    }
    row.update({f"meas_{k}": v for k, v in m.items()})
    row.update({f"sim_{k}": v for k, v in sim.items()})
    for q in ("p50", "p95"):
        row[f"err_{q}"] = (sim[q] - m[q]) / m[q]
        row[f"ok_{q}"] = bool(abs(row[f"err_{q}"]) <= CRITERIA[q])
    if cond["proto"] == "udp":
        q = sim["frame_loss"]
        row["meas_frame_loss"] = float((~got).mean())
        row["frame_loss_sigma"] = math.sqrt(q * (1 - q) / n)
        dev = abs(row["meas_frame_loss"] - q)
        row["ok_frame_loss"] = bool(dev <= CRITERIA["udp_sigma"] * row["frame_loss_sigma"] + 1e-12)
    return row


def pooled_runs(parts: list[tuple[pd.DataFrame, dict]]) -> tuple[pd.DataFrame, dict]:
    """Several runs of one condition as one: frames stacked (with their ``run``), the bridge's
    counts summed, the kernel's counters per run (their mean, as the simulator's are)."""
    df = pd.concat([d for d, _ in parts], ignore_index=True)
    infos = [i for _, i in parts]
    info = dict(infos[0])
    for k in ("data_a_to_b", "dropped", "kernel_drops"):
        info[k] = sum(i[k] for i in infos)
    for k in info:
        if k.startswith("kernel_") and k != "kernel_drops":
            info[k] = float(np.mean([i[k] for i in infos]))
    info["bridge_log"] = ",".join(i["bridge_log"] for i in infos)
    return df, info


def run(
    conds, *, rate_bps, delay_s, fps, seed, n_sim, work: Path, log=print, runs: int = 1
) -> tuple[list, float]:
    """Measure every condition (loss-0 ones first: they give the delay) ``runs`` times, each
    run on a fresh test bed with its own loss seed (``seed``, ``seed + 1``, …), and compare."""
    work.mkdir(parents=True, exist_ok=True)
    measured = {}
    for cond in sorted(conds, key=lambda c: c["loss"]):
        parts = []
        for k in range(runs):
            where = work / f"run{k}" if runs > 1 else work
            where.mkdir(exist_ok=True)
            df, info = measure(
                cond, rate_bps=rate_bps, delay_s=delay_s, fps=fps, seed=seed + k, work=where
            )
            parts.append((df.assign(run=k), info))
            log(f"measured {cond} (run {k + 1} of {runs}): bridge {info}")
        measured[id(cond)] = pooled_runs(parts)
    ref = [c for c in conds if c["loss"] == 0 and c["proto"] == "udp"]
    ref = ref or [c for c in conds if c["loss"] == 0]
    eff_delay = delay_s
    if ref:
        c = min(ref, key=lambda c: c["frame_bytes"])
        eff_delay = calibrate(measured[id(c)][0], c["proto"], c["frame_bytes"], rate_bps)
    rows = []
    for cond in conds:
        sim = simulate(
            cond, rate_bps=rate_bps, delay_s=eff_delay, fps=fps, n_frames=n_sim, seed=seed
        )
        meas, bridge = measured[id(cond)]
        rows.append(compare(cond, meas, sim, bridge, seed))
        rows[-1]["sim_delay_s"] = eff_delay
    return rows, eff_delay


def _ms(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v * 1e3:.1f}"


def _run_range(r: dict) -> str:
    if r.get("runs_measured", 1) < 2:
        return ""
    return f"; one run: {_ms(r['meas_run_p95_min'])}–{_ms(r['meas_run_p95_max'])}"


def table_markdown(rows: list[dict]) -> str:
    head = (
        "| protocol | frame | packets | loss | n | p50 measured [95 % CI] | p50 simulated | err "
        "| p95 measured [95 % CI] | p95 simulated [95 % CI] | err | lossy frames' median "
        "measured / simulated | UDP frame loss measured / exact (3σ) | pass |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        fl = ""
        if r["proto"] == "udp":
            fl = (
                f"{r['meas_frame_loss'] * 100:.1f} % / {r['sim_frame_loss'] * 100:.1f} % "
                f"(± {3 * r['frame_loss_sigma'] * 100:.1f})"
            )
        ok = [r["ok_p50"], r["ok_p95"]] + ([r["ok_frame_loss"]] if r["proto"] == "udp" else [])
        verdict = (
            "yes"
            if all(ok)
            else "no: "
            + ", ".join(k for k, v in zip(("p50", "p95", "frame loss"), ok, strict=False) if not v)
        )
        n, runs = r["n_measured"], r.get("runs_measured", 1)
        n_text = f"{runs} × {n // runs}" if runs > 1 else f"{n}"
        lines.append(
            f"| {r['proto'].upper()} | {r['frame_bytes']:,} B | {r['packets']} | "
            f"{r['loss'] * 100:g} % | {n_text} | {_ms(r['meas_p50'])} "
            f"[{_ms(r['meas_p50_lo'])}, {_ms(r['meas_p50_hi'])}] | {_ms(r['sim_p50'])} | "
            f"{r['err_p50']:+.0%} | {_ms(r['meas_p95'])} [{_ms(r['meas_p95_lo'])}, "
            f"{_ms(r['meas_p95_hi'])}]{_run_range(r)} | {_ms(r['sim_p95'])} "
            f"[{_ms(r['sim_p95_lo'])}, {_ms(r['sim_p95_hi'])}] | {r['err_p95']:+.0%} | "
            f"{_ms(r['meas_lossy_p50'])} (n = {r['meas_n_lossy']}) / {_ms(r['sim_lossy_p50'])} "
            f"| {fl} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``scripts/validate_latency.py --lossy``: every loss level × protocol × frame size."""
    import argparse
    import json

    def floats(v):
        return [float(x) for x in v.split(",") if x]

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "results/validation/latency"))
    p.add_argument("--losses", type=floats, default=[0.005, 0.01, 0.02, 0.05])
    p.add_argument("--frame-bytes", type=floats, default=[1000, 30000])
    p.add_argument("--protocols", default="tcp,udp")
    p.add_argument("--frames", type=int, default=300, help="measured frames per condition")
    p.add_argument("--rate-mbps", type=float, default=10.0)
    p.add_argument("--delay-ms", type=float, default=10.0, help="bridge delay, each way")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--sim-frames", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--runs", type=int, default=1, help="measured runs per condition, each its own loss seed"
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    conds = [
        {"proto": proto, "frame_bytes": int(b), "loss": loss, "frames": args.frames}
        for loss in [0.0, *args.losses]
        for proto in args.protocols.split(",")
        for b in args.frame_bytes
    ]
    rows, eff = run(
        conds,
        rate_bps=args.rate_mbps * 1e6,
        delay_s=args.delay_ms / 1e3,
        fps=args.fps,
        seed=args.seed,
        n_sim=args.sim_frames,
        work=out / "lossy",
        runs=args.runs,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    md = table_markdown(rows)
    print(md)
    print(f"simulated one-way delay (calibrated at loss 0): {eff * 1e3:.2f} ms")
    pd.DataFrame(rows).to_csv(out / "lossy.csv", index=False)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "lossy.json").write_text(
        json.dumps(
            {"settings": settings, "criteria": CRITERIA, "sim_delay_s": eff, "rows": rows}, indent=2
        )
    )
    (out / "lossy.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
