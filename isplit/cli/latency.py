"""Commands of the latency stage: compute profiles, the latency table, one link condition."""

from __future__ import annotations

from pathlib import Path

import click

from isplit.cli.options import EXISTING, JSON, PATH


@click.command()
@click.option(
    "--model",
    "model_path",
    type=EXISTING,
    required=True,
    help="the fine-tuned model.pt (timed whole: LC/RC)",
)
@click.option(
    "--out",
    "out_path",
    type=PATH,
    required=True,
    help=".parquet or .csv: the compute table the workflow imports",
)
@click.option("--repeats", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.argument("splits", nargs=-1, type=EXISTING)
def profile(model_path, out_path, repeats, warmup, threads, splits):
    """Time head/encoder/decoder/tail of each split model (SPLITS: .../<layer>/model.pt) at
    batch 1 on this machine. Run it on the real device and point the config's
    latency.device.table at the output."""
    from isplit.latency import profiling

    df = profiling.run(
        model_path=model_path,
        # .../splits/<layer>/model.pt, as retrain_split writes it
        split_paths={Path(p).parent.name: p for p in splits},
        out_path=out_path,
        repeats=repeats,
        warmup=warmup,
        threads=threads,
    )
    click.echo(df.to_string(index=False))


@click.command("simulate-latency")
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option(
    "--compute",
    "compute_path",
    type=EXISTING,
    default=None,
    help="this machine's compute table; only for a side timed with scale/table",
)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--input-size", type=int, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the latency section (JSON)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--metric", type=click.Choice(["top1", "balanced_accuracy"]), default="top1")
@click.option("--camera", "camera_path", type=EXISTING, default=None, help="camera.parquet")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out", "out_path", type=PATH, required=True)
def simulate_latency(
    splits_path,
    compute_path,
    finetune_metrics,
    input_size,
    cfg,
    seed,
    metric,
    camera_path,
    workers,
    out_path,
):
    """Packet-level latency of every candidate (splits, LC, RC) under the network profiles,
    with named device/server compute profiles or timings → OUT."""
    import json

    import pandas as pd

    from isplit.latency import simulate
    from isplit.recommend.candidates import endpoints

    camera = pd.read_parquet(camera_path) if camera_path else None
    cands = endpoints(
        pd.read_parquet(splits_path),
        json.loads(Path(finetune_metrics).read_text()),
        input_size=input_size,
        metric=metric,
        camera=camera,
    )
    df = simulate.run_simulation(
        candidates=cands,
        compute_path=compute_path,
        cfg=cfg,
        out_path=out_path,
        seed=seed,
        workers=workers,
    )
    click.echo(f"{len(df)} rows -> {out_path}")


@click.command("simulate-link")
@click.option(
    "--backend", type=click.Choice(["builtin", "ns3"]), default="builtin", show_default=True
)
@click.option(
    "--profile", required=True, help="a network profile: sei, wifi-n, wifi-ac, lte, ieee802154"
)
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), required=True)
@click.option("--loss", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--frame-bytes", type=click.IntRange(min=0), required=True)
@click.option("--frames", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--tcp",
    type=click.Choice(["linux", "rfc6675", "sei"]),
    default=None,
    help="TCP behaviour [builtin: linux; ns3: rfc6675, the only one it has]",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="camera rate [closed loop]",
)
@click.option("--answer-bytes", type=click.IntRange(min=0), default=8, show_default=True)
@click.option(
    "--cross-traffic", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True
)
@click.option(
    "--queue",
    type=click.IntRange(min=1),
    default=None,
    help="uplink drop-tail queue, packets [unbounded]",
)
@click.option(
    "--contenders",
    type=click.IntRange(min=0),
    default=None,
    help="saturating Wi-Fi stations [profile's]",
)
@click.option("--n-boot", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--out", "out_path", type=PATH, required=True, help=".csv: one row per frame")
def simulate_link(
    backend, profile, protocol, loss, frame_bytes, frames, seed, tcp, fps, answer_bytes,
    cross_traffic, queue, contenders, n_boot, out_path
):  # fmt: skip
    """One link condition in either backend → OUT (frame, capture_s, latency_s, delivered,
    clean); prints p50/p95 with intervals and the frame loss."""
    from isplit.io.files import write_table
    from isplit.latency import condition

    extra = {"cross_traffic": cross_traffic, "queue": queue}
    if contenders is not None:
        extra["contenders"] = contenders
    link = condition.link_of(profile, loss, **extra)
    stream = condition.stream_of(
        frame_bytes, protocol, frames, backend, tcp, fps=fps, answer_bytes=answer_bytes
    )
    res = condition.run(backend, link, stream, seed=seed, n_boot=n_boot)
    write_table(condition.frames(res), out_path)
    click.echo(condition.summary(res))
