"""Reruns follow the code: changing what any package module executes reruns exactly the rules
whose command can execute it, on a finished config/tiny.yaml run; editing only its docstrings
or comments reruns nothing.

The expected rules come from the import graph (isplit.cli.provenance); that graph is held
against what each job really imported (the tiny run is made with PYTHONPROFILEIMPORTTIME, so
every job's log lists its imports): a module a job loaded but the graph misses would be an edit
that reruns nothing.
"""

from __future__ import annotations

import ast
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from isplit.cli import provenance
from tools.workflow import ROOT, planned, snakemake

TINY = ROOT / "config/tiny.yaml"
RULE_FILES = sorted((ROOT / "workflow/rules").glob("*.smk"))
#: rules that only read tables or draw: they must never import torch
LIGHT_RULES = {"cui", "select_candidates", "gather_splits", "simulate_latency", "recommend",
               "plot_cui", "plot_splits", "plot_latency", "summary"}  # fmt: skip


#: the checkpoint's fan-out: jobs a dry run plans only once the checkpoint is up to date
AFTER_CHECKPOINT = {"retrain_split", "export_split"}


def rule_commands() -> dict[str, str]:
    """rule → the isplit command its shell runs, checked against the command its code param
    hashes (a rule hashing another command's modules would rerun on the wrong edits)."""
    out = {}
    for f in RULE_FILES:
        text = f.read_text()
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S):
            body = m[2]
            ran = re.search(r"python -m isplit ([a-z-]+)", body)
            hashed = re.search(r'code=code_version\("([a-z-]+)"\)', body)
            if ran or hashed:
                assert ran and hashed and ran[1] == hashed[1], f"{f.name}: rule {m[1]}"
                out[m[1]] = ran[1]
    return out


def test_every_rule_hashes_the_command_it_runs():
    commands = rule_commands()
    assert len(commands) == 21
    assert set(commands.values()) <= set(provenance.COMMANDS)


def loaded_modules(log: Path) -> set[str]:
    """Modules a job imported, from the ``-X importtime`` lines of its log."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", log.read_text(), re.M)
    return set(names)


def test_the_import_graph_covers_what_jobs_imported(tiny_run):
    work, _ = tiny_run
    checked = 0
    for rule, command in rule_commands().items():
        for log in sorted((work / "logs" / rule).rglob("*.log")):
            loaded = loaded_modules(log)
            assert "isplit.cli" in loaded, f"{log}: no import trace (PYTHONPROFILEIMPORTTIME)"
            ours = {m for m in loaded if m == "isplit" or m.startswith("isplit.")}
            missing = ours - provenance.command_modules(command)
            assert not missing, f"{rule} imported {sorted(missing)} that its code hash misses"
            if rule in LIGHT_RULES:
                assert "torch" not in loaded, f"{rule} imported torch ({log})"
            checked += 1
    assert checked >= len(rule_commands())  # every rule ran at least once


def _scratch_repo(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if src.is_file() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                (dest / rel).symlink_to(src.readlink())
            else:
                (dest / rel).write_bytes(src.read_bytes())
    return dest


#: a statement, so the module's syntax tree (what the code hash reads) changes
CODE_EDIT = b"\n_EDITED_BY_TEST_RERUN_MODULES = 1\n"


def _rerun_after_editing(repo: Path, work: Path, module: Path, edit=lambda b: b + CODE_EDIT):
    """(rules planned because their code param changed, rules planned only because an
    upstream job reruns, dry-run output) after ``edit`` (bytes -> bytes; by default: append
    a statement) of ``module`` of the scratch ``repo``; the edit is undone."""
    original = module.read_bytes()
    edited = edit(original)
    assert edited != original
    module.write_bytes(edited)
    try:
        r = snakemake(
            "-n", "--nolock", "--configfile", str(TINY), "--directory", str(work),
            snakefile=repo / "Snakefile", env={"PYTHONPATH": str(repo)},
        )  # fmt: skip
    finally:
        module.write_bytes(original)
    jobs = planned(r.stdout)
    changed = {rule for rule, _, reason in jobs if "Params have changed" in reason}
    downstream = {
        rule
        for rule, _, reason in jobs
        if "Params have changed" not in reason and reason.startswith("Input files updated")
    }
    other = {rule for rule, _, _ in jobs} - changed - downstream
    assert not other, f"jobs planned for another reason:\n{r.stdout}"
    return changed, downstream, r.stdout


def test_editing_each_module_reruns_exactly_its_rules(tiny_run, tmp_path):
    work, _ = tiny_run
    commands = rule_commands()
    package = sorted(p.relative_to(ROOT) for p in (ROOT / "isplit").rglob("*.py"))
    assert len(package) > 40
    repos = [_scratch_repo(tmp_path / f"repo{i}") for i in range(2)]
    # control: the copies plan nothing when nothing is edited
    r = snakemake(
        "-n", "--nolock", "--configfile", str(TINY), "--directory", str(work),
        snakefile=repos[0] / "Snakefile", env={"PYTHONPATH": str(repos[0])},
    )  # fmt: skip
    assert "Nothing to be done" in r.stdout, r.stdout

    def check(i_rel):
        i, rel = i_rel
        repo = repos[i % len(repos)]
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        expected = {
            rule for rule, cmd in commands.items() if name in provenance.command_modules(cmd)
        }
        changed, downstream, out = _rerun_after_editing(repo, work, repo / rel)
        return rel, expected, changed, downstream, out

    seen_rules: set[str] = set()
    with ThreadPoolExecutor(len(repos)) as pool:
        # one module per scratch copy at a time: an edit is undone before the next one
        for k in range(0, len(package), len(repos)):
            batch = list(enumerate(package[k : k + len(repos)]))
            for rel, expected, changed, downstream, out in pool.map(check, batch):
                # the rules that can run the module rerun (some only because an upstream
                # one does), no other rule's code param changed, and what else reruns is
                # downstream of them
                where = f"editing {rel}: params changed for {changed}, expected {expected}"
                if expected:
                    assert changed and changed <= expected, where
                    # a dry run cannot plan the fan-out of a checkpoint that itself reruns
                    rerun = changed | downstream
                    unseen = AFTER_CHECKPOINT if "select_candidates" in rerun else set()
                    assert expected <= changed | downstream | unseen, where
                else:
                    assert not changed | downstream, f"editing {rel} planned jobs:\n{out}"
                seen_rules |= expected
    # every rule is reached by some module edit, and some module reruns nothing
    assert seen_rules == set(commands)


GRADCAM = Path("isplit/importance/gradcam.py")


def _edit_docstring(source: bytes) -> bytes:
    """The module docstring's first line with a word added (what a typo fix does)."""
    text = source.decode()
    first = ast.get_docstring(ast.parse(text)).splitlines()[0]
    assert first in text
    return text.replace(first, first.rstrip(".") + " (edited).", 1).encode()


def _edit_constant(source: bytes) -> bytes:
    """The first literal assigned to a module-level UPPER_CASE name, changed."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.isupper() for t in node.targets
        ):
            for lit in ast.walk(node.value):
                if isinstance(lit, ast.Constant) and isinstance(lit.value, str | int | float):
                    value = lit.value + ("x" if isinstance(lit.value, str) else 1)
                    lines = source.splitlines(keepends=True)
                    line = lines[lit.lineno - 1]  # offsets count UTF-8 bytes
                    start, end = lit.col_offset, lit.end_col_offset
                    lines[lit.lineno - 1] = line[:start] + repr(value).encode() + line[end:]
                    return b"".join(lines)
    raise AssertionError("no module-level constant to edit")


def test_a_docstring_edit_reruns_nothing_and_a_constant_edit_reruns_importance(tiny_run, tmp_path):
    """Editing only gradcam.py's docstring plans no job; changing one of its constants plans
    the importance jobs (and nothing whose command cannot execute gradcam.py)."""
    work, _ = tiny_run
    repo = _scratch_repo(tmp_path / "repo")
    changed, downstream, out = _rerun_after_editing(repo, work, repo / GRADCAM, _edit_docstring)
    assert not changed | downstream, f"a docstring edit planned jobs:\n{out}"
    assert "Nothing to be done" in out, out
    changed, downstream, out = _rerun_after_editing(repo, work, repo / GRADCAM, _edit_constant)
    name = ".".join(GRADCAM.with_suffix("").parts)
    expected = {r for r, c in rule_commands().items() if name in provenance.command_modules(c)}
    assert "importance" in changed, out
    assert changed <= expected, out
    assert any(rule == "importance" for rule, _, _ in planned(out)), out


@pytest.mark.parametrize("name", ["devices.csv"])
def test_editing_the_device_table_reruns_latency(tiny_run, tmp_path, name):
    """A measured device table named in the config is an input of simulate_latency."""
    import pandas as pd
    import yaml

    work, _ = tiny_run
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(work), str(run)], check=True)
    table = tmp_path / name
    compute = pd.read_parquet(run / "results/tiny/latency/compute.parquet")
    compute.to_csv(table, index=False)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["experiments"]["tiny"]["latency"]["device"] = {"table": str(table), "scale": 20}
    config = tmp_path / "tiny-table.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # first the config change itself: the simulation reruns with the table as a new input
    snakemake("--cores", "1", "--configfile", str(config), "--directory", str(run))
    r = snakemake("-n", "--configfile", str(config), "--directory", str(run))
    assert "Nothing to be done" in r.stdout, r.stdout
    compute.assign(median_s=compute["median_s"] * 2).to_csv(table, index=False)
    r = snakemake("-n", "--configfile", str(config), "--directory", str(run))
    rules = {rule for rule, _, _ in planned(r.stdout)}
    assert "simulate_latency" in rules and "recommend" in rules, r.stdout
    assert not rules & {"finetune", "importance", "retrain_split", "profile_compute"}, rules
