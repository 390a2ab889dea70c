"""Coverage and power of the oracle study's statistics, by simulation with a known answer.

Simulates studies like the ELPV one (19 MobileNetV2 splits, 262 test images, 5 retraining
seeds; isplit.evaluation.coverage) with predictors whose true ρ, partial ρ and within-size
statistic are set, and prints for each interval method how often the 95 % interval holds the
truth (coverage) and how often it excludes 0 on the positive side (power). The power row is
what config/validate.yaml states before the study: the smallest effect the study detects 80 %
of the time.

    .venv/bin/python -m scripts.study_power --targets 0 0.5 0.8 --reps 200
    .venv/bin/python -m scripts.study_power --statistics partial within_size \\
        --targets 0.6 0.7 0.8 0.9 --methods inversion
"""

from __future__ import annotations

import argparse
import time

from isplit.evaluation import association, coverage


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    ap.add_argument("--statistics", nargs="+", default=list(association.DESIGNS),
                    choices=association.DESIGNS)  # fmt: skip
    ap.add_argument("--methods", nargs="+", default=list(coverage.METHODS),
                    choices=coverage.METHODS)  # fmt: skip
    ap.add_argument("--reps", type=int, default=200, help="simulated studies per scenario")
    ap.add_argument("--boot", type=int, default=400, help="bootstrap replicates per study")
    ap.add_argument("--seeds", type=int, default=5, help="retraining seeds of the design")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    table = coverage.coverage(
        coverage.Design(n_seeds=a.seeds),
        a.targets,
        statistics=a.statistics,
        n_rep=a.reps,
        n_boot=a.boot,
        seed=a.seed,
        methods=a.methods,
    )
    print(table.round(3).to_string(index=False))
    print(f"\n{a.reps} simulated studies per scenario, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
