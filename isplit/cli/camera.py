"""The command of the camera stage: the remote-computing baselines."""

from __future__ import annotations

import click

from isplit.cli.options import EXISTING, JSON, PATH


@click.command("camera-baselines")
@click.option("--model", "model_path", type=EXISTING, required=True, help="the fine-tuned model.pt")
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="the camera section")
@click.option("--eval-subset", type=int, default=None, help="as fine-tuning scored (finetune)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=PATH, required=True, help="camera.parquet")
@click.option("--predictions-out", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def camera_baselines(
    model_path, dataset_dir, cfg, eval_subset, seed, out_path, predictions_out, threads, device
):
    """Bytes and accuracy of the raw camera frame and of JPEG at several qualities → OUT."""
    from isplit.camera import frames
    from isplit.config import settings

    c = settings("camera", cfg)
    table = frames.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        out_path=out_path,
        predictions_path=predictions_out,
        qualities=list(c.jpeg_qualities),
        eval_subset=eval_subset,
        seed=seed,
        threads=threads,
        device=device,
    )
    click.echo(table.to_string(index=False))
