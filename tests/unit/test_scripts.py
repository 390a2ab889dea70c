"""Every program in scripts/ starts: each answers ``--help`` (run the way its docstring says,
``python -m scripts.<name>`` from the repository root), none edits ``sys.path``, and the ones
light enough run here at their real size."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tools.workflow import ROOT

SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.suffix in (".py", ".sh"))
PROGRAMS = [p for p in SCRIPTS if p.name != "__init__.py"]


def run_script(path, *args, timeout=120):
    if path.suffix == ".sh":
        cmd = ["bash", str(path.relative_to(ROOT)), *args]
    else:
        cmd = [sys.executable, "-m", f"scripts.{path.stem}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_scripts_are_found():
    assert {"bench_importance.py", "load_test_serve.py", "slurm_local.sh"} <= {
        p.name for p in PROGRAMS
    }


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_every_script_answers_help(path):
    r = run_script(path, "--help")
    assert r.returncode == 0, f"{path.name} --help failed:\n{r.stdout}\n{r.stderr}"
    assert "usage:" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "path",
    SCRIPTS + sorted((ROOT / "tools").glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_no_script_edits_sys_path(path):
    """They import the installed package, and ``tools`` from the root they run in."""
    assert not re.search(r"sys\.path\.(insert|append)|sys\.path\s*\[", path.read_text())


def test_device_profiles_fit_from_the_published_table():
    r = run_script(ROOT / "scripts/fit_device_profiles.py")
    assert r.returncode == 0, r.stderr
    # one fitted error per network of the table, each a signed percentage
    csv = (ROOT / "scripts/device_benchmarks.csv").read_text().splitlines()
    assert len(re.findall(r" fit [+-]\d+%$", r.stdout, re.M)) == len(csv) - 1, r.stdout
