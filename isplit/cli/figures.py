"""Commands that draw the figures (PNG + PDF each)."""

from __future__ import annotations

import click

from isplit.cli.options import EXISTING, PATH


@click.command("plot-cui")
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates-all", "candidates_path", type=EXISTING, required=True)
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_cui(curve_path, candidates_path, out_dir):
    """The CUI curve with candidates and the CDE size curve; per-class curves."""
    from isplit.figures import cui

    for path in cui.cui_figures(
        curve_path=curve_path, candidates_path=candidates_path, out_dir=out_dir
    ):
        click.echo(str(path))


@click.command("plot-splits")
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates-all", "candidates_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--camera", "camera_path", type=EXISTING, default=None, help="camera.parquet")
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_splits(splits_path, curve_path, candidates_path, quality_path, camera_path, out_dir):
    """Accuracy per split, CUI vs accuracy, accuracy vs bytes, per-class accuracy figures."""
    from isplit.figures import splits

    for path in splits.split_figures(
        splits_path=splits_path,
        curve_path=curve_path,
        candidates_path=candidates_path,
        quality_path=quality_path,
        out_dir=out_dir,
        camera_path=camera_path,
    ):
        click.echo(str(path))


@click.command("plot-latency")
@click.option("--latency", "latency_path", type=EXISTING, required=True)
@click.option("--recommendation", "recommendation_path", type=EXISTING, required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_latency(latency_path, recommendation_path, splits_path, out_dir):
    """p95 latency vs accuracy per network profile, with the front and the chosen split."""
    from isplit.figures import latency

    for path in latency.latency_figure(
        latency_path=latency_path,
        recommendation_path=recommendation_path,
        splits_path=splits_path,
        out_dir=out_dir,
    ):
        click.echo(str(path))
