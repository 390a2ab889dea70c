"""Commands of the training stages: fine-tuning and split retraining."""

from __future__ import annotations

import click

from isplit.cli.options import EXISTING, JSON, PATH


@click.command()
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--model", "model_name", required=True)
@click.option("--weights", default="none", help="a state-dict file, or 'none'")
@click.option("--input", "input_cfg", type=JSON, required=True)
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-out", type=PATH, required=True, help="the fine-tuned model.pt")
@click.option("--metrics-out", type=PATH, required=True)
@click.option("--history-out", type=PATH, required=True, help="one CSV row per epoch")
@click.option("--predictions-out", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def finetune(
    dataset_dir,
    model_name,
    weights,
    input_cfg,
    cfg,
    seed,
    model_out,
    metrics_out,
    history_out,
    predictions_out,
    threads,
    device,
):
    """Fine-tune MODEL on a prepared dataset; an interrupted job resumes from its last epoch."""
    from isplit.train import finetune as ft

    ft.run(
        dataset_dir=dataset_dir,
        model_out=model_out,
        metrics_out=metrics_out,
        history_out=history_out,
        predictions_out=predictions_out,
        model_name=model_name,
        weights=None if weights == "none" else weights,
        input_cfg=input_cfg,
        cfg=cfg,
        seed=seed,
        threads=threads,
        device=device,
    )


def _seed_list(ctx, param, value: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


@click.command("retrain-split")
@click.option("--model", "model_path", type=EXISTING, required=True, help="the fine-tuned model.pt")
@click.option("--dataset", "dataset_dir", type=EXISTING, required=True)
@click.option("--layer", required=True, help="probe point (module name) to split after")
@click.option("--config", "cfg", type=JSON, required=True)
@click.option("--seeds", callback=_seed_list, required=True, help="training seeds, e.g. 0,1,2")
@click.option("--data-seed", type=int, default=0, show_default=True, help="subset seed")
@click.option("--model-out", type=PATH, required=True, help="the first seed's split model")
@click.option("--metrics-out", type=PATH, required=True)
@click.option("--predictions-out", type=PATH, required=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def retrain_split(
    model_path,
    dataset_dir,
    layer,
    cfg,
    seeds,
    data_seed,
    model_out,
    metrics_out,
    predictions_out,
    threads,
    device,
):
    """Split after LAYER and train its bottleneck once per seed, then evaluate each; an
    interrupted job resumes with its unfinished seed."""
    from isplit.train import retrain

    retrain.run(
        model_path=model_path,
        dataset_dir=dataset_dir,
        layer=layer,
        cfg=cfg,
        seeds=seeds,
        data_seed=data_seed,
        model_out=model_out,
        metrics_out=metrics_out,
        predictions_out=predictions_out,
        threads=threads,
        device=device,
    )
