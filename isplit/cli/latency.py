"""Commands of the latency stage: compute profiles, network simulation, the recommendation."""

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
    from isplit.latency import simulate

    df = simulate.run_simulation(
        splits_path=splits_path,
        compute_path=compute_path,
        finetune_metrics_path=finetune_metrics,
        input_size=input_size,
        cfg=cfg,
        out_path=out_path,
        seed=seed,
        metric=metric,
        camera_path=camera_path,
        workers=workers,
    )
    click.echo(f"{len(df)} rows -> {out_path}")


@click.command()
@click.option("--latency", "latency_path", type=EXISTING, required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the qos section (JSON)")
@click.option(
    "--metric",
    type=click.Choice(["top1", "balanced_accuracy"]),
    default="top1",
    show_default=True,
    help="the accuracy chosen on (validation) and reported (test)",
)
@click.option("--out", "out_json", type=PATH, required=True)
@click.option("--camera", "camera_path", type=EXISTING, default=None, help="camera.parquet")
def recommend(latency_path, splits_path, finetune_metrics, cfg, metric, out_json, camera_path):
    """The candidate meeting the QoS constraints per network profile, protocol and loss level,
    chosen on validation accuracy → OUT (JSON)."""
    from isplit.latency import recommend as rec
    from isplit.latency import recommend_text

    result = rec.run(
        latency_path=latency_path,
        splits_path=splits_path,
        finetune_metrics_path=finetune_metrics,
        cfg=cfg,
        out_json=out_json,
        metric=metric,
        camera_path=camera_path,
    )
    click.echo(recommend_text.markdown_table(result))
