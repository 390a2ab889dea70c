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
