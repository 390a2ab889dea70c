import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


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
