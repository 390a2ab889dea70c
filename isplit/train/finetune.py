"""Fine-tune a pretrained classifier on a prepared dataset (the DAG's third stage)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from isplit import __version__
from isplit.config import FinetuneSettings, InputSettings, settings
from isplit.data.loader import read_classes, split_sets
from isplit.io.files import work_dir, write_json, write_table
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism
from isplit.train.loop import file_identity, fit, run_fingerprint, score


def run(
    *,
    dataset_dir: str | Path,
    model_out: str | Path,
    metrics_out: str | Path,
    history_out: str | Path,
    predictions_out: str | Path,
    model_name: str,
    weights: str | Path | None,
    input_cfg: InputSettings | dict,
    cfg: FinetuneSettings | dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes the fine-tuned ``model_out``, ``metrics_out`` (scores on train, val and test),
    ``history_out`` (one CSV row per epoch) and ``predictions_out`` (every scored image's
    prediction). The checkpoint of the last finished epoch is kept in a hidden work directory
    beside ``metrics_out`` (:func:`isplit.io.files.work_dir`) until the outputs are written, so
    a killed job resumes from it."""
    dataset_dir = Path(dataset_dir)
    inp, c = settings("input", input_cfg), settings("finetune", cfg)
    work = work_dir(metrics_out, "checkpoint")
    set_determinism(seed, threads)
    dev = pick_device(device)
    classes = read_classes(dataset_dir)
    model = models.build(model_name, len(classes), weights, image_size=inp.image_size)
    if c.freeze_backbone:
        head_name, _ = models.classifier_head(model)
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(head_name + "."))

    sets = split_sets(dataset_dir, inp, c, seed=seed)
    print(
        f"{model_name} on {dataset_dir.name}: {len(classes)} classes, train {len(sets['train'])}, "
        f"val {len(sets['val'])}, test {len(sets['test'])}, device {dev}, "
        f"threads {torch.get_num_threads()}",
        file=log,
        flush=True,
    )
    ident = {
        "model": model_name,
        "weights": file_identity(weights) if weights else None,
        "manifest": file_identity(dataset_dir / "manifest.parquet"),
        "input": inp.to_dict(),
        "cfg": c.to_dict(),
        "seed": seed,
        "version": __version__,
    }
    checkpoint = work / "checkpoint.pt"
    t0 = time.perf_counter()
    history = fit(
        model,
        sets["train"],
        c,
        seed=seed,
        checkpoint=checkpoint,
        fingerprint=run_fingerprint(ident),
        device=dev,
        val_set=sets["val"],
        num_workers=c.num_workers,
        log=log,
    )
    metrics: dict = {
        "model": model_name,
        "dataset": dataset_dir.name,
        "classes": classes,
        "epochs": len(history),
        "train_seconds": sum(h["seconds"] for h in history),
        "wall_seconds_this_run": time.perf_counter() - t0,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "isplit_version": __version__,
        "torch_version": torch.__version__,
    }
    # the training images are scored without augmentation
    scored = {"train": sets["train_plain"], "val": sets["val"], "test": sets["test"]}
    scores, predictions = score(
        model, scored, classes, batch_size=c.eval_batch_size, device=dev, log=log
    )
    metrics.update(scores)

    meta = {
        "model": model_name,
        "num_classes": len(classes),
        "classes": classes,
        "input": inp.to_dict(),
        "seed": seed,
        "isplit_version": __version__,
    }
    models.save_model(model_out, model.cpu(), meta)
    write_table(pd.DataFrame(history), history_out)
    write_table(predictions, predictions_out)
    write_json(metrics_out, metrics)
    # the finished model supersedes the checkpoint (which also holds optimiser state: large)
    shutil.rmtree(work, ignore_errors=True)
    return metrics
