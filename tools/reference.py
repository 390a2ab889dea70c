"""Per-image reference of the public I-SPLIT code's importance algorithm (docs/methods.md §1.3, §6).

Written independently of :mod:`isplit.importance` to check it, and used as the slow baseline of
``scripts/bench_importance.py``. It follows ``main.py::compute_saliency`` and
``filters_extraction.get_filters`` of the public code:

1. batch size 1; the traced network is run node by node (an ``fx.Interpreter``) and a *tensor*
   hook (``register_hook``) is put on the output of every probed cut point, as
   ``forward_with_grads`` does; then one ``backward()`` from the target logit;
2. for every probed layer the forward prefix (the head of a split there,
   :func:`isplit.nets.graph.cut`) is re-run from the input to get the activation ``A`` (O(L²)
   layer calls per image, as in the public code);
3. ``α = mean_{h,w} grad``, ``M = relu(mean_c α·A)`` (or Σ_c), ``cui = mean(M)``.

Unlike the public code it runs in eval mode by default (``train_mode=True`` gives the public
code's train-mode BatchNorm/Dropout; the caller then passes a model it does not mind changing,
since train-mode forwards update BN running statistics). It shares no mechanism with the
batched extractor (no taps, no module hooks, no clones): the tensor hook on an output later
modified by an in-place ReLU receives the gradient w.r.t. the pre-modification value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx

from isplit.nets import graph, models


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
    mg = models.model_graph(model, tuple(images.shape[2:]), images.shape[1])
    names = [p.name if isinstance(p, models.ProbePoint) else str(p) for p in points]
    index = {c.name: c.index for c in mg.cut_points}
    probed = [index[n] for n in names]
    last = max(probed)
    computed = [c.index for c in mg.cut_points if c.index <= last] if public_code_cost else probed
    nodes = {mg.cut_points[i].node: i for i in computed}
    heads = {i: graph.cut(mg, mg.cut_points[i].name)[0] for i in computed}
    model.train(train_mode)
    cuis = np.zeros((len(images), len(names)))
    preds = np.zeros(len(images), dtype=np.int64)
    all_alphas = []
    for n in range(len(images)):
        img = images[n : n + 1]
        grads: dict[int, torch.Tensor] = {}
        logits = _Hooked(mg.gm, nodes, grads).run(img)
        preds[n] = int(logits.argmax(1))
        t = int(labels[n]) if target == "label" else preds[n]
        model.zero_grad(set_to_none=True)
        logits[0, t].backward()

        alphas = []
        for ci in computed:
            if public_code_cost:  # records a graph, as get_filters does, then drops it
                a = heads[ci](img).detach()
            else:
                with torch.no_grad():
                    a = heads[ci](img)
            if ci not in grads or a.ndim != 4:
                continue
            g = grads[ci]
            alpha = g.mean(dim=(2, 3))  # 1×C
            weighted = alpha[:, :, None, None] * a
            cam = weighted.mean(1) if channel_reduce == "mean" else weighted.sum(1)
            if ci in probed:
                cuis[n, probed.index(ci)] = float(torch.relu(cam).mean())
                alphas.append(alpha[0].detach().clone())
        all_alphas.append(alphas)
    if return_alpha:
        return cuis, preds, all_alphas
    return cuis, preds


class _Hooked(fx.Interpreter):
    """The traced model run node by node, a tensor hook on each wanted node's output."""

    def __init__(self, gm, wanted: dict[str, int], grads: dict[int, torch.Tensor]):
        super().__init__(gm)
        self.wanted, self.grads = wanted, grads

    def run_node(self, node):
        out = super().run_node(node)
        i = self.wanted.get(node.name)
        if i is not None and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(_saver(self.grads, i))
        return out


def _saver(store: dict, i: int):
    def save(g):
        store[i] = g.detach().clone()

    return save
