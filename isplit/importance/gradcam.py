"""Per-image, per-layer neuron importance (I-SPLIT's layer Grad-CAM), in one pass per batch.

Definition (the paper's, our default; docs/methods.md §1.1). The model is in eval mode; ``y`` is
the logit of the *true* label. For each probe point ``l`` with activation ``A`` (C×H×W)::

    α_c      = mean_{h,w} ∂y/∂A_{c,h,w}                (Grad-CAM channel weights)
    M_{h,w}  = ReLU( mean_c α_c · A_{c,h,w} )          (``channel_reduce="sum"``: Σ_c)
    cui[n,l] = mean_{h,w} M_{h,w}

Another layout is read with its channel axis first: tokens L×D have D channels and L positions
(docs/methods.md §1.5). The CUI curve (mean over images) needs only these scalars: no map kept.

How (and why this way)
----------------------
* **One forward and one backward per batch give every layer.** The model runs as its traced
  graph with an identity *tap* after each probe point (:func:`isplit.nets.graph.tapped`), so a
  probe may be any cut point, a functional one too. Forward hooks on the taps store ``A``.
  Where an op later in the graph may write into ``A``'s storage (VGG's ``ReLU(inplace=True)``
  after a probed conv, torchvision's reused in-place ReLUs; the tap's ``overwritten``, from the
  graph) the hook *returns a clone*, so the rest of the network runs on the clone and the
  in-place op modifies the clone, never the stored ``A`` (docs/methods.md §1.3: without the
  clone 16 of VGG16's 31 layers come out wrong). Elsewhere the copy would only cost time.
  The gradient that reaches ``A`` through the clone is ∂y/∂A of the value the split would
  transmit; for a conv followed by an in-place ReLU that is the ReLU-masked gradient w.r.t.
  the pre-activation, which is also what the public code's tensor hooks receive
  (docs/methods.md §1.4).
* In eval mode the samples of a batch do not interact, so ``autograd.grad(Σ_n y_n, A)`` is, row
  by row, each image's own gradient: batching is exact, not an approximation.
* ``torch.autograd.grad`` w.r.t. the stored activations only: no ``.backward()``, no parameter
  gradients. Parameters are switched to ``requires_grad=False`` for the pass (restored after),
  so autograd neither computes nor stores anything for the weights. The graph still has to
  exist from the first probe on: the hook turns a probe output that does not require grad into
  a graph leaf (``requires_grad_()``), so nothing before the first probe point is recorded
  (cheaper than ``input.requires_grad_()``, which records the stem too).
* Reductions happen on the device as soon as the gradients exist: ``α`` (B×C),
  ``einsum("bc,bchw->bhw")`` (no B×C×H×W temporary), per-image scalars, and per-class channel
  sums (K×C, float64). Activations and gradients are freed per batch.

``variant="public-code"`` reproduces the public I-SPLIT code where it differs from the paper:
BatchNorm and Dropout in *train* mode. Train-mode BatchNorm normalises with the statistics of
the batch, which couples the images of a batch, so the public code's batch size of one must be
kept: this variant loops over images one at a time (slow, by construction). It runs on a deep
copy of the model, so the caller's BatchNorm running statistics are not touched. With it, the
stem, the maxpool and each stage's last ResNet block get α ≈ 0 (their outputs only feed
conv→BN paths, and the gradient through a train-mode BN has zero mean per channel), which is
the −10 dips of the published ResNet curve (docs/methods.md §1.4). Its probe list, with the VGG
``block1_conv2`` quirk, is ``models.probe_points(model, "public-code")``; its predicted-class
target is ``target="pred"`` (:func:`run` picks it when the config leaves ``target`` unset); and
its duplicated input point belongs to the curve (:mod:`isplit.importance.cui`), not here.

The stage that writes these values to Parquet is :mod:`isplit.importance.stage`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from isplit.importance.taps import ProbeLayer, resolve_layers, tap_model
from isplit.nets import models

TARGETS = ("label", "pred")
CHANNEL_REDUCES = ("mean", "sum")
VARIANTS = ("paper", "public-code")
EXTRACT_COLUMNS = ("sample", "label", "pred", "layer", "layer_index", "cui")

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("sample", pa.int64(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("pred", pa.int64(), nullable=False),
        pa.field("layer", pa.string(), nullable=False),
        pa.field("layer_index", pa.int64(), nullable=False),
        pa.field("layer_label", pa.string(), nullable=False),
        pa.field("cui", pa.float64(), nullable=False),
    ]
)

CHANNELS_SCHEMA = pa.schema(
    [
        pa.field("layer", pa.string(), nullable=False),
        pa.field("layer_index", pa.int64(), nullable=False),
        pa.field("channel", pa.int64(), nullable=False),
        pa.field("class", pa.int64(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("mean_alpha", pa.float64(), nullable=False),
        pa.field("mean_alpha_act", pa.float64(), nullable=False),
    ]
)


# --------------------------------------------------------------------------- channel sink


class ChannelStats:
    """Per-class sums of α_c and of α_c·mean_hw(A_c) for every probe layer (small arrays).

    Memory is K×C_l float64 per layer and statistic, independent of the number of images.
    """

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.count = np.zeros(self.num_classes, dtype=np.int64)
        self.sum_alpha: dict[int, np.ndarray] = {}
        self.sum_alpha_act: dict[int, np.ndarray] = {}
        self._counted: set[int] = set()

    def add(
        self, layer_index: int, labels: torch.Tensor, alpha: torch.Tensor, alpha_act: torch.Tensor
    ) -> None:
        k, c = self.num_classes, alpha.shape[1]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(f"labels outside 0..{k - 1}")
        a = torch.zeros(k, c, dtype=torch.float64, device=alpha.device)
        a.index_add_(0, labels, alpha.double())
        b = torch.zeros(k, c, dtype=torch.float64, device=alpha.device)
        b.index_add_(0, labels, alpha_act.double())
        if layer_index not in self.sum_alpha:
            self.sum_alpha[layer_index] = np.zeros((k, c))
            self.sum_alpha_act[layer_index] = np.zeros((k, c))
        self.sum_alpha[layer_index] += a.cpu().numpy()
        self.sum_alpha_act[layer_index] += b.cpu().numpy()

    def count_batch(self, labels: torch.Tensor) -> None:
        self.count += np.bincount(labels.cpu().numpy(), minlength=self.num_classes)

    def tables(
        self,
        layers: Sequence[ProbeLayer],
        classes: Sequence[str],
        schema: pa.Schema = CHANNELS_SCHEMA,
    ) -> Iterator[pa.Table]:
        """One Arrow table per layer in the :data:`CHANNELS_SCHEMA`."""
        present = np.flatnonzero(self.count > 0)
        for la in layers:
            if la.index not in self.sum_alpha:
                continue
            sa, sb = self.sum_alpha[la.index], self.sum_alpha_act[la.index]
            c = sa.shape[1]
            n = self.count[present]
            cls = np.repeat(present, c)
            yield pa.table(
                {
                    "layer": pa.array([la.name] * len(cls), pa.string()),
                    "layer_index": pa.array(np.full(len(cls), la.index, np.int64)),
                    "channel": pa.array(np.tile(np.arange(c, dtype=np.int64), len(present))),
                    "class": pa.array(cls.astype(np.int64)),
                    "class_name": pa.array([classes[i] for i in cls], pa.string()),
                    "n": pa.array(np.repeat(n, c).astype(np.int64)),
                    "mean_alpha": pa.array((sa[present] / n[:, None]).ravel()),
                    "mean_alpha_act": pa.array((sb[present] / n[:, None]).ravel()),
                },
                schema=schema,
            )


# --------------------------------------------------------------------------- the pass


@dataclass
class BatchResult:
    sample: np.ndarray  # (B,) int64 positions in loader order
    label: np.ndarray  # (B,) int64
    pred: np.ndarray  # (B,) int64
    cui: np.ndarray  # (B, L) float64


class _Recorder:
    """Forward hooks that keep each probe output and hand a clone to the rest of the net."""

    def __init__(self, taps: dict[str, nn.Module], layers: Sequence[ProbeLayer]):
        self.acts: dict[int, torch.Tensor] = {}
        self._handles = []
        for la in layers:
            self._handles.append(taps[la.name].register_forward_hook(self._hook(la)))

    def _hook(self, la: ProbeLayer):
        def hook(module, inputs, out):
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"probe {la.name!r} returns {type(out).__name__}, not a tensor")
            if la.index in self.acts:
                raise RuntimeError(
                    f"probe module {la.name!r} ran twice in one forward pass: a module reused at "
                    "several places cannot be a probe point"
                )
            if not out.requires_grad:
                # a graph leaf (same storage): nothing before the first probe is recorded
                out = out.detach().requires_grad_(True)
            self.acts[la.index] = out
            return out.clone() if module.overwritten else out

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _reduce_layer(
    a: torch.Tensor, g: torch.Tensor | None, channel_reduce: str, channel_axis: int = 0
):
    """Per-image cui (B,), α (B,C) and α·mean_hw(A) (B,C) of one layer whose channels are
    on ``channel_axis`` of one image's activation (0: NCHW)."""
    if g is None:  # the logit does not depend on this layer
        g = torch.zeros_like(a)
    a, g = a.detach(), g.detach()
    axis = channel_axis % (a.ndim - 1) + 1 if a.ndim > 2 else 1
    a, g = a.movedim(axis, 1), g.movedim(axis, 1)  # channels last (tokens): to dim 1
    dims = tuple(range(2, a.ndim))
    alpha = g.mean(dims) if dims else g
    if dims:
        flat = a.flatten(2)  # B×C×(HW)
        cam = torch.einsum("bc,bcs->bs", alpha, flat)
        if channel_reduce == "mean":
            cam = cam / a.shape[1]
        cui = torch.relu(cam).mean(1)
        alpha_act = alpha * flat.mean(2)
    else:
        cam = (alpha * a).sum(1)
        cui = torch.relu(cam / a.shape[1] if channel_reduce == "mean" else cam)
        alpha_act = alpha * a
    return cui, alpha, alpha_act


def _one_pass(
    model: nn.Module,
    recorder: _Recorder,
    layers: Sequence[ProbeLayer],
    axes: dict[str, int],
    x: torch.Tensor,
    y: torch.Tensor,
    target: str,
    channel_reduce: str,
    stats: ChannelStats | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + one backward on ``x``: returns (pred (B,), cui (B, L))."""
    recorder.acts.clear()
    try:
        with torch.enable_grad():
            logits = model(x)
            pred = logits.detach().argmax(1)
            t = y if target == "label" else pred
            score = logits.gather(1, t[:, None]).sum()
            missing = [la.name for la in layers if la.index not in recorder.acts]
            if missing:
                raise RuntimeError(f"probe modules never ran in the forward pass: {missing}")
            acts = [recorder.acts[la.index] for la in layers]
            grads = torch.autograd.grad(score, acts, allow_unused=True)
        del logits, score
        cuis = []
        for la, a, g in zip(layers, acts, grads, strict=True):
            cui, alpha, alpha_act = _reduce_layer(a, g, channel_reduce, axes[la.name])
            cuis.append(cui)
            if stats is not None:
                stats.add(la.index, y, alpha, alpha_act)
        return pred, torch.stack(cuis, 1)
    finally:
        recorder.acts.clear()


def iter_batches(
    model: nn.Module,
    layers: Sequence[models.ProbePoint | str],
    loader: Iterable,
    *,
    target: str = "label",
    channel_reduce: str = "mean",
    variant: str = "paper",
    device: str | torch.device | None = None,
    channel_stats: ChannelStats | None = None,
) -> Iterator[BatchResult]:
    """The streaming core of :func:`extract`: one :class:`BatchResult` per loader batch.

    ``device`` None uses the model where its parameters are; a device moves ``model`` there (in
    place, like ``model.to``). Otherwise ``model`` is left as found (training flag and
    ``requires_grad`` restored); ``variant="public-code"`` works on a deep copy.
    """
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is not one of {TARGETS}")
    if channel_reduce not in CHANNEL_REDUCES:
        raise ValueError(f"channel_reduce {channel_reduce!r} is not one of {CHANNEL_REDUCES}")
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    probes = resolve_layers(model, layers)
    if device is None:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = torch.device(device)

    public = variant == "public-code"
    net = copy.deepcopy(model) if public else model
    was_training = net.training
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.to(dev)
    net.train(public)
    for p, _ in flags:
        p.requires_grad_(False)
    recorder = None
    try:
        start = 0
        for batch in loader:
            x, y = batch[0], batch[1]
            y = torch.as_tensor(y, dtype=torch.int64)
            x, y = x.to(dev), y.to(dev)
            if recorder is None:  # the graph is traced for the loader's image size
                tapped, taps, axes = tap_model(net, probes, x)
                tapped.train(public)
                recorder = _Recorder(taps, probes)
            if channel_stats is not None:
                channel_stats.count_batch(y)
            if public:  # batch size 1: train-mode BatchNorm must see one image at a time
                try:
                    outs = [
                        _one_pass(
                            tapped,
                            recorder,
                            probes,
                            axes,
                            x[i : i + 1],
                            y[i : i + 1],
                            target,
                            channel_reduce,
                            channel_stats,
                        )
                        for i in range(x.shape[0])
                    ]
                except ValueError as e:
                    if "Expected more than 1 value per channel" not in str(e):
                        raise
                    raise ValueError(
                        f"variant 'public-code' runs BatchNorm in train mode on one image, which "
                        f"needs feature maps larger than 1x1 at every BatchNorm; the input "
                        f"{tuple(x.shape[2:])} is too small for this model: use a larger "
                        f"image_size ({e})"
                    ) from e
                pred = torch.cat([o[0] for o in outs])
                cui = torch.cat([o[1] for o in outs])
            else:
                pred, cui = _one_pass(
                    tapped, recorder, probes, axes, x, y, target, channel_reduce, channel_stats
                )
            b = x.shape[0]
            yield BatchResult(
                sample=np.arange(start, start + b, dtype=np.int64),
                label=y.cpu().numpy().astype(np.int64),
                pred=pred.cpu().numpy().astype(np.int64),
                cui=cui.double().cpu().numpy(),
            )
            start += b
    finally:
        if recorder is not None:
            recorder.remove()
        if not public:
            for p, flag in flags:
                p.requires_grad_(flag)
            net.train(was_training)


def long_rows(res: BatchResult, probes: Sequence[ProbeLayer]) -> dict[str, np.ndarray]:
    """Sample-major long rows (sample, then layer) of one batch."""
    b, n_layers = res.cui.shape
    return {
        "sample": np.repeat(res.sample, n_layers),
        "label": np.repeat(res.label, n_layers),
        "pred": np.repeat(res.pred, n_layers),
        "layer_index": np.tile(np.array([la.index for la in probes], np.int64), b),
        "pos": np.tile(np.arange(n_layers, dtype=np.int64), b),  # position in ``probes``
        "cui": res.cui.reshape(-1),
    }


def extract(
    model: nn.Module,
    layers: Sequence[models.ProbePoint | str],
    loader: Iterable,
    target: str = "label",
    **options,
) -> pd.DataFrame:
    """Per-image importance of every probe point: one row per (image, layer).

    Columns: ``sample`` (int64, position in loader order), ``label`` (int64), ``pred`` (int64,
    top-1 of the same forward pass), ``layer`` (str, module name), ``layer_index`` (int64,
    position in ``layers``), ``cui`` (float64). Rows sorted by ``sample`` then ``layer_index``.
    ``layers``: :class:`isplit.nets.models.ProbePoint` s (e.g. ``models.probe_points(model)``) or
    module names. ``loader`` yields ``(x, y)`` batches in a fixed order. ``options`` are
    :func:`iter_batches`'s (``channel_reduce``, ``variant``, ``device``, ``channel_stats``: a
    :class:`ChannelStats` that receives per-class channel sums).
    """
    probes = resolve_layers(model, layers)
    batches = iter_batches(model, layers, loader, target=target, **options)
    parts = [long_rows(r, probes) for r in batches]
    if parts:
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        cols = {
            k: np.zeros(0, np.float64 if k == "cui" else np.int64)
            for k in ("sample", "label", "pred", "layer_index", "pos", "cui")
        }
    names = np.array([la.name for la in probes], dtype=object)
    frame = pd.DataFrame(
        {
            "sample": cols["sample"].astype(np.int64),
            "label": cols["label"].astype(np.int64),
            "pred": cols["pred"].astype(np.int64),
            "layer": names[cols["pos"]],
            "layer_index": cols["layer_index"].astype(np.int64),
            "cui": cols["cui"].astype(np.float64),
        }
    )
    return frame[list(EXTRACT_COLUMNS)]
