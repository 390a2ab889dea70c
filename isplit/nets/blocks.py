"""Blocks, names and default probe points of a traced classifier's cut points.

The module tree is *opened* from the root through containers: a ModuleList, a Sequential (or a
subclass without its own forward) that holds composite modules or an activation or pooling
layer before its last one, and a module with its own forward that runs a stage of two or more
blocks (ViT's encoder) and has cut points inside. The children of opened modules, and the
functional ops an opened module's forward runs itself, are *blocks*. A cut point a block returns
is named by the block's module path (``layer1.0``, ``features.3``), a functional one by its
module's path and the op (``flatten``, ``encoder.add``); other cut points (inside a block
without a skip connection) by the outermost module call that returns them.

The default probe points (:func:`isplit.nets.models.probe_points`) are the block cut points
before the classifier tail (global pooling, flatten, a token selected, a 2-D activation, or the
classifier layer itself), leaving out blocks that only move or copy data (dropout, identity,
reshapes) and a single linear, normalisation or merge op whose only consumer is an activation
or normalisation right after it (VGG's conv before its ReLU): its successor stands for it. On
the 56 torchvision models of the nine families isplit cut by hand before, these are exactly the
probe points it used (tests/unit/data/main_probe_points.json).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

ACT = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
       nn.LeakyReLU, nn.ELU, nn.Mish, nn.PReLU, nn.SELU, nn.Softplus)  # fmt: skip
POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
GPOOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)  # fmt: skip
NORM = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
NOOP = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
FUNC_KINDS = {
    "act": {"relu", "relu_", "relu6", "gelu", "silu", "hardswish", "hardsigmoid", "sigmoid",
            "tanh", "leaky_relu", "elu", "mish", "softplus"},
    "pool": {"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "max_pool3d"},
    "gpool": {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"},
    "norm": {"batch_norm", "layer_norm", "group_norm", "normalize"},
    "linear": {"conv1d", "conv2d", "linear"},
    "merge": {"add", "iadd", "sub", "mul", "imul", "cat", "concat", "matmul"},
    "flatten": {"flatten"},
    "noop": {"dropout", "contiguous", "clone", "to", "float", "type_as"},
    "shape": {"reshape", "view", "permute", "transpose", "unsqueeze", "squeeze", "expand"},
}  # fmt: skip
# a block of this kind whose only consumer is the next block, of a kind in ABSORBERS, is
# represented by that next block (a conv and its ReLU are one probe point, as in the paper)
ABSORBED, ABSORBERS = {"linear", "norm", "merge"}, {"act", "norm"}
NOT_PROBES = {"noop", "shape", "flatten", "select"}
# global pooling to a fixed size starts the classifier tail even when its output is still 4-D
TAIL_KINDS = {"gpool"}


@dataclass(frozen=True)
class CutPoint:
    index: int  # position among the cut points
    name: str  # module path (or module path + op); the split's ``layer``
    node: str  # the fx node
    kind: str  # block, act, pool, linear, norm, merge, ... (what produces it)
    block: bool  # the output of a block (see the module docstring)
    probe: bool  # in the default probe set
    flops: int  # FLOPs of the head up to and including this point, one image
    layers: int  # convolutions and linear layers in that head
    shape: tuple[int, ...]  # activation of one image
    channel_axis: int  # axis of ``shape`` that holds channels (0 for NCHW, -1 for tokens)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def bytes(self) -> int:
        return 4 * self.numel


def kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        m = modules[node.target]
        for kind, types in (("gpool", GPOOL), ("pool", POOL), ("act", ACT), ("norm", NORM),
                            ("linear", LINEAR), ("noop", NOOP)):  # fmt: skip
            if isinstance(m, types):
                return kind
        if isinstance(m, nn.Flatten):
            return "flatten"
        if type(m).__name__ in ("Permute", "Flatten", "Reshape"):
            return "shape"
        return "noop" if type(m).__name__ in ("StochasticDepth", "DropPath") else "module"
    if node.op in ("call_function", "call_method"):
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if name == "getitem":
            return "select"
        for kind, names in FUNC_KINDS.items():
            if name in names:
                return kind
    return "op"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", node.name).strip("_") or node.name


def _owner(node: fx.Node) -> str:
    """Path of the innermost module whose forward created ``node`` ('' for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _sequential_forward(m: nn.Module) -> bool:
    return type(m).forward is nn.Sequential.forward


def _own_forward(m: nn.Module) -> bool:
    return type(m).forward not in (nn.Sequential.forward, nn.Module.forward)


def _composite(m: nn.Module) -> bool:
    return next(m.children(), None) is not None


def _opens(m: nn.Module) -> bool:
    if not _own_forward(m) and not _sequential_forward(m):
        return True  # ModuleList / ModuleDict: a container the parent's forward iterates
    kids = list(m.children())
    if _sequential_forward(m):
        return any(_composite(k) for k in kids) or any(
            isinstance(k, ACT + POOL + GPOOL) for k in kids[:-1]
        )
    for k in kids:  # a forward that runs a stage of blocks (ViT's encoder.layers)
        if (
            not _own_forward(k)
            and len([b for b in k.children() if _own_forward(b) and _composite(b)]) >= 2
        ):
            return True
    return False


def _opened(model: nn.Module, closed: set[str]) -> set[str]:
    out = {""}

    def visit(path: str, m: nn.Module):
        for name, child in m.named_children():
            p = f"{path}.{name}" if path else name
            if p not in closed and _opens(child):
                out.add(p)
                visit(p, child)

    visit("", model)
    return out


def channel_axis(node, shape, modules, preds) -> int:
    """0 when the nearest upstream conv/norm/linear says channels come first, len-1 when they
    come last (tokens N×L×D, Swin's N×H×W×C)."""
    seen, frontier = set(), [node]
    while frontier:
        n = frontier.pop(0)
        if n in seen:
            continue
        seen.add(n)
        m = modules.get(n.target) if n.op == "call_module" else None
        c, first = None, True
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            c = m.out_channels
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            c = m.num_features
        elif isinstance(m, nn.GroupNorm):
            c = m.num_channels
        elif isinstance(m, nn.Linear):
            c, first = m.out_features, False
        elif isinstance(m, nn.LayerNorm):
            c, first = m.normalized_shape[-1], False
        if c is not None and shape:
            if shape[0] == c and (first or shape[-1] != c):
                return 0
            if shape[-1] == c:
                return len(shape) - 1
            return 0
        frontier += preds.get(n, [])
    return 0


def name_points(model, gm, returns, chain, shapes, preds, cum, classifier) -> list[CutPoint]:
    """The cut points ``chain`` (fx nodes, in order) named, with their kind, block and probe
    flags. ``returns``: node → module paths whose call returned it (innermost first);
    ``shapes``: node → tensor shape; ``preds``: node → its tensor inputs; ``cum``: node →
    (FLOPs, weight layers) of everything before it; ``classifier``: the classifier's path."""
    modules = dict(gm.named_modules())
    owners = {}
    counts: dict[tuple[str, str], int] = {}
    for n in gm.graph.nodes:  # functional names, numbered per module in graph order
        if n.op in ("call_function", "call_method"):
            owner, op = _owner(n), _op_name(n)
            k = counts.get((owner, op), 0)
            counts[(owner, op)] = k + 1
            owners[n] = (owner, f"{owner}.{op}".lstrip(".") + (f"_{k}" if k else ""))
    model_modules = dict(model.named_modules())
    closed: set[str] = set()
    while True:
        opened = _opened(model, closed)
        named = []
        for n in chain:
            calls = list(reversed(returns.get(n, [])))  # outermost first
            block = next((c for c in calls if _parent(c) in opened and c not in opened), None)
            if block is None and n in owners and owners[n][0] in opened:
                block = owners[n][1]
                name, is_block = block, True
            elif block is not None:
                name, is_block = block, True
            else:
                name, is_block = (calls[0] if calls else owners.get(n, ("", n.name))[1]), False
            named.append((n, name, is_block))
        empty = [
            o for o in opened - {""}
            if _own_forward(model_modules[o])
            and not any(
                b and nm.startswith(o + ".") and o not in returns.get(n, [])
                for n, nm, b in named
            )
        ]  # fmt: skip
        if not empty:
            break
        closed.update(empty)
    kinds = []
    for n, name, _ in named:
        m = model_modules.get(name)
        kinds.append("block" if m is not None and _composite(m) else kind(n, modules))
    tail = len(named)
    for i, (n, name, _) in enumerate(named):
        shape = shapes[n]
        in_clf = classifier and (classifier == name or classifier.startswith(name + "."))
        if kinds[i] in TAIL_KINDS or len(shape) <= 2 or in_clf:
            tail = i
            break
    blocks = [i for i, (_, _, b) in enumerate(named) if b]
    points = []
    for i, (n, name, is_block) in enumerate(named):
        probe = is_block and i < tail and kinds[i] not in NOT_PROBES
        nxt = next((j for j in blocks if j > i), None)
        if probe and kinds[i] in ABSORBED and nxt is not None and kinds[nxt] in ABSORBERS:
            users = [u for u in n.users if u in preds and n in preds[u]]
            probe = users != [named[nxt][0]]
        shape = shapes[n][1:]
        points.append(
            CutPoint(
                index=i,
                name=name,
                node=n.name,
                kind=kinds[i],
                block=is_block,
                probe=probe,
                flops=cum[n][0],
                layers=cum[n][1],
                shape=shape,
                channel_axis=channel_axis(n, shape, modules, preds),
            )
        )
    return points
