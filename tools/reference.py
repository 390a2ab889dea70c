"""Per-image reference of the public I-SPLIT code's importance algorithm (docs/methods.md §1.3, §6).

Written independently of :mod:`isplit.importance` to check it, and used as the slow baseline of
``scripts/bench_importance.py``. It follows ``main.py::compute_saliency`` and
``filters_extraction.get_filters`` of the public code:

1. batch size 1; the network is run step by step (``models.chain``) and a *tensor* hook
   (``register_hook``) is put on the output of every probed step, as ``forward_with_grads``
   does; then one ``backward()`` from the target logit;
2. for every probed layer the forward prefix is re-run from the input to get the activation
   ``A`` (O(L²) layer calls per image, as in the public code);
3. ``α = mean_{h,w} grad``, ``M = relu(mean_c α·A)`` (or Σ_c), ``cui = mean(M)``.

Unlike the public code it runs in eval mode by default (``train_mode=True`` gives the public
code's train-mode BatchNorm/Dropout; the caller then passes a model it does not mind changing,
since train-mode forwards update BN running statistics). It does not clone activations, so it
does not share the batched extractor's mechanism: the tensor hook on an output later modified
by an in-place ReLU receives the gradient w.r.t. the pre-modification value (torch ≥ 2).
"""

from __future__ import annotations

import numpy as np
import torch

from isplit.nets import models


def _saver(store: dict, i: int):
    def save(g):
        store[i] = g.detach().clone()

    return save


def reference_cui(
    model: torch.nn.Module,
    points,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    target: str = "label",
    channel_reduce: str = "mean",
    train_mode: bool = False,
    return_alpha: bool = False,
    public_code_cost: bool = False,
):
    """(cui (N, L) float64, pred (N,) int64[, alphas: list over images of list over layers]).

    ``public_code_cost=True`` also does the work the public code does and throws away (the
    benchmark's baseline, docs/methods.md §6): it hooks and re-runs the prefix for *every* step up
    to the last probe (VGG16's 31 ``features`` modules, ResNet-50's 4 stem modules + 16
    blocks), with autograd recording as in ``get_filters`` (no ``no_grad``), and keeps only
    the probed layers' values.
    """
    steps = models.chain(model)
    names = [n for n, _ in steps]
    chain_idx = [
        p.chain_index if isinstance(p, models.ProbePoint) else names.index(p) for p in points
    ]
    computed = list(range(max(chain_idx) + 1)) if public_code_cost else chain_idx
    model.train(train_mode)
    cuis = np.zeros((len(images), len(chain_idx)))
    preds = np.zeros(len(images), dtype=np.int64)
    all_alphas = []
    for n in range(len(images)):
        img = images[n : n + 1]
        grads: dict[int, torch.Tensor] = {}

        x = img
        for i, (_, m) in enumerate(steps):
            x = m(x)
            if i in computed and x.requires_grad:
                x.register_hook(_saver(grads, i))
        logits = x
        preds[n] = int(logits.argmax(1))
        t = int(labels[n]) if target == "label" else preds[n]
        model.zero_grad(set_to_none=True)
        logits[0, t].backward()

        alphas = []
        for ci in computed:
            if public_code_cost:  # records a graph, as get_filters does, then drops it
                a = models.run_chain(steps[: ci + 1], img).detach()
            else:
                with torch.no_grad():
                    a = models.run_chain(steps[: ci + 1], img)
            if ci not in grads or a.ndim != 4:
                continue
            g = grads[ci]
            alpha = g.mean(dim=(2, 3))  # 1×C
            weighted = alpha[:, :, None, None] * a
            cam = weighted.mean(1) if channel_reduce == "mean" else weighted.sum(1)
            if ci in chain_idx:
                cuis[n, chain_idx.index(ci)] = float(torch.relu(cam).mean())
                alphas.append(alpha[0].detach().clone())
        all_alphas.append(alphas)
    if return_alpha:
        return cuis, preds, all_alphas
    return cuis, preds
