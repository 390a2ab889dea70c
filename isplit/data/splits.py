"""Deterministic stratified splitting, with exact duplicates kept in one split.

Per class, the samples (in ``sample_id`` order, so the archive's listing order does not matter)
are shuffled with a generator seeded by ``(seed, label)``; the first ``round(test * n)`` go to
test, the next ``round(val * n)`` to val, the rest to train.  Seeding per class keeps one class's
split unchanged when another class gains or loses an image.  Rounding is half-up (Python's
``round`` rounds 2.5 to 2, which would make 5% of 50 images zero).

Exact duplicates.  Two samples whose decoded pixels are identical (same :attr:`Sample.digest`)
form a group, and a group is assigned as one unit: otherwise a test image can have an exact copy
in train and the test accuracy rewards memorising it (animal-mnist has 284 such pairs; with the
per-sample split of seed 0, 47 test images had their copy in train).  The walk through each
class's shuffled order is the same as above; a group is placed where it first comes up, in test,
else val, where it still fits in that split's quota, else in train.  A later single image fills
the gap it leaves, so the counts are those of the configured fractions unless only groups are
left (a group larger than the test and val quotas always goes to train).  Without duplicates
the result is exactly the per-sample split.  A group whose members carry different
labels is placed by the first class (in class-list order) that reaches it; the other classes
count those members as already placed.

The digest hashes decoded pixels, not file bytes, for every source: an array source has no
bytes, and PNG files carry metadata (ELPV's cells each hold ``date:create``/``date:modify``
text chunks) that makes the same pixels saved twice differ byte for byte.  :func:`pixel_digest`
gives an array row and a file with the same pixels the same digest.

:func:`duplicate_report` counts the groups for ``prepare_report.json`` — how many straddle splits
now (possible only where a split is official and fixed) and how many would have straddled had
the per-sample split been used.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.manifest import SPLITS, Sample

DIGEST_METHOD = (
    "sha256 of the decoded pixels (mode, width x height, raw pixel bytes); palette images are "
    "resolved to RGBA first; equal digests = exact duplicates"
)
# Groups listed by sample id in the report; the counts cover all of them.
REPORT_GROUPS = 100


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


# --------------------------------------------------------------------------- digests


def pixel_digest(mode: str, size: tuple[int, int], pixels: bytes) -> str:
    """The content digest of an image given as PIL mode, ``(width, height)`` and raw bytes."""
    h = hashlib.sha256(f"{mode} {size[0]}x{size[1]}\n".encode())
    h.update(pixels)
    return h.hexdigest()


def image_digest(source: bytes | Path) -> str:
    """:func:`pixel_digest` of an encoded image (bytes or a file); its first frame, as decoded.

    Decodes the image (again: :func:`isplit.data.images.check_image` does not keep the pixels),
    so call it only on images that passed that check.
    """
    import io
    import warnings

    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # same reasoning as check_image: warnings are harmless
        with Image.open(fp) as im:
            # the same indices under two palettes are different pictures
            img = im.convert("RGBA") if im.mode in ("P", "PA") else im
            return pixel_digest(img.mode, img.size, img.tobytes())


def array_digests(images) -> list[str]:
    """:func:`pixel_digest` of each row of a uint8 array (N×H×W grey or N×H×W×3 RGB)."""
    import numpy as np

    images = np.ascontiguousarray(images, dtype=np.uint8)
    mode = "L" if images.ndim == 3 else "RGB"
    size = (int(images.shape[2]), int(images.shape[1]))
    return [pixel_digest(mode, size, row.tobytes()) for row in images]


# --------------------------------------------------------------------------- splitting


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _units(samples: list[Sample]) -> dict[int, list[Sample]]:
    """The unit each sample is placed with (by ``id``): its duplicate group, or itself."""
    by_digest: dict[str, list[Sample]] = {}
    for s in samples:
        if s.digest is not None:
            by_digest.setdefault(s.digest, []).append(s)
    unit = {id(s): [s] for s in samples}
    for members in by_digest.values():
        for s in members:
            unit[id(s)] = members
    return unit


def _pick(counts: dict[str, int], quota: dict[str, int], k: int) -> str:
    """The split for a unit with ``k`` samples of the class: test, else val, where the ``k``
    still fit in the quota, else train (for ``k = 1``: the per-sample rule).

    A unit that does not fit is not squeezed in: a later, smaller unit fills the gap, so the
    counts come out exact unless only big groups are left.
    """
    for name in ("test", "val"):
        if counts[name] + k <= quota[name]:
            return name
    return "train"


def assign_stratified(
    samples: list[Sample], classes: list[str], *, val: float, test: float, seed: int
) -> None:
    """Set ``split`` on each of ``samples`` (stratified by class, exact duplicates — equal
    ``digest`` — together), and ``ungrouped_split`` to the split each would have had alone; see
    the module docstring.  Duplicates outside ``samples`` (e.g. in an official test split) are
    not seen here; :func:`duplicate_report` counts them."""
    import numpy as np

    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.class_name, []).append(s)
    position = {name: i for i, name in enumerate(classes)}
    for name in by_class:
        if name not in position:
            raise DatasetError(f"class {name!r} is not in the class list")
    unit = _units(samples)
    placed: set[int] = set()
    for name in sorted(by_class, key=position.__getitem__):
        group = sorted(by_class[name], key=lambda s: s.sample_id)
        n = len(group)
        n_test = min(_half_up(test * n), n)
        n_val = min(_half_up(val * n), n - n_test)
        quota = {"test": n_test, "val": n_val}
        rng = np.random.default_rng([seed, position[name]])
        order = rng.permutation(n)
        # members placed earlier with a duplicate of another class count towards the quotas
        counts = dict.fromkeys(SPLITS, 0)
        for s in group:
            if id(s) in placed:
                counts[s.split] += 1
        for rank, i in enumerate(order):
            s = group[i]
            s.ungrouped_split = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
            if id(s) in placed:
                continue
            members = unit[id(s)]
            split = _pick(counts, quota, sum(m.class_name == name for m in members))
            for m in members:
                m.split = split
                placed.add(id(m))
                if m.class_name == name:
                    counts[split] += 1


# --------------------------------------------------------------------------- report


def duplicate_report(samples: list[Sample]) -> dict:
    """Counts of the exact-duplicate groups among ``samples`` (splits assigned), for the report.

    ``*_without_grouping`` use each sample's ``ungrouped_split`` where the splitter drew one, so
    they say what the per-sample split would have done; where a split is official (fixed by the
    source) both numbers count the same, unavoidable, cross-split copies.
    """
    by_digest: dict[str, list[Sample]] = {}
    for s in samples:
        if s.digest is not None:
            by_digest.setdefault(s.digest, []).append(s)
    groups = sorted(
        (sorted(g, key=lambda s: s.sample_id) for g in by_digest.values() if len(g) > 1),
        key=lambda g: (-len(g), g[0].sample_id),
    )

    def counts(split_of) -> tuple[int, dict[str, int]]:
        straddling = 0
        copies = {"val": 0, "test": 0}
        for g in groups:
            splits = [split_of(s) for s in g]
            straddling += len(set(splits)) > 1
            if "train" in splits:
                for x in splits:
                    if x in copies:
                        copies[x] += 1
        return straddling, copies

    after, copies_after = counts(lambda s: s.split)
    before, copies_before = counts(lambda s: s.ungrouped_split or s.split)
    return {
        "method": DIGEST_METHOD,
        "n_groups": len(groups),
        "n_images": sum(len(g) for g in groups),
        "max_group_size": max((len(g) for g in groups), default=0),
        "n_groups_with_several_classes": sum(len({s.class_name for s in g}) > 1 for g in groups),
        "n_groups_across_splits": after,
        "n_groups_across_splits_without_grouping": before,
        "eval_images_with_copy_in_train": copies_after,
        "eval_images_with_copy_in_train_without_grouping": copies_before,
        "groups": [[s.sample_id for s in g] for g in groups[:REPORT_GROUPS]],
        "n_groups_listed": min(len(groups), REPORT_GROUPS),
    }
