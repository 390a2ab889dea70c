"""config/tiny.yaml on a real single-node SLURM cluster, through profiles/slurm.

scripts/slurm_local.sh installs SLURM from the distribution's packages and starts its daemons,
so this runs only where that is wanted and possible: opt in with ISPLIT_TEST_SLURM=1 (CI sets
CI), as root, with apt. A user's `make test` skips it and installs nothing.

Checked: every non-local job went through sbatch (one SLURM job id per job, each COMPLETED in
SLURM's job-completion log, each with its own SLURM log), and the results equal those of the
local run of the same config (`tiny_run`): CPU runs are deterministic.
"""

import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tools.workflow import BIN, ROOT

SCRIPT = ROOT / "scripts/slurm_local.sh"
TINY = ROOT / "config/tiny.yaml"
# hard limit for the SLURM run (measured: ~5-6 min on an idle 2-core machine)
RUN_TIMEOUT_S = 1500
# the local run (tiny_run) uses --cores 2: the same thread counts keep results identical
THREADS = 2
# keys and columns that measure time, not results
TIMING = re.compile(r"seconds|time|elapsed|wall|duration|date|host", re.I)


def _skip_reason() -> str | None:
    if not (os.environ.get("CI") or os.environ.get("ISPLIT_TEST_SLURM") == "1"):
        return "starts a real SLURM (installs packages as root): set ISPLIT_TEST_SLURM=1"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root, to install and start the SLURM daemons"
    if not (shutil.which("apt-get") and shutil.which("dpkg-query")):
        return "needs apt (Debian/Ubuntu) to install SLURM"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


def _script(action: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    """The cluster of scripts/slurm_local.sh; stopped afterwards, even after a failure,
    unless it was already up before (then it is someone's and is left running)."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing (pip install -e '.[test]')")
    was_up = _script("status", 60).returncode == 0
    t0 = time.perf_counter()
    try:
        if not was_up:
            r = _script("up", 900)
            assert r.returncode == 0, f"slurm_local.sh up failed:\n{r.stdout}\n{r.stderr}"
        yield {"up_s": time.perf_counter() - t0, "was_up": was_up}
    finally:
        if not was_up:
            r = _script("down", 300)
            print(r.stdout, r.stderr, sep="\n")


def _run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run Snakemake; past ``timeout``, interrupt it (it then scancels its jobs), then kill
    its process group."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"SLURM run exceeded {timeout} s; its output ends:\n{out[-6000:]}")
    return proc.returncode, out


def _job_headers(log: str) -> tuple[list[str], list[str]]:
    """Rules of the jobs the main process reports starting: (submitted, local)."""
    remote, local = [], []
    for m in re.finditer(r"^(local)?(?:rule|checkpoint) (\w+):$", log, re.M):
        (local if m[1] else remote).append(m[2])
    return remote, local


def _jobcomp(job_ids: set[str]) -> dict[str, dict[str, str]]:
    """SLURM's own record of finished jobs (JobCompType=jobcomp/filetxt)."""
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    m = re.search(r"^JobCompLoc\s*=\s*(\S+)", conf, re.M)
    assert m, "the cluster keeps no job-completion log"
    records = {}
    for line in Path(m[1]).read_text().splitlines():
        rec = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if rec.get("JobId") in job_ids:
            records[rec["JobId"]] = rec
    return records


def _assert_close(a, b, path="") -> None:
    """Equal JSON values, floats to 1e-9 relative; timing fields are skipped."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            if not TIMING.search(k):
                _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            assert a is b or (a != a and b != b), f"{path}: {a} != {b}"
        else:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    keep = [c for c in a.columns if not TIMING.search(str(c))]
    assert list(a.columns) == list(b.columns), what
    pd.testing.assert_frame_equal(
        a[keep].reset_index(drop=True),
        b[keep].reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
        obj=what,
    )


def test_tiny_through_slurm_matches_local_run(slurm_cluster, tiny_run, tmp_path):
    local, _ = tiny_run
    work = tmp_path / "slurm-run"
    work.mkdir()
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile", str(ROOT / "Snakefile"),
        "--profile", str(ROOT / "profiles/slurm"),
        "--configfile", str(TINY),
        # the test node has 2 CPUs; rules ask for up to 8
        "--max-threads", str(THREADS),
        "--slurm-keep-successful-logs",
    ]  # fmt: skip
    t0 = time.perf_counter()
    rc, log = _run(cmd, work, RUN_TIMEOUT_S)
    run_s = time.perf_counter() - t0
    assert rc == 0, f"SLURM run failed (rc {rc}):\n{log[-8000:]}"

    # --- every non-local job went through sbatch, and SLURM ran it to completion
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.$",
                           log, re.M)  # fmt: skip
    remote, local_rules = _job_headers(log)
    slurm_ids = {sid for _, sid, _ in submitted}
    print(
        f"\nSLURM: cluster up {slurm_cluster['up_s']:.0f} s, run {run_s:.0f} s, "
        f"{len(slurm_ids)} sbatch jobs, {len(local_rules)} local jobs ({sorted(set(local_rules))})"
    )
    assert remote, log[-4000:]
    assert len(slurm_ids) == len(submitted) == len(remote), (remote, submitted)
    for rule in ("finetune", "importance", "select_candidates", "retrain_split", "gather_splits"):
        assert rule in remote, f"{rule} did not go through SLURM: {sorted(set(remote))}"
    assert "download_dataset" in local_rules and "download_dataset" not in remote
    n_layers = len(pd.read_csv(work / "results/tiny/candidates.tsv", sep="\t"))
    assert remote.count("retrain_split") == n_layers  # one job trains every seed of a split

    run_id = re.search(r"^SLURM run ID: (\S+)$", log, re.M)[1]
    records = _jobcomp(slurm_ids)
    assert set(records) == slurm_ids, f"no completion record for {slurm_ids - set(records)}"
    for rec in records.values():
        assert rec["JobState"] == "COMPLETED" and rec["Name"] == run_id, rec
        assert Path(rec["WorkDir"]).resolve() == work.resolve(), rec
    for _, _, path in submitted:
        text = Path(path).read_text()  # kept by --slurm-keep-successful-logs
        assert "slurm-jobstep" in text and "Finished jobid" in text, path

    # --- same results as the local run
    def files(root):
        return {p.relative_to(root) for p in (root / "results").rglob("*") if p.is_file()}

    assert files(work) == files(local)
    exp = Path("results/tiny")
    tables = {
        exp / "candidates.tsv": lambda p: pd.read_csv(p, sep="\t"),
        exp / "splits.parquet": pd.read_parquet,
        exp / "finetune/history.csv": pd.read_csv,
    }
    for rel, read in tables.items():
        _assert_frames_equal(read(work / rel), read(local / rel), str(rel))
    jsons = [exp / "quality.json", exp / "finetune/metrics.json"]
    jsons += sorted(p.relative_to(local) for p in (local / exp / "splits").glob("*/metrics.json"))
    assert len(jsons) == 2 + n_layers
    for rel in jsons:
        _assert_close(
            json.loads((work / rel).read_text()), json.loads((local / rel).read_text()), str(rel)
        )
