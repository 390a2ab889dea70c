"""Fine-tune a pretrained classifier on a prepared dataset (the DAG's third stage)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch

from isplit import __version__, models
from isplit.atomic import replacing, write_json
from isplit.datasets.loader import ManifestDataset, read_classes, transform_from_config
from isplit.train import (
    evaluate,
    file_identity,
    fit,
    pick_device,
    run_fingerprint,
    set_determinism,
)


def run(
    *,
    dataset_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    weights: str | Path | None,
    input_cfg: dict,
    cfg: dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes ``model.pt``, ``metrics.json`` and ``history.csv`` into ``out_dir``."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(seed, threads)
    dev = pick_device(device)
    classes = read_classes(dataset_dir)
    model = models.build(model_name, len(classes), weights)
    if cfg.get("freeze_backbone"):
        head_name, _ = models.classifier_head(model)
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(head_name + "."))

    train_set = ManifestDataset(
        dataset_dir,
        "train",
        transform_from_config(input_cfg, cfg.get("augment", "none")),
        subset=cfg.get("train_subset"),
        seed=seed,
    )
    plain = transform_from_config(input_cfg)
    eval_subset = cfg.get("eval_subset")
    val_set = ManifestDataset(dataset_dir, "val", plain, subset=eval_subset, seed=seed)
    test_set = ManifestDataset(dataset_dir, "test", plain, subset=eval_subset, seed=seed)
    print(
        f"{model_name} on {dataset_dir.name}: {len(classes)} classes, train {len(train_set)}, "
        f"val {len(val_set)}, test {len(test_set)}, device {dev}, "
        f"threads {torch.get_num_threads()}",
        file=log,
        flush=True,
    )
    ident = {
        "model": model_name,
        "weights": file_identity(weights) if weights else None,
        "manifest": file_identity(dataset_dir / "manifest.parquet"),
        "input": input_cfg,
        "cfg": cfg,
        "seed": seed,
        "version": __version__,
    }
    fingerprint = run_fingerprint(ident)
    checkpoint = out_dir / "checkpoint.pt"
    t0 = time.perf_counter()
    history = fit(
        model,
        train_set,
        cfg,
        seed=seed,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        device=dev,
        val_set=val_set,
        num_workers=int(cfg.get("num_workers", 0)),
        log=log,
    )
    train_seconds = sum(h["seconds"] for h in history)

    ebs = int(cfg.get("eval_batch_size", 256))
    metrics: dict = {
        "model": model_name,
        "dataset": dataset_dir.name,
        "classes": classes,
        "epochs": len(history),
        "train_seconds": train_seconds,
        "wall_seconds_this_run": time.perf_counter() - t0,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "isplit_version": __version__,
        "torch_version": torch.__version__,
    }
    for name, ds in (("train", train_set), ("val", val_set), ("test", test_set)):
        if name == "train":  # score the training images without augmentation
            ds = ManifestDataset(
                dataset_dir, "train", plain, subset=cfg.get("train_subset"), seed=seed
            )
        ev = evaluate(model, ds, batch_size=ebs, device=dev, num_classes=len(classes))
        metrics[name] = {
            "n": ev["n"],
            "top1": ev["top1"],
            "per_class": dict(zip(classes, ev["per_class"], strict=True)),
            "confusion": ev["confusion"],
        }
        print(f"{name} top-1 {ev['top1']:.4f} (n={ev['n']})", file=log, flush=True)

    meta = {
        "model": model_name,
        "num_classes": len(classes),
        "classes": classes,
        "input": input_cfg,
        "seed": seed,
        "isplit_version": __version__,
    }
    models.save_model(out_dir / "model.pt", model.cpu(), meta)
    with replacing(out_dir / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    write_json(out_dir / "metrics.json", metrics)
    # the finished model supersedes the checkpoint (which also holds optimiser state: large)
    checkpoint.unlink(missing_ok=True)
    return metrics
