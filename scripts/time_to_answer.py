"""Where a run's minutes went: Snakemake's benchmark records summed per rule.

Reads ``benchmarks/<rule>/**.tsv`` of a working directory (every costly rule declares one) and
prints a markdown table: rule, jobs, wall seconds (sum and largest job), CPU seconds, and the
share of the benchmarked total. Rules without a benchmark (the cheap ones) are not listed.

    .venv/bin/python -m scripts.time_to_answer --workdir .
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def collect(workdir: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "benchmarks").parts[0]
        b = pd.read_csv(tsv, sep="\t")
        rows.append(
            {"rule": rule, "s": float(b["s"].iloc[0]), "cpu_s": float(b["cpu_time"].iloc[0])}
        )
    df = pd.DataFrame(rows, columns=["rule", "s", "cpu_s"])
    table = df.groupby("rule").agg(jobs=("s", "size"), wall_s=("s", "sum"), max_s=("s", "max"),
                                   cpu_s=("cpu_s", "sum"))  # fmt: skip
    table["share"] = table["wall_s"] / table["wall_s"].sum()
    return table.sort_values("wall_s", ascending=False)


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| rule | jobs | wall time (sum) | largest job | CPU time | share |",
        "|---|---|---|---|---|---|",
    ]
    for rule, r in table.iterrows():
        lines.append(
            f"| `{rule}` | {int(r['jobs'])} | {r['wall_s'] / 60:.1f} min | {r['max_s']:.0f} s | "
            f"{r['cpu_s'] / 60:.1f} min | {100 * r['share']:.0f} % |"
        )
    total = table["wall_s"].sum()
    lines.append(
        f"| all benchmarked jobs | {int(table['jobs'].sum())} | {total / 60:.1f} min | | | |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=".", type=Path)
    args = ap.parse_args()
    print(markdown(collect(args.workdir)))


if __name__ == "__main__":
    main()
