"""Probe points as layers of the importance pass, and the traced model with a tap after each.

A tap (:class:`isplit.nets.graph.Tap`) is an identity placed in the traced graph right after a
probe point, so forward hooks on it see exactly the tensor a split there sends, whether the
point is a module's output or a function's in ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from isplit.nets import graph, models


@dataclass(frozen=True)
class ProbeLayer:
    index: int
    name: str
    label: str


def resolve_layers(model: nn.Module, layers: Sequence[models.ProbePoint | str]) -> list[ProbeLayer]:
    """``layers`` as (index, cut point name, tick label). A ProbePoint keeps its ``index`` (the
    x of the CUI curve, also for a sub-list); a plain name gets its position and its name as
    label. Whether each is a cut point of ``model`` is checked when the graph is tapped."""
    out = []
    for i, p in enumerate(layers):
        if isinstance(p, models.ProbePoint):
            out.append(ProbeLayer(p.index, p.name, p.label))
        else:
            out.append(ProbeLayer(i, str(p), str(p)))
    if len({la.name for la in out}) != len(out):
        raise ValueError("the same module is probed twice")
    if len({la.index for la in out}) != len(out):
        raise ValueError("two probe points share an index")
    if not out:
        raise ValueError("no probe layers given")
    return out


def tap_model(model: nn.Module, probes: Sequence[ProbeLayer], x: torch.Tensor):
    """``(graph module, name → tap, name → channel axis)``: ``model``'s graph, traced for
    inputs shaped like ``x``, with a tap after every probe point (sharing ``model``'s layers)."""
    try:
        mg = graph.analyse(model, tuple(x.shape[1:]), models.classifier_head(model)[0])
    except graph.GraphError as e:
        raise ValueError(str(e)) from e
    names = [la.name for la in probes]
    axes = {n: mg.point(n).channel_axis for n in names}
    gm, taps = graph.tapped(mg, names)
    return gm, taps, axes
