#!/usr/bin/env python
"""Hold the builtin simulator against ns-3 on the same links: p50 and p95 of the frame latency,
and the frame loss, for named network profiles (ns-3's MAC for the wireless ones) and plain
wires of a given rate and delay.

Both backends get the same :class:`isplit.latency.link.Link` and
:class:`isplit.latency.link.Stream` (:mod:`isplit.latency.condition`): the same packetisation,
loss level and seeds; closed loop, no compute, the 8-byte answer simulated. The builtin model
runs the TCP behaviour ``--tcp`` (default ``rfc6675``, the one ns-3 has: two implementations of
one algorithm); ``linux`` shows what RACK and the tail loss probe change. Each condition pools
the frames of every seed and takes the stratified percentiles with the exact clean weight
(plain ones where the medium has none). Needs ``pip install 'isplit[ns3]'``. Prints a markdown
table and writes it with the numbers to ``--out`` (``ns3_agreement.{md,csv}``).

    .venv/bin/python -m scripts.compare_ns3 --frames 200
    .venv/bin/python -m scripts.compare_ns3 --profiles '' --wires 2:20,20:20 \\
        --losses 0,0.005,0.03 --frame-bytes 3000,60000 --protocols tcp --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from isplit.latency import condition
from isplit.latency.link import Link

ROOT = Path(__file__).resolve().parents[1]


def csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def wire(text: str) -> tuple[str, float, float]:
    """``RATE:DELAY`` in Mb/s and ms → (name, bit/s, s)."""
    rate, delay = text.split(":")
    return f"wire {rate} Mb/s {delay} ms", float(rate) * 1e6, float(delay) * 1e-3


def links(profiles: list[str], wires: list[str], loss: float, contenders: int | None):
    """(name, Link) of every named profile and every wire at ``loss``."""
    extra = {} if contenders is None else {"contenders": contenders}
    for name in profiles:
        yield name, condition.link_of(name, loss, **extra)
    for text in wires:
        name, rate, delay = wire(text)
        yield name, Link(rate, delay, loss)


def compare(link: Link, frame_bytes: int, protocol: str, *, frames: int, seeds, tcp: str):
    """One condition in both backends: pooled p50/p95 (s), frames delivered and the simulated
    frame loss of each."""
    row = {}
    for backend in condition.BACKENDS:
        behaviour = tcp if backend == "builtin" else None
        stream = condition.stream_of(frame_bytes, protocol, frames, backend, behaviour)
        runs = [condition.run(backend, link, stream, seed=s, n_boot=0) for s in seeds]
        pct = condition.pooled(runs, n_boot=0)
        lost = sum(int(r.lost.sum()) for r in runs)
        row.update(
            {
                f"{backend}_p50": pct.p50,
                f"{backend}_p95": pct.p95,
                f"{backend}_n": pct.n,
                f"{backend}_frame_loss": lost / (frames * len(seeds)),
            }
        )
        row["packets"] = runs[0].packets_per_frame
    for q in ("p50", "p95"):
        row[f"ratio_{q}"] = row[f"builtin_{q}"] / row[f"ns3_{q}"]
    return row


def markdown(df: pd.DataFrame, tcp: str) -> str:
    lines = [
        f"| link | loss | protocol | frame | packets | n per backend | p50 builtin ({tcp}) / ns-3 "
        "(ms) | p95 builtin / ns-3 (ms) | frame loss builtin / ns-3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.to_dict("records"):
        lines.append(
            f"| {r['link']} | {r['loss'] * 100:g} % | {r['protocol'].upper()} "
            f"| {r['frame_bytes']:,} B | {r['packets']} | {r['builtin_n']} / {r['ns3_n']} "
            f"| {r['builtin_p50'] * 1e3:.2f} / {r['ns3_p50'] * 1e3:.2f} ({r['ratio_p50']:.2f}×) "
            f"| {r['builtin_p95'] * 1e3:.2f} / {r['ns3_p95'] * 1e3:.2f} ({r['ratio_p95']:.2f}×) "
            f"| {r['builtin_frame_loss'] * 100:.1f} % / {r['ns3_frame_loss'] * 100:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "results/validation/latency"))
    p.add_argument("--profiles", type=csv(str), default="sei,lte,ieee802154,wifi-n")
    p.add_argument("--wires", type=csv(str), default="", help="RATE:DELAY in Mb/s:ms, e.g. 2:20")
    p.add_argument("--contenders", type=int, default=None, help="Wi-Fi stations [profile's]")
    p.add_argument("--losses", type=csv(float), default="0,0.01,0.05")
    p.add_argument("--protocols", type=csv(str), default="tcp,udp")
    p.add_argument("--frame-bytes", type=csv(int), default="1000,30000")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--seeds", type=csv(int), default="0")
    p.add_argument("--tcp", choices=["rfc6675", "linux", "sei"], default="rfc6675")
    args = p.parse_args(argv)
    if not args.profiles and not args.wires:
        p.error("no link: give --profiles or --wires")
    for text in args.wires:
        if not text.count(":") == 1:
            p.error(f"--wires: {text!r} is not RATE:DELAY (Mb/s:ms)")
    rows = []
    for loss in args.losses:
        for name, link in links(args.profiles, args.wires, loss, args.contenders):
            for proto in args.protocols:
                for nbytes in args.frame_bytes:
                    row = {"link": name, "medium": link.medium, "loss": loss}
                    row.update({"protocol": proto, "frame_bytes": nbytes})
                    row["contenders"] = link.contenders
                    row.update(
                        compare(
                            link, nbytes, proto, frames=args.frames, seeds=args.seeds, tcp=args.tcp
                        )
                    )
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    md = markdown(df, args.tcp)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "ns3_agreement.csv", index=False)
    (out / "ns3_agreement.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
