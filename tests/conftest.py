import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_array_dataset(root: Path, per_class=(60, 20, 20), size=28, seed=0) -> Path:
    """A prepared dataset in the manifest format (images.npy + manifest.parquet +
    classes.json): three learnable classes of noisy grey patterns."""
    rng = np.random.default_rng(seed)
    classes = ["horizontal", "vertical", "blob"]
    yy, xx = np.mgrid[:size, :size]
    protos = [
        (np.sin(yy / 2.0) > 0).astype(float),
        (np.sin(xx / 2.0) > 0).astype(float),
        (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).astype(float),
    ]
    images, labels, splits = [], [], []
    for split, n in zip(("train", "val", "test"), per_class, strict=True):
        for c, proto in enumerate(protos):
            for _ in range(n):
                img = 0.7 * proto + 0.3 * rng.random((size, size))
                images.append((255 * img).astype(np.uint8))
                labels.append(c)
                splits.append(split)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", np.stack(images))
    n = len(labels)
    pd.DataFrame(
        {
            "sample_id": [f"synthetic/{i:05d}" for i in range(n)],
            "path": pd.Series([None] * n, dtype="string"),
            "index": np.arange(n, dtype=np.int64),
            "label": np.asarray(labels, dtype=np.int64),
            "class_name": [classes[c] for c in labels],
            "split": splits,
        }
    ).to_parquet(root / "manifest.parquet")
    (root / "classes.json").write_text(json.dumps(classes))
    return root


@pytest.fixture(scope="session")
def array_dataset(tmp_path_factory) -> Path:
    return write_array_dataset(tmp_path_factory.mktemp("data") / "synthetic")


def snakemake(*args, cwd=ROOT, check=True, timeout=1200):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def planned_jobs(output: str) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in output else ""
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """config/tiny.yaml run to the end in a scratch working directory."""
    work = tmp_path_factory.mktemp("tiny")
    r = snakemake(
        "--cores", "2", "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work)
    )
    return work, r
