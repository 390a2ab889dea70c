"""Running the workflow from tests: real Snakemake, from this checkout's venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=ROOT, check=True, timeout=1200, env=None, snakefile=None):
    """``snakemake --snakefile <this checkout>/Snakefile ARGS`` with the venv first on PATH."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    r = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(snakefile or ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def planned_jobs(output: str) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in output else ""
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


def planned(output: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, wildcards, reason) of every job block of a dry run."""
    jobs = []
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)*)", output, re.M):
        wc = re.search(r"^    wildcards: (.*)$", m[2], re.M)
        reason = re.search(r"^    reason: (.*)$", m[2], re.M)
        pairs = [kv.split("=", 1) for kv in wc[1].split(", ")] if wc else []
        jobs.append((m[1], dict(pairs), reason[1] if reason else ""))
    return jobs


def planned_files(output: str) -> dict[str, str]:
    """Every file (or ``directory()``) a job of a dry run declares, as its output, log or
    benchmark, with the job's rule."""
    files = {}
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)*)", output, re.M):
        for kind in ("output", "log", "benchmark"):
            line = re.search(rf"^    {kind}: (.*)$", m[2], re.M)
            files |= dict.fromkeys(line[1].split(", ") if line else [], m[1])
    return files


def declared_files(work: Path, *args: str) -> dict[str, str]:
    """Every file the jobs of the finished run in ``work`` declare (:func:`planned_files`),
    with its rule. A dry run with ``--forceall`` plans every job that does not wait on a
    checkpoint; the jobs that do appear only when their rules are forced after it."""
    common = ("-n", "--nolock", "--directory", str(work), *args)
    first = snakemake(*common, "--forceall").stdout
    files = planned_files(first)
    rules = snakemake("--list-rules", *args).stdout.split()
    later = sorted(set(rules) - set(files.values()) - {"all"})
    if later:
        files |= planned_files(snakemake(*common, "--forcerun", *later).stdout)
    missing = set(rules) - set(files.values()) - {"all"}
    if missing:
        raise AssertionError(f"no job of rules {sorted(missing)} was planned")
    return files


def undeclared(work: Path, declared) -> list[str]:
    """The files under ``work`` (hidden ones included; Snakemake's own ``.snakemake/`` left
    out) that are neither in ``declared`` (paths relative to ``work``) nor inside a declared
    path that is a directory (a ``directory()`` output)."""
    declared = set(declared)
    dirs = {d for d in declared if (work / d).is_dir()}
    out = []
    for path in sorted(work.rglob("*")):
        rel = path.relative_to(work)
        if rel.parts[0] == ".snakemake" or path.is_dir():
            continue
        if rel.as_posix() in declared:
            continue
        if any(p.as_posix() in dirs for p in rel.parents):
            continue
        out.append(rel.as_posix())
    return out
