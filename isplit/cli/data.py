"""Commands of the data stage: download and prepare a dataset."""

from __future__ import annotations

import json

import click

from isplit.cli.options import EXISTING, JSON, PATH


@click.command("download-dataset")
@click.option("--config", "cfg", type=JSON, required=True, help="the dataset's config (JSON)")
@click.option("--dest", type=PATH, required=True)
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.option("--retries", type=int, default=10, show_default=True)
@click.option("--retry-budget", type=float, default=300.0, show_default=True, help="seconds")
def download_dataset(cfg, dest, timeout, retries, retry_budget):
    """Download one dataset's archive to DEST (resumable, sha256-verified; the hash is
    recorded in DEST.sha256)."""
    from isplit.data import sources

    sources.download(cfg, dest, timeout=timeout, retries=retries, retry_budget_s=retry_budget)


@click.command("prepare-dataset")
@click.option("--config", "cfg", type=JSON, required=True, help="the dataset's config (JSON)")
@click.option("--archive", type=EXISTING, default=None)
@click.option("--limits", type=JSON, default=None, help="the downloads section (archive limits)")
@click.option("--out", type=PATH, required=True)
def prepare_dataset(cfg, archive, limits, out):
    """Unpack, check and split a dataset into OUT (manifest.parquet, classes.json, images)."""
    from isplit.data import sources

    report = sources.prepare(cfg, archive, out, limits=limits)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "skipped"}, indent=1))
