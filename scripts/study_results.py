"""The oracle study's tables (docs/study.md), from the experiments' quality.json files.

Reads ``results/<exp>/quality.json`` of each named experiment of a finished
``config/validate.yaml`` run and prints markdown: how each zero-retraining predictor ranked the
retrained splits (Spearman ρ with its interval) and what choosing by it cost (regret), whether
CUI adds to activation size and depth (the criterion stated in validate.yaml before the run),
and, per class, whether a class's own best split beats the global one beyond the interval.
Every number is as ``quality.json`` has it: chosen on validation, reported on test, 95 %
bootstrap intervals over test images and retraining seeds.

    .venv/bin/python -m scripts.study_results --workdir . elpv-ae elpv-budget
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAMES = {
    "cui_mean": "CUI, channel mean (I-SPLIT)",
    "cui_sum": "CUI, channel sum",
    "size": "−log10 activation size (CDE)",
    "depth": "depth (FLOPs share on device)",
    "probe": "linear probe (pooled activation)",
    "random": "random ranking",
}


def ci(entry: dict | None, digits: int = 2) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    v = f"{entry['value']:.{digits}f}"
    if not entry.get("ci"):
        return v
    lo, hi = entry["ci"]
    return f"{v} [{lo:.{digits}f}, {hi:.{digits}f}]"


def excludes_zero(entry: dict) -> str:
    if not entry.get("ci"):
        return ""
    lo, hi = entry["ci"]
    return " (> 0)" if lo > 0 else " (< 0)" if hi < 0 else ""


def tables(qualities: dict[str, dict]) -> str:
    exps = list(qualities)
    out = ["| | " + " | ".join(f"`{e}`" for e in exps) + " |", "|---" * (len(exps) + 1) + "|"]

    def row(label, cell):
        out.append(f"| {label} | " + " | ".join(cell(qualities[e]) for e in exps) + " |")

    row("metric", lambda q: q["metric"])
    row("split points × seeds", lambda q: f"{q['n_points']} × {max(q['n_seeds'])}")
    row("test / val images", lambda q: f"{q['n_images']['test']} / {q['n_images']['val']}")
    row("fine-tuned model, no split (test)", lambda q: ci(q["finetuned"]["test"], 3))
    row(
        "measured best split (chosen on val), test",
        lambda q: f"`{q['measured_best']['label']}` {ci(q['measured_best']['test'], 3)}",
    )
    out += ["", "Spearman ρ of each predictor with the test accuracy after retraining:", ""]
    out += ["| predictor | " + " | ".join(f"`{e}`" for e in exps) + " |"]
    out += ["|---" * (len(exps) + 1) + "|"]
    for key, label in NAMES.items():
        if key == "random":
            continue
        row(label, lambda q, k=key: ci(q["predictors"].get(k, {}).get("spearman")))
    out += ["", "Regret of each predictor's choice (test accuracy lost against the measured "
            "best; lower is better):", ""]  # fmt: skip
    out += ["| predictor | " + " | ".join(f"`{e}`" for e in exps) + " |"]
    out += ["|---" * (len(exps) + 1) + "|"]
    for key, label in NAMES.items():

        def regret(q, k=key):
            p = q["predictors"].get(k)
            if not p:
                return "–"
            choice = f" (`{p['choice_label']}`)" if p.get("choice_label") else ""
            return ci(p["regret"], 3) + choice

        row(label, regret)
    out += ["", "CUI beyond size and depth (criterion fixed before the run):", ""]
    out += ["| statistic | " + " | ".join(f"`{e}`" for e in exps) + " |"]
    out += ["|---" * (len(exps) + 1) + "|"]
    row(
        "partial Spearman, CUI given size and depth",
        lambda q: (
            ci(q["partial_spearman_cui_given_size_depth"])
            + excludes_zero(q["partial_spearman_cui_given_size_depth"])
        ),
    )
    row(
        "Kendall τ within equal-size groups",
        lambda q: (
            ci(q["kendall_cui_within_equal_size"])
            + excludes_zero(q["kendall_cui_within_equal_size"])
            + f", {q['kendall_cui_within_equal_size'].get('pairs', 0)} pairs"
        ),
    )
    row("criterion holds", lambda q: "**yes**" if q["cui_adds_to_size"] else "**no**")
    out += ["", "Per class: the class's own best split against the global best, gain in that "
            "class's test recall:", ""]  # fmt: skip
    out += [
        "| experiment | class (test n) | measured: own / global, gain | beyond CI | "
        "I-SPLIT predicted: own / global, gain | beyond CI |",
        "|---|---|---|---|---|---|",
    ]
    for e, q in qualities.items():
        for c in q["per_class"]:
            m, p = c["measured"], c["predicted"]
            out.append(
                f"| `{e}` | {c['class']} ({c['n_test']}) | {m['own_best']} / {m['global_best']}, "
                f"{ci(m['gain'], 3)} | {'yes' if m['beyond_ci'] else 'no'} | "
                f"{p['own_best']} / {p['global_best']}, {ci(p['gain'], 3)} | "
                f"{'yes' if p['beyond_ci'] else 'no'} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--workdir", type=Path, default=Path("."))
    args = ap.parse_args()
    qualities = {
        e: json.loads((args.workdir / "results" / e / "quality.json").read_text())
        for e in args.experiments
    }
    print(tables(qualities))


if __name__ == "__main__":
    main()
