"""The oracle study's tables (docs/study.md), from the per-pair files committed under docs/study/.

Four commands: ``targets`` prints what Snakemake has to make for the study, ``figure`` draws
docs/study/predictors.png from the committed files, and

* ``collect`` copies what each finished experiment of a ``config/validate.yaml`` run measured
  into ``docs/study/<experiment>/`` (``quality.json``, ``splits.csv``, ``probe.csv``, the
  experiment's config, and ``provenance.json``: the commit, the machine and the jobs' run
  times from Snakemake's benchmarks), so the tables can be rebuilt without the run.
* ``tables`` prints the markdown tables from those files: per pair, how each zero-retraining
  predictor ranked the retrained splits and what choosing by it cost; CUI beyond size and depth
  (the criterion stated in config/validate.yaml before the run); the pooled estimate across
  pairs (isplit.evaluation.association.pooled); and how the answer moved with the fine-tuning
  seed. Every number is as quality.json has it: chosen on validation, reported on test.

    .venv/bin/python -m scripts.study_results collect --workdir ../study --out docs/study \\
        elpv-mobilenet_v2 animal-mnist-mobilenet_v2 elpv-resnet18 animal-mnist-resnet18
    .venv/bin/python -m scripts.study_results tables --study docs/study > /tmp/tables.md
    .venv/bin/python -m scripts.study_results figure --study docs/study
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from isplit.evaluation import association
from isplit.evaluation.predictors import NAMES
from isplit.figures.study import study_figure

STATISTICS = {"partial": "partial_cui_given_size_depth", "within_size": "within_size_cui"}


def ci(entry: dict | None, digits: int = 2) -> str:
    if entry and str(entry.get("note", "")).startswith("undefined"):
        return "undefined¹"
    if not entry or entry.get("value") is None:
        return "–"
    v = f"{entry['value']:.{digits}f}"
    if not entry.get("ci") or entry["ci"][0] is None:
        return v
    lo, hi = entry["ci"]
    return f"{v} [{lo:.{digits}f}, {hi:.{digits}f}]"


def excludes_zero(entry: dict) -> str:
    if not entry or not entry.get("ci") or entry["ci"][0] is None:
        return ""
    lo, hi = entry["ci"]
    return " (> 0)" if lo > 0 else " (< 0)" if hi < 0 else ""


# ----------------------------------------------------------------------------- collect


def collect(
    workdir: Path, out: Path, config: Path, experiments: list[str], trained_at: str | None
) -> None:
    cfg = yaml.safe_load(config.read_text())
    commit = subprocess.run(
        ["git", "-C", str(workdir), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for exp in experiments:
        res, dest = workdir / "results" / exp, out / exp
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res / "quality.json", dest / "quality.json")
        pd.read_parquet(res / "splits.parquet").to_csv(dest / "splits.csv", index=False)
        probe = res / "importance" / "probe.parquet"
        if probe.exists():
            pd.read_parquet(probe).to_csv(dest / "probe.csv", index=False)
        section = {"datasets": {}, "experiments": {exp: cfg["experiments"][exp]}}
        ds = cfg["experiments"][exp]["dataset"]
        section["datasets"][ds] = cfg["datasets"][ds]
        (dest / "config.yaml").write_text(yaml.safe_dump(section, sort_keys=False))
        times = {}
        for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
            if exp in tsv.parts or tsv.stem == exp:
                rule = tsv.relative_to(workdir / "benchmarks").parts[0]
                s = pd.read_csv(tsv, sep="\t")["s"].sum()
                times[rule] = times.get(rule, 0.0) + float(s)
        provenance = {
            "commit": commit,
            # the splits may have been retrained at an earlier commit than the statistics
            "trained_at": trained_at or commit,
            "config": str(config),
            "machine": f"{platform.machine()}, {_cores()} cores (shared with other work)",
            "seconds_by_rule": {k: round(v, 1) for k, v in sorted(times.items())},
            "seconds_total": round(sum(times.values()), 1),
        }
        (dest / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        print(f"{exp}: {dest}")


def _cores() -> int:
    import os

    return os.cpu_count() or 0


# ----------------------------------------------------------------------------- tables


def load(study: Path) -> dict[str, dict]:
    return {
        d.name: json.loads((d / "quality.json").read_text())
        for d in sorted(study.iterdir())
        if (d / "quality.json").exists()
    }


def pooled(qualities: dict[str, dict], kind: str, predictor: str = "cui_mean") -> dict:
    """The common value of a statistic across pairs (independent: each its own redraws)."""
    curves = []
    for i, q in enumerate(qualities.values()):
        t = q["tables"]
        x = np.array([np.nan if v is None else v for v in t["predictors"][predictor]], float)
        ok = np.isfinite(x)
        sizes, depth = np.asarray(t["activation_bytes"])[ok], np.asarray(t["depth"])[ok]
        a, m = association.setup(kind, x[ok], sizes, depth)
        acc = np.asarray(t["test_accuracy"])[ok]
        sigma = np.asarray(t["noise_covariance"])[np.ix_(ok, ok)]
        curves.append(association.curve(a, m, acc, sigma, seed=1000 + i))
    value, (lo, hi) = association.pooled(curves)
    return {"value": value, "ci": [lo, hi], "n_pairs": len(curves)}


def tables(qualities: dict[str, dict], pairs: list[str], ft_group: list[str]) -> str:
    out: list[str] = []

    def header(names):
        out.extend(["| | " + " | ".join(f"`{e}`" for e in names) + " |",
                    "|---" * (len(names) + 1) + "|"])  # fmt: skip

    def row(label, cell, names):
        out.append(f"| {label} | " + " | ".join(cell(qualities[e]) for e in names) + " |")

    header(pairs)
    row("metric", lambda q: q["metric"], pairs)
    row("split points × seeds", lambda q: f"{q['n_points']} × {max(q['n_seeds'])}", pairs)
    row("test / val images", lambda q: f"{q['n_images']['test']} / {q['n_images']['val']}", pairs)
    row("fine-tuned model, no split (test)", lambda q: ci(q["finetuned"]["test"], 3), pairs)
    row(
        "measured best split (chosen on val), test",
        lambda q: f"`{q['measured_best']['label']}` {ci(q['measured_best']['test'], 3)}",
        pairs,
    )
    row(
        "share of replicates choosing it",
        lambda q: f"{q['measured_best']['chosen_share']:.2f}",
        pairs,
    )
    out += ["", "ρ of each predictor's ranks with the splits' test accuracy:", ""]
    header(pairs)
    for key, label in NAMES.items():
        if key != "random" and any(key in qualities[e]["predictors"] for e in pairs):
            row(label, lambda q, k=key: ci(q["predictors"].get(k, {}).get("rho")), pairs)
    out += ["", "Regret of each predictor's choice (test accuracy lost against the split best "
            "on validation; whole procedure resampled):", ""]  # fmt: skip
    header(pairs)
    for key, label in NAMES.items():

        def regret(q, k=key):
            p = q["predictors"].get(k)
            if not p or not p.get("regret"):
                return "–"
            choice = f" (`{p['choice_label']}`)" if p.get("choice_label") else ""
            return ci(p["regret"], 3) + choice

        if any(key in qualities[e]["predictors"] for e in pairs):
            row(label, regret, pairs)
    out += ["", "CUI beyond size and depth (criterion fixed before the run), and paired "
            "differences:", ""]  # fmt: skip
    out.extend(["| statistic | " + " | ".join(f"`{e}`" for e in pairs) + " | pooled |",
                "|---" * (len(pairs) + 2) + "|"])  # fmt: skip
    for kind, key in STATISTICS.items():
        label = {"partial": "partial, CUI given size and depth",
                 "within_size": "within equal sizes, beyond depth"}[kind]  # fmt: skip
        cells = [ci(qualities[e][key]) + excludes_zero(qualities[e][key]) for e in pairs]
        pool = pooled({e: qualities[e] for e in pairs}, kind)
        out.append(f"| {label} | " + " | ".join(cells) + f" | {ci(pool)}{excludes_zero(pool)} |")
    for key in ("cui_mean_minus_depth", "cui_mean_minus_size", "cui_mean_minus_best_other"):
        cells = []
        for e in pairs:
            d = qualities[e]["paired"].get(key)
            other = f" (`{d['other']}`)" if d and d.get("other") else ""
            cells.append(ci(d) + excludes_zero(d or {}) + other)
        out.append(f"| ρ({key.replace('_minus_', ') − ρ(')}) | " + " | ".join(cells) + " | |")
    cells = ["**yes**" if qualities[e]["cui_adds_to_size"] else "**no**" for e in pairs]
    out.append("| criterion holds | " + " | ".join(cells) + " | |")
    if len(ft_group) > 1:
        out += ["", "The same pair fine-tuned with other seeds:", ""]
        header(ft_group)
        row("fine-tuned model (test)", lambda q: ci(q["finetuned"]["test"], 3), ft_group)
        row(
            "measured best, test",
            lambda q: f"`{q['measured_best']['label']}` {ci(q['measured_best']['test'], 3)}",
            ft_group,
        )
        for key in ("cui_mean", "depth", "size", "probe"):
            row(f"ρ {NAMES[key]}", lambda q, k=key: ci(q["predictors"][k]["rho"]), ft_group)
        for kind, key in STATISTICS.items():
            row(kind, lambda q, k=key: ci(q[k]) + excludes_zero(q[k]), ft_group)
        row("criterion holds", lambda q: "yes" if q["cui_adds_to_size"] else "no", ft_group)
        out += ["", "¹ CUI orders the splits exactly as depth inside every group of equal size: "
                "nothing is left to correlate."]  # fmt: skip
    out += ["", "Per class: the class's own best split against the global best, gain in that "
            "class's test recall (whole procedure resampled):", ""]  # fmt: skip
    out += ["| experiment | class (test n) | own / global | gain | beyond CI |", "|---" * 5 + "|"]
    for e in pairs:
        for c in qualities[e]["per_class"]:
            m = c.get("measured")
            if m:
                out.append(
                    f"| `{e}` | {c['class']} ({c['n_test']}) | {m['own_best']} / "
                    f"{m['global_best']} | {ci(m['gain'], 3)} | "
                    f"{'yes' if m['beyond_ci'] else 'no'} |"
                )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy finished experiments' files into the study folder")
    c.add_argument("experiments", nargs="+")
    c.add_argument("--workdir", type=Path, default=Path("."))
    c.add_argument("--config", type=Path, default=Path("config/validate.yaml"))
    c.add_argument("--out", type=Path, default=Path("docs/study"))
    c.add_argument("--trained-at", default=None, help="commit the retraining ran at, if earlier")
    g = sub.add_parser("targets", help="print the quality.json of every study experiment")
    g.add_argument("--config", type=Path, default=Path("config/validate.yaml"))
    f = sub.add_parser("figure", help="draw the study's figure across pairs")
    f.add_argument("--study", type=Path, default=Path("docs/study"))
    f.add_argument("--pairs", nargs="+", default=None, help="default: every non -ft experiment")
    f.add_argument("--out", type=Path, nargs="+", default=[Path("docs/study/predictors.png")])
    t = sub.add_parser("tables", help="print the study's markdown tables")
    t.add_argument("--study", type=Path, default=Path("docs/study"))
    t.add_argument("--pairs", nargs="+", default=None, help="default: every non -ft experiment")
    a = ap.parse_args(argv)
    if a.command == "collect":
        collect(a.workdir, a.out, a.config, a.experiments, a.trained_at)
        return
    if a.command == "targets":
        exps = yaml.safe_load(a.config.read_text())["experiments"]
        print(" ".join(f"results/{e}/quality.json" for e in exps))
        return
    qualities = load(a.study)
    pairs = a.pairs or [e for e in qualities if "-ft" not in e]
    if a.command == "figure":
        chosen = {e: qualities[e] for e in pairs}
        pool = {kind: pooled(chosen, kind) for kind in STATISTICS}
        for path in study_figure(chosen, STATISTICS, pool, a.out):
            print(path)
        return
    base = [e for e in pairs if any(f.startswith(e + "-ft") for f in qualities)]
    ft_group = (
        [base[0]] + sorted(f for f in qualities if f.startswith(base[0] + "-ft")) if base else []
    )
    print(tables(qualities, pairs, ft_group))


if __name__ == "__main__":
    main()
