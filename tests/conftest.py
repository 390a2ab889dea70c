import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from isplit.datasets import synthetic

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def array_dataset(tmp_path_factory) -> Path:
    return synthetic.write(tmp_path_factory.mktemp("data") / "synthetic")


def snakemake(*args, cwd=ROOT, check=True, timeout=1200):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args],
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """config/tiny.yaml run to the end in a scratch working directory."""
    work = tmp_path_factory.mktemp("tiny")
    r = snakemake(
        "--cores", "2", "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work)
    )
    return work, r
