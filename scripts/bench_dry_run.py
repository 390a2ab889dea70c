"""How long the workflow takes to parse, validate and build a DAG: a dry run of a config.

Prints one JSON line: the config, the number of planned jobs and the wall times of ``--repeat``
dry runs (seconds). A benchmark, not a test: the numbers depend on the machine and its load.

    .venv/bin/python -m scripts.bench_dry_run --config config/paper.yaml --repeat 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config/paper.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    snakemake = Path(sys.executable).parent / "snakemake"
    walls, jobs = [], None
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = subprocess.run(
                # not -q: a quiet dry run leaves out the job stats the count comes from
                [str(snakemake), "-n", "--snakefile", str(ROOT / "Snakefile"),
                 "--configfile", args.config, "--directory", work],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            walls.append(round(time.perf_counter() - t0, 3))
            totals = [
                line.split()[-1] for line in r.stdout.splitlines() if line.startswith("total")
            ]
            jobs = int(totals[-1]) if totals else jobs
    print(json.dumps({"config": args.config, "jobs": jobs, "wall_s": walls, "min_s": min(walls)}))


if __name__ == "__main__":
    main()
