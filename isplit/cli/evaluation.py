"""Commands of the evaluation stage: gather the retrained splits, write the summary."""

from __future__ import annotations

import json

import click

from isplit.cli.options import EXISTING, PATH


@click.command("gather-splits")
@click.option("--candidates", "candidates_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--curve", "curve_path", type=EXISTING, default=None, help="for per-class CUI")
@click.option("--probe", "probe_path", type=EXISTING, default=None, help="probe predictors table")
@click.option(
    "--probe-outcomes",
    "probe_outcomes_path",
    type=EXISTING,
    default=None,
    help="the probe predictors' per-image validation outcomes",
)
@click.option("--seeds", default=None, help="the retraining seeds every job must hold, e.g. 0,1,2")
@click.option("--metric", type=click.Choice(["top1", "balanced_accuracy"]), default="top1")
@click.option("--bootstrap", "n_boot", type=int, default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--splits-out", type=PATH, required=True)
@click.option("--quality-out", type=PATH, required=True)
@click.option("--outcomes-out", type=PATH, default=None, help="validation predictions, per option")
@click.argument("metrics", nargs=-1, type=EXISTING)
def gather_splits(
    candidates_path,
    finetune_metrics,
    curve_path,
    probe_path,
    probe_outcomes_path,
    seeds,
    metric,
    n_boot,
    seed,
    splits_out,
    quality_out,
    outcomes_out,
    metrics,
):
    """Gather the retraining jobs' METRICS (each beside its predictions.parquet) →
    splits.parquet and quality.json (predictors of accuracy, with intervals)."""
    from isplit.evaluation import quality

    q = quality.run(
        candidates_path=candidates_path,
        metrics_paths=list(metrics),
        finetune_metrics=finetune_metrics,
        curve_path=curve_path,
        probe_path=probe_path,
        probe_outcomes_path=probe_outcomes_path,
        seeds=None if seeds is None else [int(x) for x in seeds.split(",") if x.strip()],
        metric=metric,
        n_boot=n_boot,
        seed=seed,
        splits_out=splits_out,
        quality_out=quality_out,
        outcomes_out=outcomes_out,
    )
    click.echo(json.dumps({k: v["rho"] for k, v in q["predictors"].items()}))


@click.command()
@click.option("--experiment", required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, default=None)
@click.option("--recommendation", "recommendation_path", type=EXISTING, default=None)
@click.option("--baseline", "baseline_path", type=EXISTING, default=None)
@click.option("--camera", "camera_path", type=EXISTING, default=None)
@click.option("--out", "out_path", type=PATH, required=True)
@click.argument("deploy", nargs=-1)
def summary(
    experiment,
    splits_path,
    quality_path,
    finetune_metrics,
    recommendation_path,
    baseline_path,
    camera_path,
    out_path,
    deploy,
):
    """summary.md: evaluated points, CUI-vs-accuracy quality, recommended splits."""
    from isplit.report import summary as summary_mod

    summary_mod.write_summary(
        exp=experiment,
        splits_path=splits_path,
        quality_path=quality_path,
        finetune_metrics=finetune_metrics,
        recommendation_path=recommendation_path,
        baseline_path=baseline_path,
        camera_path=camera_path,
        out_path=out_path,
        deploy=list(deploy),
    )


@click.command("simple-baseline")
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--size", type=int, default=32, show_default=True, help="pixels per side")
@click.option("--eval-subset", type=int, default=None, help="as fine-tuning scored (finetune)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--finetuned-predictions",
    type=EXISTING,
    default=None,
    help="the fine-tuned model's predictions.parquet: adds the paired difference",
)
@click.option("--out", "out_path", type=PATH, required=True)
def simple_baseline(dataset_dir, size, eval_subset, seed, finetuned_predictions, out_path):
    """Logistic regression on downsampled grey pixels (penalty chosen on validation) → OUT."""
    from isplit.evaluation import baseline

    r = baseline.run(
        dataset_dir=dataset_dir,
        out_path=out_path,
        size=size,
        eval_subset=eval_subset,
        seed=seed,
        finetuned_predictions=finetuned_predictions,
    )
    click.echo(json.dumps(r["test"]))
