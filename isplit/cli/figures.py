"""Commands that draw the figures. Each figure has its own option, given once per file to write
(``--cui-curve a.png --cui-curve a.pdf``); a path's suffix picks the format."""

from __future__ import annotations

import click

from isplit.cli.options import EXISTING


def _figure_paths(ctx, param, value):
    # every path of every figure is checked before any figure is drawn: no partial output
    from isplit.figures.style import figure_paths

    try:
        return figure_paths(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def figure_option(stem: str):
    """The option ``--<stem>`` (underscores as dashes): the files figure ``stem`` is drawn
    into, one or more, passed on to the drawing function as its keyword ``stem``."""
    return click.option(
        f"--{stem.replace('_', '-')}",
        stem,
        type=click.Path(dir_okay=False),
        multiple=True,
        required=True,
        callback=_figure_paths,
        help=f"a .png or .pdf file to draw {stem} into (repeat for both)",
    )


def _echo(paths) -> None:
    for path in paths:
        click.echo(str(path))


@click.command("plot-cui")
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates-all", "candidates_path", type=EXISTING, required=True)
@figure_option("cui_curve")
@figure_option("cui_per_class")
def plot_cui(curve_path, candidates_path, **figures):
    """The CUI curve with candidates and the CDE size curve; per-class curves."""
    from isplit.figures import cui

    _echo(cui.cui_figures(curve_path=curve_path, candidates_path=candidates_path, **figures))


@click.command("plot-splits")
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates-all", "candidates_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--camera", "camera_path", type=EXISTING, default=None, help="camera.parquet")
@figure_option("accuracy_by_split")
@figure_option("cui_vs_accuracy")
@figure_option("accuracy_vs_bytes")
@figure_option("per_class_accuracy")
@figure_option("predictors")
def plot_splits(splits_path, curve_path, candidates_path, quality_path, camera_path, **figures):
    """Accuracy per split, CUI vs accuracy, accuracy vs bytes, per-class accuracy and
    predictor figures."""
    from isplit.figures import splits

    paths = splits.split_figures(
        splits_path=splits_path,
        curve_path=curve_path,
        candidates_path=candidates_path,
        quality_path=quality_path,
        camera_path=camera_path,
        **figures,
    )
    _echo(paths)


@click.command("plot-latency")
@click.option("--latency", "latency_path", type=EXISTING, required=True)
@click.option("--recommendation", "recommendation_path", type=EXISTING, required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@figure_option("latency_accuracy")
def plot_latency(latency_path, recommendation_path, splits_path, **figures):
    """p95 latency vs accuracy per network profile, with the front and the chosen split."""
    from isplit.figures import latency

    paths = latency.latency_figure(
        latency_path=latency_path,
        recommendation_path=recommendation_path,
        splits_path=splits_path,
        **figures,
    )
    _echo(paths)
