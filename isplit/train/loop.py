"""One training loop for fine-tuning and for split retraining, with resumable checkpoints.

Determinism: every epoch reseeds torch's global generator (augmentation, dropout) and the
loader's shuffling from ``(seed, epoch)``. A run resumed from the checkpoint of epoch k
therefore draws exactly the random numbers an uninterrupted run draws in epochs k+1…, and on
CPU ends with bit-identical weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from isplit.config import TrainSettings
from isplit.evaluation.metrics import classification_metrics
from isplit.io.files import replacing

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle", "cosine", "step")


def file_identity(path: str | Path) -> str:
    """Cheap identity of an input file for a resume fingerprint (name + size + mtime)."""
    path = Path(path)
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def run_fingerprint(ident: dict) -> str:
    """Hash of everything that determines a training run: a checkpoint is resumed only by a
    run with the same fingerprint."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 12345) % 2**63


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainSettings) -> torch.optim.Optimizer:
    name, lr, wd = cfg.optimizer, cfg.lr, cfg.weight_decay
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=cfg.momentum,
            weight_decay=wd,
            nesterov=cfg.nesterov,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainSettings, steps_per_epoch: int):
    """A per-step scheduler (``step()`` after every batch)."""
    name, epochs = cfg.schedule, cfg.epochs
    total = max(1, epochs * steps_per_epoch)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.lr,
            total_steps=total,
            pct_start=cfg.warmup,
        )
    if name == "cosine":
        warm = int(cfg.warmup * total)

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        return torch.optim.lr_scheduler.LambdaLR(opt, f)
    if name == "step":
        size = cfg.step_epochs * steps_per_epoch
        gamma = cfg.gamma
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: gamma ** (s // size))
    raise ValueError(f"schedule {name!r} is not one of {SCHEDULES}")


def cross_entropy(cfg: TrainSettings, train_set: Dataset, device) -> nn.CrossEntropyLoss:
    """The training loss: label smoothing, and with ``class_weights: balanced`` each class
    weighted by n / (K × its count), so a rare class weighs as much as a common one."""
    weight = None
    if cfg.class_weights == "balanced":
        labels = getattr(train_set, "labels", None)
        if labels is None and hasattr(train_set, "tensors"):  # cached head outputs
            labels = train_set.tensors[1].numpy()
        labels = np.asarray(labels)
        if labels.ndim != 1 or not len(labels):
            raise ValueError("class_weights: balanced needs a dataset with labels")
        counts = np.bincount(labels, minlength=int(labels.max()) + 1).astype(float)
        w = np.where(counts > 0, len(labels) / (len(counts) * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def _save_atomic(obj: dict, path: Path) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def fit(
    model: nn.Module,
    train_set: Dataset,
    cfg: TrainSettings,
    *,
    seed: int,
    checkpoint: str | Path,
    fingerprint: str,
    device: torch.device | str = "cpu",
    val_set: Dataset | None = None,
    num_workers: int = 0,
    loss_fn: Callable | None = None,
    train_mode: Callable[[nn.Module], None] | None = None,
    log=sys.stderr,
) -> list[dict]:
    """Train ``model`` in place for ``cfg['epochs']`` epochs; returns the per-epoch history.

    ``cfg`` is a :class:`~isplit.config.TrainSettings` (fine-tuning or retraining settings).
    ``checkpoint`` is written after every epoch; if it exists with the same ``fingerprint``
    (a hash of everything that determines the run), training resumes from it. A checkpoint with
    another fingerprint is from a different run and is ignored.
    ``loss_fn(model, x, y) -> (loss, logits)`` defaults to cross-entropy on ``model(x)``;
    ``train_mode(model)`` sets train/eval modes (e.g. BatchNorm of a frozen backbone in eval).
    """
    device = torch.device(device)
    checkpoint = Path(checkpoint)
    model.to(device)
    epochs, bs = cfg.epochs, cfg.batch_size
    if loss_fn is None:
        ce = cross_entropy(cfg, train_set, device)

        def loss_fn(m, x, y):
            logits = m(x)
            return ce(logits, y), logits

    opt = make_optimizer(model.parameters(), cfg)
    steps = len(train_set) // bs if cfg.drop_last else math.ceil(len(train_set) / bs)
    sched = make_scheduler(opt, cfg, steps)
    start, history = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, history = int(state["epoch"]), list(state["history"])
            print(f"resuming from {checkpoint} after epoch {start}/{epochs}", file=log, flush=True)
        else:
            print(f"ignoring {checkpoint}: it belongs to another run", file=log, flush=True)
    for epoch in range(start, epochs):
        es = _epoch_seed(seed, epoch)
        torch.manual_seed(es)
        gen = torch.Generator().manual_seed(es)
        loader = DataLoader(
            train_set,
            batch_size=bs,
            shuffle=True,
            generator=gen,
            num_workers=num_workers,
            drop_last=cfg.drop_last,
            persistent_workers=False,
        )
        (train_mode or (lambda m: m.train()))(model)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=log,
            mininterval=5,
            dynamic_ncols=False,
            ncols=100,
        )
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, logits = loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False
            )
        bar.close()
        row = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "seconds": time.perf_counter() - t0,
        }
        if val_set is not None:
            ev = evaluate(
                model,
                val_set,
                batch_size=max(bs, 256),
                device=device,
                num_workers=num_workers,
                loss=True,
            )
            row.update(val_loss=ev["loss"], val_acc=ev["top1"])
        history.append(row)
        print(
            " ".join(
                f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            file=log,
            flush=True,
        )
        _save_atomic(
            {
                "fingerprint": fingerprint,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history,
            },
            checkpoint,
        )
    return history


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    num_classes: int | None = None,
    loss: bool = False,
) -> dict:
    """Top-1, balanced accuracy, macro-F1, per-class recall and F1, the confusion matrix (rows:
    true class, columns: predicted) and every image's prediction (``pred``, loader order)."""
    device = torch.device(device)
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    preds, labels, loss_sum = [], [], 0.0
    for x, y in loader:
        logits = model(x.to(device))
        if loss:
            loss_sum += float(nn.functional.cross_entropy(logits, y.to(device), reduction="sum"))
        preds.append(logits.argmax(1).cpu())
        labels.append(y)
    p = torch.cat(preds).numpy() if preds else np.zeros(0, int)
    t = torch.cat(labels).numpy() if labels else np.zeros(0, int)
    k = num_classes or int(max(p.max(initial=-1), t.max(initial=-1)) + 1)
    out = {**classification_metrics(t, p, k), "pred": p, "label": t}
    if loss:
        out["loss"] = loss_sum / max(len(t), 1)
    return out


def score(
    model: nn.Module,
    sets: dict[str, Dataset],
    classes: list[str],
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    log=sys.stderr,
    what: str = "",
) -> tuple[dict, pd.DataFrame]:
    """:func:`evaluate` on each named dataset: the ``metrics.json`` entries of a stage
    (``{name: {n, top1, balanced_accuracy, macro_f1, per_class: {class: recall},
    per_class_f1, confusion}}``) and the per-image predictions (``predictions.parquet``: one
    row per image with ``split``, ``position`` in the dataset, ``sample_id``, ``label``,
    ``pred``), from which every interval is bootstrapped."""
    out, rows = {}, []
    for name, ds in sets.items():
        ev = evaluate(model, ds, batch_size=batch_size, device=device, num_classes=len(classes))
        out[name] = {
            k: dict(zip(classes, v, strict=True)) if k in ("per_class", "per_class_f1") else v
            for k, v in ev.items()
            if k not in ("pred", "label")
        }
        ids = ds.frame["sample_id"].astype(str).to_numpy() if hasattr(ds, "frame") else None
        rows.append(
            pd.DataFrame(
                {
                    "split": name,
                    "position": np.arange(ev["n"], dtype=np.int64),
                    "sample_id": ids if ids is not None else np.arange(ev["n"]).astype(str),
                    "label": ev["label"].astype(np.int64),
                    "pred": ev["pred"].astype(np.int64),
                }
            )
        )
        print(
            f"{what}{name} top-1 {ev['top1']:.4f}, balanced {ev['balanced_accuracy']:.4f}, "
            f"macro-F1 {ev['macro_f1']:.4f} (n={ev['n']})",
            file=log,
            flush=True,
        )
    return out, pd.concat(rows, ignore_index=True)
