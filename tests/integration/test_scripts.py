"""The scripts that read a finished run or time a stage run at a small size on the tiny
workflow and print what they promise (the --help of every script is in tests/unit)."""

from __future__ import annotations

import json
import subprocess
import sys

from tools.workflow import ROOT


def run_script(name, *args, timeout=600):
    r = subprocess.run(
        [sys.executable, "-m", f"scripts.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_study_results_collects_tabulates_and_draws_the_tiny_experiment(tiny_run, tmp_path):
    work, _ = tiny_run
    study = tmp_path / "study"
    run_script("study_results", "collect", "--workdir", str(work), "--out", str(study),
               "--config", str(ROOT / "config/tiny.yaml"), "tiny")  # fmt: skip
    assert (study / "tiny/quality.json").read_bytes() == (
        work / "results/tiny/quality.json"
    ).read_bytes()
    assert json.loads((study / "tiny/provenance.json").read_text())["seconds_total"] > 0
    out = run_script("study_results", "tables", "--study", str(study))
    quality = json.loads((work / "results/tiny/quality.json").read_text())
    assert "| | `tiny` |" in out
    assert f"`{quality['measured_best']['label']}`" in out
    assert "criterion holds" in out
    run_script("study_results", "figure", "--study", str(study), "--out", str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_to_answer_sums_the_benchmarked_rules(tiny_run):
    work, _ = tiny_run
    out = run_script("time_to_answer", "--workdir", str(work))
    records = list((work / "benchmarks").rglob("*.tsv"))
    benchmarked = {p.relative_to(work / "benchmarks").parts[0] for p in records}
    assert "finetune" in benchmarked
    for rule in benchmarked:
        assert f"| `{rule}` |" in out, out
    assert f"| all benchmarked jobs | {len(records)} |" in out, out


def test_bench_dry_run_counts_the_tiny_jobs():
    out = run_script("bench_dry_run", "--config", "config/tiny.yaml", "--repeat", "1")
    out = json.loads(out.splitlines()[-1])
    assert out["jobs"] > 10 and len(out["wall_s"]) == 1


def test_bench_importance_at_a_small_size():
    """Every method runs and the extraction agrees with Captum and the per-image reference."""
    out = run_script(
        "bench_importance", "--models", "mobilenet_v2", "--size", "32", "--batch", "4",
        "--batches", "1", "--ref-images", "1", "--threads", "1",
    )  # fmt: skip
    summary = json.loads(out.splitlines()[-1])
    model = summary["models"]["mobilenet_v2"]
    assert model["b_over_a_input_grad"] > 0 and summary["vs_input_gradient"] > 0
    line = next(ln for ln in out.splitlines() if ln.startswith("mobilenet_v2:"))
    captum = float(line.split("max diff vs captum ")[1].split(",")[0])
    reference = float(line.split("vs reference ")[1].split()[0])
    assert captum < 1e-3 and reference < 1e-3, line
