"""Command of the recommendation stage: the QoS choice over the latency table."""

from __future__ import annotations

import click

from isplit.cli.options import EXISTING, JSON, PATH


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
@click.option(
    "--outcomes",
    "outcomes_path",
    type=EXISTING,
    default=None,
    help="the evaluation's outcomes.parquet: per-image validation predictions for the tie test",
)
@click.option(
    "--camera-predictions",
    "camera_predictions_path",
    type=EXISTING,
    default=None,
    help="the camera stage's per-image predictions",
)
def recommend(
    latency_path,
    splits_path,
    finetune_metrics,
    cfg,
    metric,
    out_json,
    camera_path,
    outcomes_path,
    camera_predictions_path,
):
    """The candidate meeting the QoS constraints per network profile, protocol and loss level,
    chosen on validation accuracy → OUT (JSON)."""
    from isplit.recommend import recommend as rec
    from isplit.recommend import recommend_text

    result = rec.run(
        latency_path=latency_path,
        splits_path=splits_path,
        finetune_metrics_path=finetune_metrics,
        cfg=cfg,
        out_json=out_json,
        metric=metric,
        camera_path=camera_path,
        outcomes_path=outcomes_path,
        camera_predictions_path=camera_predictions_path,
    )
    click.echo(recommend_text.markdown_table(result))
