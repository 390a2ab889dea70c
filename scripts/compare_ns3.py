#!/usr/bin/env python
"""Hold the builtin simulator against ns-3 on the same links: p50 and p95 of the frame latency,
and UDP frame loss, for the wired network profiles (and the Wi-Fi ones over ns-3's 802.11 MAC).

Both simulators get the same link, loss rate, frames and packetisation (ns-3's: segments of
``min(1448, MTU − 52)`` bytes with a 32-byte TCP header, a 2-byte PPP header on the wire);
closed loop, no compute. Needs ``pip install 'isplit[ns3]'``. Prints a markdown table and writes
it with the numbers to ``--out`` (``ns3_agreement.{md,csv}``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isplit.latency import netsim, ns3sim, profiles  # noqa: E402


def framing(proto: str, mtu: int) -> dict:
    seg = min(1448, mtu - 20 - 32)
    if proto == "tcp":
        return {"payload": seg, "app_header": 0, "transport_header": 32, "link_header": 2}
    return {"payload": seg, "app_header": ns3sim.UDP_TAG, "transport_header": 8, "link_header": 2}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "results/validation/latency"))
    p.add_argument("--profiles", default="sei,lte,ieee802154,wifi-n")
    p.add_argument("--losses", default="0,0.01,0.05")
    p.add_argument("--frame-bytes", default="1000,30000")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = []
    for name in args.profiles.split(","):
        prof = profiles.PROFILES[name]
        for loss in map(float, args.losses.split(",")):
            link = prof.link(loss)
            for proto in ("tcp", "udp"):
                for nbytes in map(int, args.frame_bytes.split(",")):
                    fr = framing(proto, prof.mtu)
                    kw = {"n_frames": args.frames, "seed": args.seed}
                    medium = ns3sim.medium_of(name)
                    ours = netsim.simulate(nbytes, link, proto, **kw, **fr)
                    theirs = ns3sim.simulate(
                        nbytes, link, proto, payload=fr["payload"], medium=medium, **kw
                    )
                    row = {
                        "profile": name,
                        "medium": medium,
                        "loss": loss,
                        "protocol": proto,
                        "frame_bytes": nbytes,
                        "packets": ours.packets_per_frame,
                    }
                    for tag, r in (("builtin", ours), ("ns3", theirs)):
                        lat = r.latency_s
                        row[f"{tag}_p50"] = float(np.median(lat)) if lat.size else np.nan
                        row[f"{tag}_p95"] = float(np.percentile(lat, 95)) if lat.size else np.nan
                        row[f"{tag}_frame_loss"] = r.frame_loss_sim
                    for q in ("p50", "p95"):
                        row[f"ratio_{q}"] = row[f"builtin_{q}"] / row[f"ns3_{q}"]
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    lines = [
        "| profile (ns-3 medium) | loss | protocol | frame | packets | p50 builtin / ns-3 (ms) "
        "| p95 builtin / ns-3 (ms) | UDP frame loss builtin / ns-3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl = ""
        if r["protocol"] == "udp":
            fl = f"{r['builtin_frame_loss'] * 100:.1f} % / {r['ns3_frame_loss'] * 100:.1f} %"
        lines.append(
            f"| {r['profile']} ({r['medium']}) | {r['loss'] * 100:g} % | {r['protocol'].upper()} "
            f"| {r['frame_bytes']:,} B | {r['packets']} | {r['builtin_p50'] * 1e3:.2f} / "
            f"{r['ns3_p50'] * 1e3:.2f} | {r['builtin_p95'] * 1e3:.2f} / {r['ns3_p95'] * 1e3:.2f}"
            f" | {fl} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "ns3_agreement.csv", index=False)
    (out / "ns3_agreement.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
