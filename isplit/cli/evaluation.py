"""Commands of the evaluation stage: gather the retrained splits, write the summary."""

from __future__ import annotations

import json

import click

from isplit.cli.options import EXISTING, PATH


@click.command("gather-splits")
@click.option("--candidates", "candidates_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--splits-out", type=PATH, required=True)
@click.option("--quality-out", type=PATH, required=True)
@click.argument("metrics", nargs=-1, type=EXISTING)
def gather_splits(candidates_path, finetune_metrics, splits_out, quality_out, metrics):
    """Gather per-split METRICS → splits.parquet, quality.json (CUI vs accuracy)."""
    from isplit.evaluation import quality

    q = quality.run(
        candidates_path=candidates_path,
        metrics_paths=list(metrics),
        finetune_metrics=finetune_metrics,
        splits_out=splits_out,
        quality_out=quality_out,
    )
    click.echo(json.dumps({k: q[k] for k in ("cui_vs_accuracy", "cde_size_vs_accuracy")}))


@click.command()
@click.option("--experiment", required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, default=None)
@click.option("--recommendation", "recommendation_path", type=EXISTING, default=None)
@click.option("--out", "out_path", type=PATH, required=True)
@click.argument("deploy", nargs=-1)
def summary(
    experiment, splits_path, quality_path, finetune_metrics, recommendation_path, out_path, deploy
):
    """summary.md: evaluated points, CUI-vs-accuracy quality, recommended splits."""
    from isplit.report import summary as summary_mod

    summary_mod.write_summary(
        exp=experiment,
        splits_path=splits_path,
        quality_path=quality_path,
        finetune_metrics=finetune_metrics,
        recommendation_path=recommendation_path,
        out_path=out_path,
        deploy=list(deploy),
    )
