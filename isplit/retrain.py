"""Retrain the bottleneck at one split point, then evaluate the split model.

The protocol is ours (the public code ships no training code; method.md §5.3, §9.2): the
fine-tuned backbone is frozen, BatchNorm layers of head and tail stay in eval mode, and only the
bottleneck is trained, with cross-entropy at the output plus an optional ``recon_weight`` × MSE
between the decoded and the original activation. An optional second stage then freezes the
bottleneck and fine-tunes the classifier's final Linear layer (the public code's
``fine_tuning_freeze``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from isplit import __version__, models
from isplit.atomic import replacing, write_json
from isplit.datasets.loader import ManifestDataset, read_classes, transform_from_config
from isplit.split import (
    FLOAT_BYTES,
    AEBottleneck,
    SplitModel,
    split_model,
    transmitted_bytes,
)
from isplit.train import (
    evaluate,
    file_identity,
    fit,
    pick_device,
    run_fingerprint,
    set_determinism,
)


def input_shape(input_cfg: dict) -> tuple[int, int, int]:
    s = int(input_cfg["image_size"])
    return (3, s, s)


def build_split(model: nn.Module, layer: str, cfg: dict, input_cfg: dict) -> SplitModel:
    kind = cfg.get("bottleneck", "ae")
    return split_model(
        model,
        layer,
        None if kind == "none" else kind,
        input_shape=input_shape(input_cfg),
        ratio=float(cfg.get("ratio", 8)),
        stages=int(cfg.get("stages", 2)),
        quant_bits=cfg.get("quant_bits"),
    )


def save_split(path: Path, split: SplitModel, meta: dict) -> None:
    with replacing(path) as tmp:
        torch.save({"meta": meta, "state_dict": split.state_dict()}, tmp)


def load_split(path: str | Path, map_location: str = "cpu") -> tuple[SplitModel, dict]:
    """Rebuild a split model saved by :func:`run`."""
    obj = torch.load(path, map_location=map_location, weights_only=True)
    meta = obj["meta"]
    model = models.build(meta["model"], int(meta["num_classes"]))
    split = build_split(model, meta["layer"], meta["bottleneck"], meta["input"])
    split.load_state_dict(obj["state_dict"])
    return split.eval(), meta


def _flops(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = module(x)
    return int(counter.get_total_flops()), y


def cost(split: SplitModel, shape: tuple[int, int, int]) -> dict:
    """Parameters and FLOPs (per image; a multiply-add counts 2) on each side of the cut."""
    split.eval()
    x = torch.zeros(1, *shape)
    head_flops, a = _flops(split.head, x)
    bn = split.bottleneck
    enc = getattr(bn, "encoder", nn.Identity())
    dec = nn.Sequential(getattr(bn, "quantize", nn.Identity()), getattr(bn, "decoder", bn))
    enc_flops, z = _flops(enc, a)
    dec_flops, r = _flops(dec, z)
    tail_flops, _ = _flops(split.tail, r)

    def params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "head_params": params(split.head),
        "tail_params": params(split.tail),
        "encoder_params": params(enc),
        "decoder_params": params(dec),
        "head_flops": head_flops,
        "encoder_flops": enc_flops,
        "decoder_flops": dec_flops,
        "tail_flops": tail_flops,
        "activation_shape": list(a.shape[1:]),
        "activation_bytes": int(a[0].numel() * 4),
        "code_shape": list(z.shape[1:]),
    }


def _freeze_all_but(split: SplitModel, trainable: nn.Module) -> None:
    for p in split.parameters():
        p.requires_grad_(False)
    for p in trainable.parameters():
        p.requires_grad_(True)


def run(
    *,
    model_path: str | Path,
    dataset_dir: str | Path,
    layer: str,
    out_dir: str | Path,
    cfg: dict,
    seed: int,
    threads: int | None = None,
    device: str = "auto",
    log=sys.stderr,
) -> dict:
    """Writes ``model.pt`` and ``metrics.json`` into ``out_dir``."""
    out_dir, dataset_dir = Path(out_dir), Path(dataset_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(seed, threads)
    dev = pick_device(device)
    model, meta = models.load_model(model_path)
    input_cfg = meta["input"]
    classes = read_classes(dataset_dir)
    torch.manual_seed(seed)  # the bottleneck's initialisation
    split = build_split(model, layer, cfg, input_cfg)
    shape = input_shape(input_cfg)

    plain = transform_from_config(input_cfg)
    train_set = ManifestDataset(
        dataset_dir,
        "train",
        transform_from_config(input_cfg, cfg.get("augment", "none")),
        subset=cfg.get("train_subset"),
        seed=seed,
    )
    val_set = ManifestDataset(dataset_dir, "val", plain, subset=cfg.get("eval_subset"), seed=seed)
    test_set = ManifestDataset(dataset_dir, "test", plain, subset=cfg.get("eval_subset"), seed=seed)

    ce = nn.CrossEntropyLoss()
    lam = float(cfg.get("recon_weight", 0.0))

    def loss_fn(m: SplitModel, x, y):
        with torch.no_grad():  # the head is frozen: no graph needed
            a = m.head(x)
        r = m.bottleneck(a)
        logits = m.tail(r)
        loss = ce(logits, y)
        if lam:
            loss = loss + lam * nn.functional.mse_loss(r, a)
        return loss, logits

    def train_only(module: nn.Module):
        def mode(m: SplitModel):
            m.eval()
            module.train()

        return mode

    ident = {
        "model": file_identity(model_path),
        "layer": layer,
        "cfg": cfg,
        "seed": seed,
        "version": __version__,
    }
    fingerprint = run_fingerprint(ident)
    history: list[dict] = []
    t0 = time.perf_counter()
    workers = int(cfg.get("num_workers", 0))
    has_params = any(True for _ in split.bottleneck.parameters())
    if has_params and int(cfg.get("epochs", 0)) > 0:
        _freeze_all_but(split, split.bottleneck)
        history += fit(
            split,
            train_set,
            cfg,
            seed=seed,
            checkpoint=out_dir / "checkpoint.pt",
            fingerprint=fingerprint,
            device=dev,
            val_set=val_set,
            num_workers=workers,
            loss_fn=loss_fn,
            train_mode=train_only(split.bottleneck),
            log=log,
        )
    stage2 = int(cfg.get("classifier_epochs", 0))
    if stage2 > 0:
        head_name, _ = models.classifier_head(model)
        clf = model.get_submodule(head_name)
        _freeze_all_but(split, clf)
        cfg2 = {**cfg, "epochs": stage2, "lr": float(cfg.get("classifier_lr", cfg["lr"]))}
        for row in fit(
            split,
            train_set,
            cfg2,
            seed=seed + 1,
            checkpoint=out_dir / "checkpoint-classifier.pt",
            fingerprint=fingerprint + ":classifier",
            device=dev,
            val_set=val_set,
            num_workers=workers,
            loss_fn=loss_fn,
            train_mode=train_only(clf),
            log=log,
        ):
            history.append({**row, "stage": "classifier"})
    for p in split.parameters():
        p.requires_grad_(False)

    ebs = int(cfg.get("eval_batch_size", 256))
    split.cpu()
    metrics: dict = {
        "layer": layer,
        "bottleneck": cfg.get("bottleneck", "ae"),
        "train_seconds": time.perf_counter() - t0,
        "epochs": len(history),
        "history": history,
        "bytes": transmitted_bytes(split, shape),
        "isplit_version": __version__,
    }
    # before the optional 8-bit quantisation of the code (equal to `bytes` without it)
    bn = split.bottleneck
    metrics["bytes_float32"] = (
        math.prod(bn.code_shape) * FLOAT_BYTES if isinstance(bn, AEBottleneck) else metrics["bytes"]
    )
    metrics.update(cost(split, shape))
    for name, ds in (("val", val_set), ("test", test_set)):
        ev = evaluate(split, ds, batch_size=ebs, device=dev, num_classes=len(classes))
        metrics[name] = {
            "n": ev["n"],
            "top1": ev["top1"],
            "per_class": dict(zip(classes, ev["per_class"], strict=True)),
            "confusion": ev["confusion"],
        }
        print(f"{layer}: {name} top-1 {ev['top1']:.4f} (n={ev['n']})", file=log, flush=True)
    split.cpu()
    save_meta = {
        "model": meta["model"],
        "num_classes": len(classes),
        "classes": classes,
        "input": input_cfg,
        "layer": layer,
        "bottleneck": {k: cfg.get(k) for k in ("bottleneck", "ratio", "stages", "quant_bits")},
        "isplit_version": __version__,
    }
    save_split(out_dir / "model.pt", split, save_meta)
    write_json(out_dir / "metrics.json", metrics)
    for ck in ("checkpoint.pt", "checkpoint-classifier.pt"):
        (out_dir / ck).unlink(missing_ok=True)
    return metrics
