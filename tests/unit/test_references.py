"""Docstrings and comments name what exists: every ``isplit.<module>[.<name>]`` they mention
resolves to a module of the package (and the name to something that module defines), and every
repository path they cite (``docs/methods.md``, ``tools/relay.py``) is a file or folder here;
and none cites an issue number in place of saying what the code or test does."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache

import pytest

from isplit.cli import provenance
from tools.workflow import ROOT

SOURCES = sorted(
    [p for d in ("isplit", "tests", "scripts", "tools") for p in (ROOT / d).rglob("*.py")]
    + list((ROOT / "workflow").rglob("*.smk"))
    + [ROOT / "Snakefile"]
)
#: modules other branches are creating; a mention of them is not stale
COMING = ("isplit.recommend",)
MODULE_REF = re.compile(r"(?<![\w./-])isplit(?:\.[A-Za-z_]\w*)+")
PATH_REF = re.compile(
    r"(?<![\w./-])((?:isplit|tests|scripts|tools|docs|workflow|config|profiles|examples)"
    r"/[\w./-]*\w)"
)
ISSUE_REF = re.compile(r"\b[Ii]ssue #?\d+|(?<![\w&])#\d+\b")


def prose(path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a source file."""
    text = path.read_text()
    if path.suffix != ".py":  # Snakemake files: their comments
        return [(i, m[1]) for i, line in enumerate(text.splitlines(), 1)
                if (m := re.search(r"(?:^|\s)(#.*)$", line))]  # fmt: skip
    out = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    out.append((body[0].lineno, body[0].value.value))
    return out


@cache
def defined(module: str) -> frozenset[str]:
    """Top-level names of a package module (functions, classes, assignments, imports)."""
    tree = ast.parse(provenance.module_path(module).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def stale_module(ref: str) -> str | None:
    """Why ``ref`` names nothing (None when it resolves)."""
    if ref.startswith(COMING):
        return None
    parts = ref.split(".")
    k = len(parts)
    while provenance.module_path(".".join(parts[:k])) is None:
        k -= 1
    module, rest = ".".join(parts[:k]), parts[k:]
    if not rest or rest[0].startswith("__") or rest[0] in defined(module):
        return None
    return f"{module} has no {rest[0]!r}"


def test_the_scan_sees_the_package_and_finds_stale_names():
    assert len(SOURCES) > 100
    assert stale_module("isplit.importance.cui.curve") is None
    assert stale_module("isplit.cui") == "isplit has no 'cui'"
    assert stale_module("isplit.nets.split.NoSuchThing") is not None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docstrings_and_comments_name_what_exists(path):
    problems = []
    for line, text in prose(path):
        problems += [f"line {line}: cites {m!r}" for m in ISSUE_REF.findall(text)]
        for ref in MODULE_REF.findall(text):
            if why := stale_module(ref):
                problems.append(f"line {line}: {ref} ({why})")
        for rel in PATH_REF.findall(text):
            if "*" in rel or "{" in rel or "<" in rel:
                continue  # a pattern, not a file
            if not ((ROOT / rel).exists() or (ROOT / f"{rel}.py").exists()):
                problems.append(f"line {line}: {rel} (no such file)")
    assert not problems, "\n".join(problems)
