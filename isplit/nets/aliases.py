"""Which ops of a traced graph may write into a tensor's storage after it was computed.

A hook that keeps a tensor from the forward pass (the importance pass's probes) must keep a
copy where a later in-place op (``ReLU(inplace=True)``, ``x.add_(...)``, ``F.relu(x, True)``)
writes into it, into a view of it, or into the tensor it is itself an in-place result of; and
need not copy anywhere else. Unknown leaf modules count as writers.
"""

from __future__ import annotations

import inspect
import operator

import torch
from torch import fx, nn

# Ops whose output may share the storage of their first input. Treating a copy as a view is
# safe (a needless copy later); the reverse would let an in-place op change a kept tensor.
_VIEW_METHODS = frozenset(
    "view view_as reshape reshape_as flatten unflatten transpose permute squeeze unsqueeze "
    "expand expand_as narrow select chunk split unbind t contiguous detach movedim swapaxes "
    "as_strided to type type_as float __getitem__".split()
)
_VIEW_FUNCTIONS = frozenset(
    [torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.squeeze]
    + [torch.unsqueeze, torch.chunk, torch.split, torch.narrow, torch.select, torch.unbind]
    + [torch.t, torch.movedim, torch.detach, operator.getitem]
)
_VIEW_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity)
_INPLACE_OPERATORS = frozenset(
    [operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.setitem]
)


def _in_place(n: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``n`` is known to write into its first input (and return it)."""
    if n.op == "call_module":
        return bool(getattr(modules[n.target], "inplace", False))
    name = n.target if n.op == "call_method" else getattr(n.target, "__name__", "")
    if n.op not in ("call_method", "call_function") or not isinstance(name, str):
        return False
    trailing = name.endswith("_") and not name.startswith("__")
    return trailing or n.target in _INPLACE_OPERATORS or _inplace_flag(n)


def _inplace_flag(n: fx.Node) -> bool:
    """An ``inplace=True`` argument, by name or by position (``F.relu(x, True)``)."""
    if n.kwargs.get("inplace") is True:
        return True
    if n.op != "call_function":
        return False
    try:
        bound = inspect.signature(n.target).bind(*n.args, **n.kwargs)
    except (TypeError, ValueError):  # builtins without a signature take no inplace flag
        return False
    return bound.arguments.get("inplace") is True


def _aliases(n: fx.Node, modules: dict[str, nn.Module], views: tuple[type, ...]) -> bool:
    """Whether ``n``'s output may share storage with its first input."""
    if n.op == "call_module":
        return isinstance(modules[n.target], _VIEW_MODULES + views) or _in_place(n, modules)
    if n.op == "call_method":
        return n.target in _VIEW_METHODS or _in_place(n, modules)
    return n.op == "call_function" and (n.target in _VIEW_FUNCTIONS or _in_place(n, modules))


def _may_write(n: fx.Node, into: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``n`` may write into its input ``into``: a known in-place op on it, or a leaf
    module from outside torch.nn (whose body the trace does not see)."""
    if n.op == "call_module" and not type(modules[n.target]).__module__.startswith("torch.nn"):
        return True
    return _in_place(n, modules) and bool(n.args) and n.args[0] is into


def overwritten_after(
    gm: fx.GraphModule, nodes: list[fx.Node], views: tuple[type, ...] = ()
) -> list[bool]:
    """For each of ``nodes``: whether an op after it may write into the storage its value lives
    in: the value itself, a view of it, or the tensor it is an in-place result or a view of.
    ``views``: more module types that return their input (identities of the caller's)."""
    modules = dict(gm.named_modules())
    order = {n: i for i, n in enumerate(gm.graph.nodes)}

    def written(node: fx.Node) -> bool:
        base = node
        while _aliases(base, modules, views) and base.args and isinstance(base.args[0], fx.Node):
            base = base.args[0]
        todo, seen = [base], {base}
        while todo:
            n = todo.pop()
            for u in n.users:
                if order[u] > order[node] and _may_write(u, n, modules):
                    return True
                if u not in seen and _aliases(u, modules, views) and u.args and u.args[0] is n:
                    seen.add(u)
                    todo.append(u)
        return False

    return [written(n) for n in nodes]
