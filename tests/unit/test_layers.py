"""The package's house plan: one dependency direction between the stage subpackages, light
modules free of torch, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from isplit.cli import provenance

PACKAGE = Path(provenance.PACKAGE_DIR)

#: a subpackage may import only from lower layers (and from itself)
LAYERS = {
    "config": 0,
    "errors": 0,
    "io": 1,
    "data": 2,
    "nets": 3,
    "evaluation": 3,
    "train": 4,
    "importance": 4,
    "camera": 4,
    "latency": 5,
    "deploy": 5,
    "recommend": 6,
    "figures": 7,
    "report": 7,
    "cli": 8,
    "__main__": 9,
}

#: modules a table-reading or drawing step runs: importing them must not import torch
TORCH_FREE = [
    "isplit.config",
    "isplit.io.files",
    "isplit.io.tables",
    "isplit.io.fetch",
    "isplit.data.sources",
    "isplit.nets.catalog",
    "isplit.nets.weights",
    "isplit.importance.cui",
    "isplit.importance.candidates",
    "isplit.evaluation.quality",
    "isplit.evaluation.pareto",
    "isplit.latency.compute",
    "isplit.latency.netsim",
    "isplit.latency.simulate",
    "isplit.recommend.recommend",
    "isplit.recommend.candidates",
    "isplit.figures.cui",
    "isplit.figures.splits",
    "isplit.figures.per_class",
    "isplit.figures.latency",
    "isplit.report.summary",
    "isplit.cli",
    "isplit.cli.provenance",
]


def modules() -> list[str]:
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append(".".join(parts).removesuffix(".__init__"))
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_subpackage_has_a_layer():
    tops = {m.split(".")[1] for m in modules() if m != "isplit"}
    assert tops <= set(LAYERS), tops - set(LAYERS)


@pytest.mark.parametrize("module", modules())
def test_imports_point_down(module):
    own = layer(module)
    if own is None:  # isplit/__init__.py imports nothing of the package
        assert not provenance.imports_in([provenance._tree(provenance.module_path(module))], module)
        return
    tree = provenance._tree(provenance.module_path(module))
    for target in provenance.imports_in([tree], module):
        if target == "isplit" or target.split(".")[1] == module.split(".")[1]:
            continue
        assert layer(target) < own, f"{module} (layer {own}) imports {target} ({layer(target)})"


def test_no_module_is_large_without_reason():
    """About 400 lines at most; the listed ones are one idea each (the packet simulator, the
    Grad-CAM pass with its file formats) and say so in their docstrings."""
    allowed = {"isplit/latency/netsim.py", "isplit/importance/gradcam.py"}
    big = {
        str(f.relative_to(PACKAGE.parent)): n
        for f in PACKAGE.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 420
    }
    assert set(big) <= allowed, big


def test_light_modules_import_no_torch():
    """Importing them leaves torch unimported (checked after the fact rather than by blocking
    torch: scipy and scikit-learn probe ``sys.modules['torch']`` and fail on a blocked one)."""
    code = (
        "import sys, importlib\n"
        f"for m in {TORCH_FREE!r}:\n"
        "    importlib.import_module(m)\n"
        "    if 'torch' in sys.modules:\n"
        "        sys.exit(f'{m} imports torch')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_nothing_in_the_package_imports_tests_or_tools():
    for module in modules():
        tree = provenance._tree(provenance.module_path(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                assert not any(n.split(".")[0] in ("tools", "tests") for n in names), module
