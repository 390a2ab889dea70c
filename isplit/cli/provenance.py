"""Which source files a workflow step runs, from the real import graph: the code hash of a rule.

Snakemake reruns a job when its shell command or params change, but it cannot see the Python
modules the command imports. Each rule therefore carries ``code = code_version(<command>)``: a
hash of every package file that command can execute. The file set is derived, never listed by
hand: starting from the command's function in :mod:`isplit.cli` (the imports inside it and at
the top of its module), the package's import statements are followed transitively, wherever
they sit in a module (a lazy import inside a function counts), together with every parent
package's ``__init__`` (Python runs those on import) and the CLI's entry points. Editing a
module thus reruns exactly the rules whose command can reach it; a module no command reaches
reruns nothing.

What is hashed is each module's syntax tree without its docstrings (:func:`code_text`), not
its bytes: a comment, a docstring or a reformatted line changes no result, so it reruns
nothing, while any change to what runs (a constant, a name, an operator) reruns the rules.

Torch-free (the standard library and click): the Snakefile calls this at parse time.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import isplit
from isplit.cli import COMMANDS

PACKAGE = "isplit"
PACKAGE_DIR = Path(isplit.__file__).resolve().parent
ENTRY_POINTS = ("isplit", "isplit.__main__", "isplit.cli", "isplit.cli.options")


def module_path(name: str) -> Path | None:
    """The source file of package module ``name`` (None if it is no module of the package)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if base.is_dir() and (base / "__init__.py").is_file():
        return base / "__init__.py"
    file = base.with_suffix(".py")
    return file if file.is_file() else None


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported(node: ast.AST, module: str, is_package: bool) -> set[str]:
    """Package modules one import statement loads."""
    out: set[str] = set()
    if isinstance(node, ast.Import):
        out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        out.add(target)
        # ``from pkg import name`` loads pkg.name when that is a submodule
        out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if module_path(m) is not None}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    """``tree`` with the docstring of its module, classes and functions dropped."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:]
    return tree


def code_text(path: Path) -> str:
    """What of a source file can change a result: its syntax tree, without docstrings,
    comments, formatting or line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return ast.dump(_without_docstrings(tree), include_attributes=False)


def imports_in(nodes, module: str) -> set[str]:
    """Package modules imported anywhere inside ``nodes`` (AST nodes of ``module``)."""
    path = module_path(module)
    is_package = path is not None and path.name == "__init__.py"
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            found |= _imported(node, module, is_package)
    return found


@functools.cache
def _module_imports(name: str) -> frozenset[str]:
    return frozenset(imports_in([_tree(module_path(name))], name))


def closure(modules) -> set[str]:
    """``modules`` and every package module they import, transitively, with their parents."""
    todo = list(modules)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or module_path(name) is None:
            continue
        seen.add(name)
        todo += _parents(name)
        todo += _module_imports(name)
    return seen


def command_modules(command: str) -> set[str]:
    """Every package module the CLI command ``command`` can execute."""
    if command not in COMMANDS:
        raise ValueError(f"unknown isplit command {command!r}; known: {sorted(COMMANDS)}")
    module, func = COMMANDS[command].split(":")
    tree = _tree(module_path(module))
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    body = [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == func
    ]
    if not body:
        raise ValueError(f"{module} has no function {func!r} (isplit.cli.COMMANDS is stale)")
    # the command's own module is hashed whole, but only its function's imports are followed
    return {module} | closure(
        {*_parents(module), *ENTRY_POINTS, *imports_in(top_level + body, module)}
    )


def code_version(command: str) -> str:
    """Package version plus a hash of the files :func:`command_modules` finds."""
    h = hashlib.sha256()
    files = sorted(module_path(m) for m in command_modules(command))
    for f in files:
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        h.update(code_text(f).encode())
    return f"{isplit.__version__}+{h.hexdigest()[:12]}"
