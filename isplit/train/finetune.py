"""Fine-tune a pretrained classifier on a prepared dataset (the DAG's third stage)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch

from isplit import __version__
from isplit.config import FinetuneSettings, InputSettings, settings
from isplit.data.loader import read_classes, split_sets
from isplit.io.files import replacing, write_json, write_table
from isplit.nets import models
from isplit.nets.runtime import pick_device, set_determinism
from isplit.train.loop import file_identity, fit, run_fingerprint, score


def run(
    *,
    dataset_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    weights: str | Path | None,
    input_cfg: InputSettings | dict,
    cfg: FinetuneSettings | dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes ``model.pt``, ``metrics.json`` and ``history.csv`` into ``out_dir``."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    inp, c = settings("input", input_cfg), settings("finetune", cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    checkpoint = out_dir / "checkpoint.pt"
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
    models.save_model(out_dir / "model.pt", model.cpu(), meta)
    with replacing(out_dir / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    write_table(predictions, out_dir / "predictions.parquet")
    write_json(out_dir / "metrics.json", metrics)
    # the finished model supersedes the checkpoint (which also holds optimiser state: large)
    checkpoint.unlink(missing_ok=True)
    return metrics
