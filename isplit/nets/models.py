"""Classifiers from any of the three spellings, their probe points and their saved form.

:func:`build` turns an experiment's ``model`` (:mod:`isplit.nets.catalog`: a torchvision name,
``timm:<name>`` or ``python:<file.py>:<callable>``) into an ``nn.Module`` with a
``num_classes`` classifier. Its split points come from its traced graph
(:mod:`isplit.nets.graph`): :func:`cut_points` lists every point where one tensor carries
everything the rest needs, and :func:`probe_points` the default subset I-SPLIT probes (one per
block). The torchvision models the paper uses keep the paper's tick labels and the public
code's probe list (``variant="public-code"``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from isplit.io.files import replacing
from isplit.nets import catalog, graph

#: the architectures the paper uses, plus the embedded default and a small ResNet
NAMED = ("vgg16", "resnet50", "mobilenet_v2", "resnet18")
VARIANTS = ("paper", "public-code")
DEFAULT_SIZE = 224


class UnsupportedModel(ValueError):
    """Raised for a model that cannot be built, or whose split points cannot be derived."""


@dataclass(frozen=True)
class ProbePoint:
    index: int  # position along the probe list (the x axis of the CUI curve)
    name: str  # cut point name: a module path, or a module path and an op
    label: str  # human-readable tick label
    cut_index: int  # position among the model's cut points
    shape: tuple[int, ...] = ()  # activation of one image at the described input size
    numel: int = 0
    bytes: int = 0  # float32 size of the activation of one image
    channel_axis: int = 0  # axis of ``shape`` holding channels (-1: tokens, N×L×D)


# --------------------------------------------------------------------------- building


@contextlib.contextmanager
def meta_init():
    """Build modules with their parameters and buffers on the meta device: no memory, no
    initialisation cost, so the structure of ViT-H or RegNetY-128GF is known in a second
    (a builder's own arithmetic on ordinary tensors still runs)."""
    reg_p, reg_b = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), param.requires_grad)
        reg_p(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        reg_b(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = reg_p, reg_b


def _torchvision(name: str, image_size: int | None) -> nn.Module:
    kwargs: dict = {}
    # the models whose constructor fixes the input size (a position embedding, windows)
    if image_size and name.startswith("vit_"):
        kwargs["image_size"] = int(image_size)
    elif image_size and name.startswith("maxvit_"):
        kwargs["input_size"] = (int(image_size), int(image_size))
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True
    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as e:
        raise UnsupportedModel(f"unknown torchvision model {name!r}: {e}") from e
    # the auxiliary classifiers only exist in train mode; the split is of the eval network
    for aux in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, aux, None) is not None:
            setattr(model, aux, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
    return model


def _import_callable(spec: str):
    file, func = catalog.python_parts(spec)
    path = Path(file)
    if not path.is_file():
        raise UnsupportedModel(f"python model file {file!r} does not exist")
    mod_name = "isplit_user_" + re.sub(r"\W", "_", str(path.resolve()))
    if mod_name not in sys.modules:
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            raise UnsupportedModel(
                f"importing python model file {file} failed: {type(e).__name__}: {e}"
            ) from e
        sys.modules[mod_name] = module
    fn = getattr(sys.modules[mod_name], func, None)
    if not callable(fn):
        raise UnsupportedModel(f"{file} has no callable {func!r}")
    return fn


def create(spec: str, num_classes: int | None = None, image_size: int | None = None):
    """The architecture ``spec`` names, as its source builds it: ``(model, adapted)``, where
    ``adapted`` says it already has ``num_classes`` outputs (a ``python:`` callable that takes
    ``num_classes``)."""
    k = catalog.kind(spec)
    if k == "torchvision":
        return _torchvision(spec, image_size), False
    if k == "timm":
        try:
            import timm
        except ImportError as e:
            raise UnsupportedModel(f"{spec!r} needs timm: pip install 'isplit[timm]'") from e
        kwargs = {"img_size": int(image_size)} if image_size else {}
        try:
            return timm.create_model(spec[5:], pretrained=False, **kwargs), False
        except TypeError:  # a convolutional timm model takes no img_size
            return timm.create_model(spec[5:], pretrained=False), False
        except RuntimeError as e:
            raise UnsupportedModel(f"timm has no model {spec[5:]!r}: {e}") from e
    fn = _import_callable(spec)
    params = inspect.signature(fn).parameters
    takes = "num_classes" in params and num_classes is not None
    try:
        model = fn(num_classes=int(num_classes)) if takes else fn()
    except Exception as e:
        raise UnsupportedModel(f"{spec} raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise UnsupportedModel(f"{spec} returned {type(model).__name__}, not a torch nn.Module")
    return model, takes


def build(
    name: str,
    num_classes: int,
    weights: str | Path | dict | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """The classifier ``name`` (any of :mod:`isplit.nets.catalog`'s spellings) with a
    ``num_classes`` head.

    ``weights`` is ``None`` (random init), a state dict, or a path to one (loaded with
    ``weights_only=True``). The state dict is the model's as its source builds it (e.g.
    ImageNet, 1000 classes) and must match every key; only the classifier layer is then
    replaced. ``image_size`` builds the models whose constructor fixes it (ViT, MaxViT, timm).
    """
    model, adapted = create(name, num_classes, image_size)
    if weights is not None:
        load_weights(model, weights, name)
    if not adapted:
        set_classes(model, num_classes)
    return model


def load_weights(model: nn.Module, weights: str | Path | dict, name: str) -> None:
    """Load a state dict (or a file of one) into ``model``, every key matching: a mismatch
    lists the missing and unexpected keys."""
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


def set_classes(model: nn.Module, num_classes: int) -> None:
    """Replace the classifier layer unless it already has ``num_classes`` outputs."""
    name, layer = classifier_head(model)
    if isinstance(layer, nn.Linear) and layer.out_features != num_classes:
        _set_submodule(model, name, nn.Linear(layer.in_features, num_classes))
    elif isinstance(layer, nn.Conv2d) and layer.out_channels != num_classes:
        new = nn.Conv2d(layer.in_channels, num_classes, layer.kernel_size, layer.stride,
                        layer.padding)  # fmt: skip
        _set_submodule(model, name, new)


def load_state_dict(path: str | Path) -> dict:
    """A state dict from a file that may come from outside: never unpickle arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        if "GLOBAL" in str(e) or "Unsupported global" in str(e):
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise ValueError(
                f"weights file {path} holds a pickled object "
                f"({found[1] if found else 'not plain tensors'}), not a state dict: save "
                "model.state_dict() with torch.save instead of the whole model"
            ) from e
        raise ValueError(f"weights file {path} is not a loadable state dict: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    return obj


def classifier_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer a new task replaces: the last Linear layer, or, in a network without one
    (SqueezeNet), the last convolution."""
    last = lastconv = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (n, m)
        elif isinstance(m, nn.Conv2d):
            lastconv = (n, m)
    if last is None and lastconv is None:
        raise UnsupportedModel(f"{type(model).__name__} has no Linear or Conv2d classifier layer")
    return last or lastconv


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
    size = (meta.get("input") or {}).get("image_size")
    model = build(meta["model"], int(meta["num_classes"]), image_size=size)
    model.load_state_dict(obj["state_dict"])
    return model, meta


# --------------------------------------------------------------------------- split points


def model_graph(model: nn.Module, input_size: int | tuple[int, int] = DEFAULT_SIZE,
                in_channels: int = 3) -> graph.ModelGraph:  # fmt: skip
    """``model``'s traced graph and cut points for an input of ``input_size``."""
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    head_name, _ = classifier_head(model)
    try:
        mg = graph.analyse(model, (in_channels, *hw), head_name)
    except graph.GraphError as e:
        raise UnsupportedModel(str(e)) from e
    if not any(p.probe for p in mg.cut_points):
        found = ", ".join(p.name for p in mg.cut_points) or "none"
        raise UnsupportedModel(
            f"{type(model).__name__} has no usable cut point before its classifier "
            f"{head_name!r} (cut points: {found}): no single tensor carries everything the "
            "network needs between its blocks"
        )
    return mg


def cut_points(model: nn.Module, input_size: int | tuple[int, int] = DEFAULT_SIZE):
    """Every cut point of ``model`` (:class:`isplit.nets.graph.CutPoint`), in order."""
    return model_graph(model, input_size).cut_points


def probe_points(
    model: nn.Module, variant: str = "paper", input_size: int | tuple[int, int] = DEFAULT_SIZE
) -> list[ProbePoint]:
    """The ordered candidate split points of ``model`` (docs/methods.md §1.2), described at
    ``input_size``.

    ``paper``: the block cut points (:mod:`isplit.nets.graph`): VGG16's 13 post-ReLU conv
    outputs and 5 pools (18); ResNet's stem ReLU, maxpool and every residual block;
    MobileNetV2's ``features`` blocks. ``public-code`` reproduces the public I-SPLIT probe list
    where it differs: VGG's *pre*-ReLU conv outputs except block1_conv2, which is the ReLU
    after conv1_2 (the skip-list bug), and ResNet's raw ``conv1`` output (before BN and ReLU).
    """
    if variant not in VARIANTS:
        raise ValueError(f"probe variant {variant!r} is not one of {VARIANTS}")
    cuts = model_graph(model, input_size).cut_points
    by_name = {p.name: p for p in cuts}
    picked = [(p.name, _short_label(p.name)) for p in cuts if p.probe]
    tv = torchvision.models
    if isinstance(model, (tv.VGG, tv.AlexNet)):
        picked = _vgg_points(model, variant)
    elif isinstance(model, tv.ResNet):
        blocks = [p.name for p in cuts if p.probe and p.name.startswith("layer")]
        stem = "conv1" if variant == "public-code" else "relu"
        picked = [(stem, "conv1"), ("maxpool", "maxpool")]
        for name in blocks:
            layer, i = name.split(".")
            kind = type(model.get_submodule(name)).__name__.lower()
            picked.append((name, f"{layer}_{kind}_{int(i) + 1}"))
    out = []
    for i, (name, label) in enumerate(picked):
        c = by_name[name]
        out.append(ProbePoint(i, name, label, c.index, c.shape, c.numel, c.bytes, c.channel_axis))
    return out


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


def describe(
    model: nn.Module,
    points: Sequence[ProbePoint] | None = None,
    input_size: int | tuple[int, int] = DEFAULT_SIZE,
    in_channels: int = 3,
) -> list[ProbePoint]:
    """``points`` (default: the paper's) with each activation's shape and float32 bytes for
    one image of ``input_size``."""
    cuts = {c.name: c for c in model_graph(model, input_size, in_channels).cut_points}
    points = list(points) if points is not None else probe_points(model, "paper", input_size)
    out = []
    for p in points:
        c = cuts[p.name]
        out.append(ProbePoint(p.index, p.name, p.label, c.index, c.shape, c.numel, c.bytes,
                              c.channel_axis))  # fmt: skip
    return out
