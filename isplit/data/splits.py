"""Deterministic stratified splitting.

Per class, the samples (in ``sample_id`` order, so the archive's listing order does not matter)
are shuffled with a generator seeded by ``(seed, label)``; the first ``round(test * n)`` go to
test, the next ``round(val * n)`` to val, the rest to train.  Seeding per class keeps one class's
split unchanged when another class gains or loses an image.  Rounding is half-up (Python's
``round`` rounds 2.5 to 2, which would make 5% of 50 images zero).
"""

from __future__ import annotations

import math

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.manifest import Sample


def split_config(cfg: DatasetSettings) -> dict:
    """The dataset's ``split`` fractions and seed, checked together (the schema checks each
    value alone)."""
    val, test, seed = float(cfg.split["val"]), float(cfg.split["test"]), cfg.split["seed"]
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DatasetError(
            f"split fractions must be >= 0 and sum below 1, got val={val} test={test}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"split seed must be a non-negative integer, got {seed!r}")
    return {"val": val, "test": test, "seed": seed}


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def assign_stratified(
    samples: list[Sample], classes: list[str], *, val: float, test: float, seed: int
) -> None:
    """Set ``split`` on each of ``samples`` (stratified by class); see the module docstring."""
    import numpy as np

    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.class_name, []).append(s)
    position = {name: i for i, name in enumerate(classes)}
    for name, group in by_class.items():
        if name not in position:
            raise DatasetError(f"class {name!r} is not in the class list")
        group.sort(key=lambda s: s.sample_id)
        n = len(group)
        n_test = min(_half_up(test * n), n)
        n_val = min(_half_up(val * n), n - n_test)
        rng = np.random.default_rng([seed, position[name]])
        order = rng.permutation(n)
        for rank, i in enumerate(order):
            group[i].split = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
