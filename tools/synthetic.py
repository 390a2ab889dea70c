"""A tiny prepared dataset in the manifest format, made of noise: for tests, smoke runs and
latency measurements, where the pixels do not matter but the file layout must be real.

Three learnable classes of noisy grey patterns (horizontal stripes, vertical stripes, a blob).
"""

from __future__ import annotations

import json
from pathlib import Path

CLASSES = ("horizontal", "vertical", "blob")


#: the input and a short fine-tuning schedule the tests train small networks with on it
INPUT = {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"}
TRAIN_CFG = {
    "epochs": 4,
    "batch_size": 30,
    "optimizer": "adamw",
    "lr": 0.003,
    "weight_decay": 0.05,
    "schedule": "onecycle",
    "warmup": 0.3,
    "augment": "flip",
}


def write(root: str | Path, per_class=(60, 20, 20), size: int = 28, seed: int = 0) -> Path:
    """Write ``images.npy``, ``manifest.parquet`` and ``classes.json`` into ``root``;
    ``per_class`` is the number of images per class in train, val and test (or one int)."""
    import numpy as np
    import pandas as pd

    if isinstance(per_class, int):
        per_class = (per_class,) * 3
    root = Path(root)
    rng = np.random.default_rng(seed)
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
                images.append((255 * (0.7 * proto + 0.3 * rng.random((size, size)))).astype("u1"))
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
            "class_name": [CLASSES[c] for c in labels],
            "split": splits,
        }
    ).to_parquet(root / "manifest.parquet")
    (root / "classes.json").write_text(json.dumps(list(CLASSES)))
    return root
