"""Classifiers, their split points and their saved form.

Every network is seen as a *chain*: an ordered list of ``(name, module)`` steps whose
composition is the model's forward pass. Names are keys of ``model.named_modules()`` where a
real module exists; the functional glue of a ``forward`` (global pooling, flatten) becomes a
small module with a name starting with ``_``. Probe points (the candidate split points of
I-SPLIT) are a subset of the chain's steps, so the activation at a probe point is exactly the
tensor a split after that step would transmit, and a split is ``chain[:k+1]`` / ``chain[k+1:]``.

Supported families (anything else raises ``UnsupportedModel`` naming the class): VGG, AlexNet,
ResNet/ResNeXt/Wide-ResNet, MobileNetV2, MobileNetV3, EfficientNet (v1, v2), ConvNeXt, RegNet,
ShuffleNetV2 — all as built by torchvision.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from isplit.io.files import replacing

#: the architectures the paper uses, plus the embedded default and a small ResNet
NAMED = ("vgg16", "resnet50", "mobilenet_v2", "resnet18")
VARIANTS = ("paper", "public-code")


class UnsupportedModel(ValueError):
    """Raised for a network whose chain / probe points cannot be derived."""


@dataclass(frozen=True)
class ProbePoint:
    index: int  # position along the probe list (the x axis of the CUI curve)
    name: str  # key of model.named_modules()
    label: str  # human-readable tick label
    chain_index: int  # position of this step in chain(model)
    shape: tuple[int, ...] = ()  # (C, H, W) at the described input size
    numel: int = 0
    bytes: int = 0  # float32 size of the activation of one image


class _GlobalAvgPool(nn.Module):
    """``adaptive_avg_pool2d(x, 1)`` as a module, for models that call it functionally."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, 1)


class _MeanHW(nn.Module):
    """``x.mean([2, 3])`` (ShuffleNetV2's pooling) as a module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean([2, 3])


# --------------------------------------------------------------------------- building


def build(name: str, num_classes: int, weights: str | Path | dict | None = None) -> nn.Module:
    """A torchvision classifier ``name`` with a fresh ``num_classes`` head.

    ``weights`` is ``None`` (random init), a state dict, or a path to one (loaded with
    ``weights_only=True``). The state dict is the *original* model's (e.g. ImageNet, 1000
    classes) and must match every key; only the final Linear layer is then replaced. Unlike the
    public I-SPLIT code, VGG's FC1/FC2 keep their pretrained weights.
    """
    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError as e:
        raise UnsupportedModel(f"unknown torchvision model {name!r}: {e}") from e
    chain(model)  # fail early, before any weight loading, if we cannot split it
    if weights is not None:
        state = load_state_dict(weights) if not isinstance(weights, dict) else weights
        src = weights if not isinstance(weights, dict) else "state dict"
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # same keys, other shapes
            raise ValueError(f"weights {src} do not fit {name}: {e}") from e
        if missing or unexpected:
            raise ValueError(
                f"weights {src} do not fit {name}: missing keys {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}"
            )
    head_name, head = classifier_head(model)
    if head.out_features != num_classes:
        _set_submodule(model, head_name, nn.Linear(head.in_features, num_classes))
    return model


def load_state_dict(path: str | Path) -> dict:
    """A state dict from a file that may come from outside: never unpickle arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"weights file {path} is not a loadable state dict: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    return obj


def classifier_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final Linear layer (the one a new task replaces)."""
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (n, m)
    if last is None:
        raise UnsupportedModel(f"{type(model).__name__} has no Linear classifier layer")
    return last


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def save_model(path: str | Path, model: nn.Module, meta: dict) -> None:
    """Save weights plus what is needed to rebuild the model (``meta['model']``, classes)."""
    with replacing(path) as tmp:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, tmp)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Inverse of :func:`save_model`."""
    obj = torch.load(path, map_location=map_location, weights_only=True)
    meta = obj["meta"]
    model = build(meta["model"], int(meta["num_classes"]))
    model.load_state_dict(obj["state_dict"])
    return model, meta


# --------------------------------------------------------------------------- chain


def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The forward pass of ``model`` as an ordered list of ``(name, module)`` steps."""
    tv = torchvision.models
    kids = dict(model.named_children())
    if isinstance(model, tv.ResNet):
        steps = [(n, kids[n]) for n in ("conv1", "bn1", "relu", "maxpool")]
        for layer in ("layer1", "layer2", "layer3", "layer4"):
            steps += [(f"{layer}.{i}", b) for i, b in enumerate(kids[layer])]
        return steps + [
            ("avgpool", kids["avgpool"]),
            ("_flatten", nn.Flatten(1)),
            ("fc", kids["fc"]),
        ]
    if isinstance(model, tv.RegNet):
        steps = [("stem", kids["stem"])]
        for sname, stage in model.trunk_output.named_children():
            steps += [(f"trunk_output.{sname}.{b}", m) for b, m in stage.named_children()]
        return steps + [
            ("avgpool", kids["avgpool"]),
            ("_flatten", nn.Flatten(1)),
            ("fc", kids["fc"]),
        ]
    if isinstance(model, tv.ShuffleNetV2):
        steps = [("conv1", kids["conv1"]), ("maxpool", kids["maxpool"])]
        for stage in ("stage2", "stage3", "stage4"):
            steps += [(f"{stage}.{i}", b) for i, b in enumerate(kids[stage])]
        return steps + [("conv5", kids["conv5"]), ("_pool", _MeanHW()), ("fc", kids["fc"])]
    if isinstance(model, (tv.VGG, tv.AlexNet)):
        # VGG and AlexNet: every layer of `features` is a step, so a split may fall after a ReLU
        steps = [(f"features.{i}", m) for i, m in enumerate(model.features)]
        return steps + [
            ("avgpool", kids["avgpool"]),
            ("_flatten", nn.Flatten(1)),
            ("classifier", kids["classifier"]),
        ]
    if isinstance(model, (tv.MobileNetV2, tv.MobileNetV3, tv.EfficientNet, tv.ConvNeXt)):
        steps = _block_steps("features", model.features)
        if isinstance(model, tv.MobileNetV2):
            return steps + [
                ("_pool", _GlobalAvgPool()),
                ("_flatten", nn.Flatten(1)),
                ("classifier", kids["classifier"]),
            ]
        if isinstance(model, tv.ConvNeXt):  # its classifier flattens by itself
            return steps + [("avgpool", kids["avgpool"]), ("classifier", kids["classifier"])]
        return steps + [
            ("avgpool", kids["avgpool"]),
            ("_flatten", nn.Flatten(1)),
            ("classifier", kids["classifier"]),
        ]
    raise UnsupportedModel(
        f"cannot derive split points for {type(model).__name__}: supported are VGG, AlexNet, "
        "ResNet, RegNet, ShuffleNetV2, MobileNetV2/V3, EfficientNet and ConvNeXt"
    )


def _block_steps(prefix: str, seq: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """Children of ``seq``; a plain Sequential made only of composite blocks (a stage) is
    opened into its blocks, so stages of EfficientNet/ConvNeXt give one point per block."""
    steps = []
    for n, m in seq.named_children():
        kids = list(m.children())
        if type(m) is nn.Sequential and kids and all(list(k.children()) for k in kids):
            steps += [(f"{prefix}.{n}.{b}", k) for b, k in m.named_children()]
        else:
            steps.append((f"{prefix}.{n}", m))
    return steps


def run_chain(steps: Sequence[tuple[str, nn.Module]], x: torch.Tensor) -> torch.Tensor:
    for _, m in steps:
        x = m(x)
    return x


# --------------------------------------------------------------------------- probe points


def probe_points(model: nn.Module, variant: str = "paper") -> list[ProbePoint]:
    """The ordered candidate split points of ``model`` (docs/methods.md §1.2).

    ``paper``: VGG16 the 13 post-ReLU conv outputs and 5 pools (18); ResNet the stem ReLU,
    maxpool and every residual block's output; MobileNetV2 each ``features`` block; other
    families each block. ``public-code`` reproduces the public I-SPLIT probe list where it
    differs: VGG's *pre*-ReLU conv outputs except block1_conv2, which is the ReLU after conv1_2
    (the skip-list bug), and ResNet's raw ``conv1`` output (before BN and ReLU).
    """
    if variant not in VARIANTS:
        raise ValueError(f"probe variant {variant!r} is not one of {VARIANTS}")
    tv = torchvision.models
    steps = chain(model)
    index = {n: i for i, (n, _) in enumerate(steps)}
    picked: list[tuple[str, str]] = []  # (name, label)
    if isinstance(model, (tv.VGG, tv.AlexNet)):
        picked = _vgg_points(model, variant)
    elif isinstance(model, tv.ResNet):
        first = ("conv1", "conv1") if variant == "public-code" else ("relu", "conv1")
        picked = [first, ("maxpool", "maxpool")]
        for n, m in steps:
            if n.startswith("layer"):
                layer, i = n.split(".")
                kind = type(m).__name__.lower()
                picked.append((n, f"{layer}_{kind}_{int(i) + 1}"))
    else:
        body = [n for n, _ in steps if not n.startswith("_") and n not in _tail_names(model)]
        picked = [(n, _short_label(n)) for n in body]
    return [
        ProbePoint(index=i, name=n, label=lab, chain_index=index[n])
        for i, (n, lab) in enumerate(picked)
    ]


def _tail_names(model: nn.Module) -> set[str]:
    """Steps after the last feature map (pooling, classifier): not split points, since the
    split after global pooling is the trivial 'all on device' case."""
    return {"avgpool", "classifier", "fc"}


def _short_label(name: str) -> str:
    if name.startswith("trunk_output."):  # RegNet blocks are already named "block2-1"
        return name.rsplit(".", 1)[-1]
    short = re.sub(r"^features\.", "", name).replace(".", "_")
    return f"f{short}" if short[:1].isdigit() else short


def _vgg_points(model: nn.Module, variant: str) -> list[tuple[str, str]]:
    feats = list(model.features)
    out: list[tuple[str, str]] = []
    block, conv = 1, 0
    for i, m in enumerate(feats):
        if isinstance(m, nn.Conv2d):
            conv += 1
            label = f"block{block}_conv{conv}"
            if variant == "public-code" and not (block == 1 and conv == 2):
                out.append((f"features.{i}", label))
            else:
                # the activation after this conv's ReLU (past any BatchNorm)
                j = next(k for k in range(i + 1, len(feats)) if isinstance(feats[k], nn.ReLU))
                out.append((f"features.{j}", label))
        elif isinstance(m, nn.MaxPool2d):
            out.append((f"features.{i}", f"block{block}_pool"))
            block, conv = block + 1, 0
    return out


@torch.no_grad()
def describe(
    model: nn.Module,
    points: Sequence[ProbePoint] | None = None,
    input_size: int | tuple[int, int] = 224,
    in_channels: int = 3,
) -> list[ProbePoint]:
    """``points`` (default: the paper's) with each activation's shape and float32 bytes for
    one image of ``input_size``, measured with a forward pass in eval mode."""
    points = list(points) if points is not None else probe_points(model)
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    steps = chain(model)
    wanted = {p.chain_index for p in points}
    shapes: dict[int, tuple[int, ...]] = {}
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_channels, *hw)
        for i, (_, m) in enumerate(steps[: max(wanted) + 1]):
            x = m(x)
            if i in wanted:
                shapes[i] = tuple(x.shape[1:])
    finally:
        model.train(was_training)
    out = []
    for p in points:
        shape = shapes[p.chain_index]
        numel = 1
        for s in shape:
            numel *= s
        out.append(ProbePoint(p.index, p.name, p.label, p.chain_index, shape, numel, 4 * numel))
    return out
