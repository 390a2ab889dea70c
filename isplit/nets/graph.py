"""Cut points of any classifier, found in its traced graph (torch.fx); halves cut from it.

A *cut point* is a tensor that carries everything the rest of the network needs: in the
data-flow graph from the image to the logits it dominates the output (every path from the input
to the output passes through it), so a split there sends one tensor. A residual block's skip
connection carries a second tensor past every layer inside the block, so cut points fall
between residual blocks, never inside one. Besides that tensor the tail may read only sizes
from the head: the batch size (read again from the cut tensor) and the others, which are
constants at the configured input size.

How: :class:`Tracer` traces the model in eval mode (modules without children are leaves, so
Dropout or StochasticDepth keep their train/eval switch); one run on a zero image of the
configured size records each node's value (tensors vs sizes), shape and FLOPs; the output's
dominators come from Cooper, Harvey and Kennedy's iterative algorithm ("A simple, fast
dominance algorithm", 2001) in topological order.

Which cut points are named how, and which are probed by default: :mod:`isplit.nets.blocks`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from isplit.nets import aliases, blocks
from isplit.nets.blocks import CutPoint


class GraphError(ValueError):
    """The model cannot be traced, or has no usable cut point; the message names the node."""


class Tracer(fx.Tracer):
    """fx tracing where every module without children is a leaf (plus ``leaf_types``), and
    each module call's output is remembered (``returns``: node → paths, innermost first)."""

    def __init__(self, leaf_types: Sequence[type] = (), autowrap_functions: Sequence = ()):
        super().__init__(autowrap_functions=tuple(autowrap_functions), param_shapes_constant=True)
        self.leaf_types = tuple(leaf_types)
        self.returns: dict[fx.Node, list[str]] = {}
        self.where: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) and len(m):
            return False
        return (
            isinstance(m, self.leaf_types)
            or next(m.children(), None) is None
            or super().is_leaf_module(m, qualname)
        )

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        self.where.append(f"{path!r} ({type(m).__name__})")
        try:
            out = super().call_module(m, forward, args, kwargs)
        except GraphError:
            raise
        except Exception as e:
            last = next(iter(reversed(self.graph.nodes)), None)
            raise GraphError(
                f"cannot trace {type(self.root).__name__} with torch.fx: in module {self.where[-1]}"
                f" after node {getattr(last, 'name', None)!r}: {type(e).__name__}: {e}"
            ) from e
        finally:
            self.where.pop()
        if isinstance(out, fx.Proxy):
            self.returns.setdefault(out.node, []).append(path)
        return out


def _timm_notrace() -> tuple[list, list]:
    try:
        from timm.layers import _fx
    except ImportError:
        return [], []
    return list(_fx.get_notrace_modules()), [f for f in _fx.get_notrace_functions() if callable(f)]


def trace(model: nn.Module) -> tuple[fx.GraphModule, Tracer]:
    """``model`` traced in eval mode (its training flag restored)."""
    leaves, funcs = _timm_notrace() if type(model).__module__.startswith("timm") else ([], [])
    tracer = Tracer(leaves, funcs)
    was = model.training
    model.eval()
    try:
        graph = tracer.trace(model)
    except GraphError:
        raise
    except Exception as e:
        last = next(iter(reversed(tracer.graph.nodes)), None) if tracer.graph else None
        raise GraphError(
            f"cannot trace {type(model).__name__} with torch.fx: in its own forward after node "
            f"{getattr(last, 'name', None)!r}: {type(e).__name__}: {e}"
        ) from e
    finally:
        model.train(was)
    return fx.GraphModule(model, graph, class_name=type(model).__name__), tracer


# --------------------------------------------------------------------------- the run


def _is_tensorish(v) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (list, tuple)):
        return any(_is_tensorish(x) for x in v)
    if isinstance(v, dict):
        return any(_is_tensorish(x) for x in v.values())
    return False


class _Run(fx.Interpreter):
    """One forward pass that keeps each node's shape (tensors) or value (sizes) and FLOPs."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.tensor: dict[fx.Node, bool] = {}
        self.shape: dict[fx.Node, tuple] = {}
        self.value: dict[fx.Node, object] = {}
        self.flops: dict[fx.Node, int] = {}
        self.counter = FlopCounterMode(display=False)

    def run_node(self, n):
        before = self.counter.get_total_flops()
        out = super().run_node(n)
        self.flops[n] = int(self.counter.get_total_flops() - before)
        self.tensor[n] = _is_tensorish(out)
        if isinstance(out, torch.Tensor):
            self.shape[n] = tuple(out.shape)
        elif not self.tensor[n]:
            self.value[n] = out
        return out


def _input_of(gm: fx.GraphModule) -> fx.Node:
    ph = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not ph:
        raise GraphError("the traced model takes no input")
    return ph[0]


# --------------------------------------------------------------------------- analysis


def _dominators(order: list[fx.Node], preds: dict[fx.Node, list[fx.Node]], src: fx.Node):
    pos = {n: i for i, n in enumerate(order)}
    idom: dict[fx.Node, fx.Node] = {src: src}
    for n in order:
        if n is src:
            continue
        ps = [p for p in preds[n] if p in idom]
        if not ps:
            continue
        d = ps[0]
        for p in ps[1:]:
            a, b = d, p
            while a is not b:
                while pos[a] > pos[b]:
                    a = idom[a]
                while pos[b] > pos[a]:
                    b = idom[b]
            d = a
        idom[n] = d
    return idom


@dataclass
class ModelGraph:
    """A traced model, its cut points and what cutting it needs."""

    gm: fx.GraphModule
    cut_points: list[CutPoint]
    classifier: str  # module path of the classifier layer (for messages)
    meta_values: dict  # node -> value of the sizes the tail may read
    batch_nodes: set  # the size nodes that are the batch size

    def point(self, name: str) -> CutPoint:
        for p in self.cut_points:
            if p.name == name:
                return p
        raise ValueError(
            f"{name!r} is not a cut point of {type(self.gm).__name__}; cut points: "
            + ", ".join(p.name for p in self.cut_points)
        )

    def node(self, name: str) -> fx.Node:
        target = self.point(name).node
        return next(n for n in self.gm.graph.nodes if n.name == target)


def analyse(model: nn.Module, input_shape: Sequence[int], classifier: str = "") -> ModelGraph:
    """Trace ``model``, run it on one zero image of ``input_shape`` (C, H, W) and find its cut
    points (on the device of its parameters; a model on the meta device costs no compute)."""
    gm, tracer = trace(model)
    modules = dict(gm.named_modules())
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x = torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu", dtype=dtype)
    run = _Run(gm)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), run.counter:
            run.run(x)
    except Exception as e:
        raise GraphError(
            f"{type(model).__name__} fails on a {tuple(input_shape)} input: {type(e).__name__}: {e}"
        ) from e
    finally:
        model.train(was)
    order = list(gm.graph.nodes)
    src = _input_of(gm)
    out = next(n for n in order if n.op == "output")
    data = {src}
    for n in order:
        if n is not src and run.tensor.get(n) and any(a in data for a in n.all_input_nodes):
            data.add(n)
    preds = {n: [a for a in n.all_input_nodes if a in data] for n in order}
    preds[out] = [a for a in out.all_input_nodes if a in data]
    idom = _dominators(order, preds, src)
    if out not in idom:
        raise GraphError(f"the output of {type(model).__name__} does not depend on its input")
    chain, n = [], idom[out]
    while n is not src:
        chain.append(n)
        n = idom[n]
    chain = [c for c in reversed(chain[1:]) if isinstance(run.shape.get(c), tuple)]
    # cumulative cost over the nodes the output depends on
    needed = _ancestors(out)
    flops, layers, cum = 0, 0, {}
    for n in order:
        if n in needed and n in data:
            flops += run.flops.get(n, 0)
            layers += blocks.kind(n, modules) == "linear"
        cum[n] = (flops, layers)
    points = blocks.name_points(model, gm, tracer.returns, chain, run.shape, preds, cum, classifier)
    batch = {n for n in run.value if _is_batch_size(n, data)}
    return ModelGraph(gm, points, classifier, dict(run.value), batch)


def _is_batch_size(n: fx.Node, data: set) -> bool:
    """``x.shape[0]``, ``x.size(0)`` or ``x.size()[0]`` of a tensor of the network."""
    if n.op == "call_method" and n.target == "size" and n.args and n.args[0] in data:
        return (n.args[1:] or [n.kwargs.get("dim")])[0] == 0
    if n.op == "call_function" and n.target is operator.getitem and n.args[1] == 0:
        src = n.args[0]
        if isinstance(src, fx.Node) and src.args and src.args[0] in data:
            return (src.op == "call_function" and src.target is getattr
                    and src.args[1] == "shape") or (src.op == "call_method"
                                                     and src.target == "size"
                                                     and len(src.args) == 1)  # fmt: skip
    return False


# --------------------------------------------------------------------------- cutting


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack += n.all_input_nodes
    return seen


def cut(mg: ModelGraph, name: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``(head, tail)`` at cut point ``name``: ``tail(head(x)) == model(x)``. Both share their
    modules and parameters with the model (no copy)."""
    v = mg.node(name)
    order = list(mg.gm.graph.nodes)
    out = next(n for n in order if n.op == "output")
    head_nodes = _ancestors(v)
    head = fx.Graph()
    env: dict[fx.Node, object] = {}
    for n in order:
        if n in head_nodes:
            env[n] = head.node_copy(n, env.__getitem__)
    head.output(env[v])

    tail = fx.Graph()
    cut_in = tail.placeholder("activation")
    tenv: dict[fx.Node, object] = {v: cut_in}

    before = head_nodes - {v}

    def size_from_head(n: fx.Node):
        # a size the head computed: the batch size again (from the cut tensor), else a constant
        if n in mg.batch_nodes:
            return tail.call_method("size", (cut_in, 0))
        return mg.meta_values[n]

    def arg(n: fx.Node):
        if n not in tenv:
            if n in mg.meta_values and (n in before or _ancestors(n) & before):
                tenv[n] = size_from_head(n)
            elif n in before and n.op in ("placeholder",):
                raise GraphError(f"{name!r} is not a cut point: the tail reads {n.name!r} too")
            else:  # the cut's own sizes, the tail's nodes, values the input does not flow into
                tenv[n] = tail.node_copy(n, arg)
        return tenv[n]

    live = _ancestors(out)
    for n in order:
        if n in live and n not in head_nodes and n is not out:
            arg(n)
    tail.output(fx.node.map_arg(out.args[0], arg))
    return (
        fx.GraphModule(mg.gm, head, class_name="Head"),
        fx.GraphModule(mg.gm, tail, class_name="Tail"),
    )


class Tap(nn.Module):
    """An identity in the graph right after a probe point, for forward hooks to attach to.

    ``overwritten``: whether an op later in the graph may write into the tensor's storage (set
    by :func:`tapped`); a hook that keeps the tensor must then keep a copy."""

    overwritten = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def tapped(mg: ModelGraph, names: Sequence[str]) -> tuple[fx.GraphModule, dict[str, nn.Module]]:
    """The model with a :class:`Tap` after each named cut point: ``(module, name → tap)``.
    The module shares every layer with the model; hooks on a tap see exactly the tensor a
    split at that point sends."""
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(mg.gm.graph, val_map))
    nodes = {old.name: new for old, new in val_map.items()}
    gm = fx.GraphModule(mg.gm, graph, class_name=type(mg.gm).__name__)
    taps, tap_nodes = {}, []
    for i, name in enumerate(names):
        node = nodes[mg.point(name).node]
        tap_name = f"isplit_tap_{i}"
        taps[name] = Tap()
        gm.add_submodule(tap_name, taps[name])
        with graph.inserting_after(node):
            t = graph.call_module(tap_name, (node,))
        node.replace_all_uses_with(t, delete_user_cb=lambda u, t=t: u is not t)
        tap_nodes.append(t)
    gm.recompile()
    written = aliases.overwritten_after(gm, tap_nodes, views=(Tap,))
    for name, w in zip(names, written, strict=True):
        taps[name].overwritten = w
    return gm, taps
