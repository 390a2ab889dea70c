"""Commands of the importance stage: Grad-CAM extraction, the CUI curve, the candidates."""

from __future__ import annotations

import json

import click

from isplit.cli.options import EXISTING, JSON, PATH


@click.command()
@click.option("--model", "model_path", type=EXISTING, required=True, help="the fine-tuned model.pt")
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--samples-out", type=PATH, required=True, help="samples.parquet")
@click.option("--channels-out", type=PATH, required=True, help="channels.parquet")
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def importance(model_path, dataset_dir, cfg, seed, samples_out, channels_out, threads, device):
    """Per-image, per-layer I-SPLIT importance → SAMPLES-OUT and CHANNELS-OUT (Parquet)."""
    from isplit.importance import stage

    summary = stage.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        samples_out=samples_out,
        channels_out=channels_out,
        cfg=cfg,
        seed=seed,
        threads=threads,
        device=device,
    )
    click.echo(json.dumps(summary))


@click.command("linear-probe")
@click.option("--model", "model_path", type=EXISTING, required=True, help="the fine-tuned model.pt")
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the importance section")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--code-bytes", type=int, default=1024, show_default=True, help="the code the probe sees"
)
@click.option("--out", "out_path", type=PATH, required=True, help="probe.parquet")
@click.option("--outcomes-out", "outcomes_path", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def linear_probe(
    model_path, dataset_dir, cfg, seed, code_bytes, out_path, outcomes_path, threads, device
):
    """Zero-retraining predictors at every probe point (linear probe, k-NN, LogME, a probe on
    the 8-bit code) → OUT, and their validation predictions → OUTCOMES-OUT."""
    from isplit.importance import probe

    probe.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        out_path=out_path,
        outcomes_path=outcomes_path,
        cfg=cfg,
        seed=seed,
        code_bytes=code_bytes,
        threads=threads,
        device=device,
    )


@click.command()
@click.option("--samples", "samples_path", type=EXISTING, required=True)
@click.option("--out", "out_path", type=PATH, required=True)
def cui(samples_path, out_path):
    """CUI curve (mean, std, log10 per layer; overall and per class) → OUT."""
    from isplit.importance import cui as cui_mod

    cui_mod.run(samples_path=samples_path, out_path=out_path)


@click.command("select-candidates")
@click.option("--curve", "curve_path", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--out", "out_tsv", type=PATH, required=True)
@click.option("--all-out", "all_tsv", type=PATH, required=True, help="every probe point")
def select_candidates(curve_path, cfg, out_tsv, all_tsv):
    """Candidate split points (I-SPLIT maxima, CDE size drops, per class) → OUT (TSV)."""
    from isplit.importance import candidates

    sel = candidates.run(curve_path=curve_path, cfg=cfg, out_tsv=out_tsv, all_tsv=all_tsv)
    click.echo(sel.to_string(index=False))
