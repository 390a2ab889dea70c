"""The dataset sources: where each comes from, its download file name, downloading and
preparing it (the functions the workflow calls). See :mod:`isplit.data` for the prepared format."""

from __future__ import annotations

from pathlib import Path

from isplit.config import ConfigError, DatasetSettings, settings
from isplit.data import DatasetError

__all__ = [
    "ANIMAL_MNIST_REQUIREMENT",
    "ANIMAL_MNIST_SHA256",
    "CANONICAL_URLS",
    "ELPV_REQUIREMENT",
    "ELPV_SHA256",
    "PIP_WHEELS",
    "SOURCES",
    "canonical_url",
    "download",
    "download_filename",
    "prepare",
]

SOURCES = (
    "animal-mnist",
    "notmnist",
    "tiny-imagenet-200",
    "chest-xray-pneumonia",
    "imagefolder",
    "elpv",
)


ANIMAL_MNIST_REQUIREMENT = "animal-mnist==0.4"
# Verified by hand on the PyPI wheel animal_mnist-0.4-py3-none-any.whl.
ANIMAL_MNIST_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
ANIMAL_MNIST_WHEEL = "animal_mnist-0.4-py3-none-any.whl"

ELPV_REQUIREMENT = "elpv-dataset==1.0.0.post1"
# Verified by hand on the PyPI wheel elpv_dataset-1.0.0.post1-py3-none-any.whl (90,801,454 bytes:
# labels.csv and the 2,624 PNGs, read as files).
ELPV_SHA256 = "85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c"
ELPV_WHEEL = "elpv_dataset-1.0.0.post1-py3-none-any.whl"

# Sources fetched from PyPI with ``pip download`` unless a ``url`` is configured:
# source -> (requirement, pinned sha256 of its wheel).
PIP_WHEELS = {
    "animal-mnist": (ANIMAL_MNIST_REQUIREMENT, ANIMAL_MNIST_SHA256),
    "elpv": (ELPV_REQUIREMENT, ELPV_SHA256),
}

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
    "elpv": ELPV_WHEEL,
    "tiny-imagenet-200": "tiny-imagenet-200.zip",
    "chest-xray-pneumonia": "ChestXRay2017.zip",
}


def _settings(cfg) -> DatasetSettings:
    """A dataset config (a mapping, filled and checked against the schema, or settings)."""
    try:
        return settings("dataset", cfg)
    except ConfigError as e:
        raise DatasetError(str(e)) from e


def canonical_url(cfg) -> str | None:
    """The built-in URL of a source (None for animal-mnist and elpv, fetched via pip, and
    imagefolder)."""
    ds = _settings(cfg)
    if ds.source == "notmnist":
        return CANONICAL_URLS[f"notmnist:{ds.variant}"]
    return CANONICAL_URLS.get(ds.source)


def download_filename(cfg) -> str | None:
    """File name of the download under ``resources/downloads/<dataset>/``; None: no download."""
    ds = _settings(cfg)
    if ds.source == "imagefolder":
        return None
    if ds.source == "notmnist":
        return f"notMNIST_{ds.variant}.tar.gz"
    return _FILENAMES[ds.source]


def download(
    cfg, dest, *, timeout: float = 60.0, retries: int = 10, retry_budget_s: float = 300.0
) -> str:
    """Fetch the dataset's archive to ``dest``, verify it and record its sha256 beside it
    (``<dest>.sha256``); returns the hash. ``timeout``, ``retries``, ``retry_budget_s``: the
    ``downloads`` settings (:func:`isplit.io.fetch.download`).

    The hash is checked against ``cfg["sha256"]`` when given; a wheel from PyPI (animal-mnist,
    elpv: :data:`PIP_WHEELS`) is otherwise checked against its pinned hash. ``cfg["url"]``
    replaces the canonical URL (for those two it is the wheel's URL, fetched over plain HTTP
    instead of through pip).
    Raises :class:`isplit.errors.DownloadError`.
    """
    from isplit.io import fetch

    ds = _settings(cfg)
    source = ds.source
    if source == "imagefolder":
        raise DatasetError("an imagefolder dataset is read from its path; nothing to download")
    url, sha256 = ds.url, ds.sha256
    # the workflow's layout is resources/downloads/<dataset>/<file>: name the config key
    origin = f"the config key datasets.{Path(dest).parent.name}.sha256"
    if source in PIP_WHEELS and not url:
        requirement, pinned = PIP_WHEELS[source]
        digest = fetch.pip_download(
            requirement,
            dest,
            sha256=sha256 or pinned,
            sha256_origin=(
                origin if sha256 else f"the hash pinned for {requirement} (sources.PIP_WHEELS)"
            ),
            timeout=max(timeout, 60.0),
        )
    else:
        digest = fetch.download(
            url or canonical_url(ds),
            dest,
            sha256=sha256,
            sha256_origin=origin,
            kind=fetch.archive_kind(Path(dest).name),
            timeout=timeout,
            retries=retries,
            retry_budget_s=retry_budget_s,
        )
    # only now, the file verified and opened: a refused download leaves no record behind
    fetch.record_checksum(dest, digest)
    return digest


def prepare(cfg, archive, out_dir, *, limits=None) -> dict:
    """Build the prepared dataset in ``out_dir`` from ``archive`` and return the report dict.

    ``archive`` is the downloaded file (None for imagefolder); ``limits`` is the ``downloads``
    config section (or its settings) whose archive limits bound what may be unpacked (None: the
    schema's defaults). An existing ``out_dir`` is replaced; on any failure nothing is left
    behind and ``out_dir`` is untouched.
    """
    from isplit.data.archives import archive_limits
    from isplit.data.build import Builder, staging

    ds = _settings(cfg)
    source = ds.source
    if source != "imagefolder":
        if archive is None:
            raise DatasetError(f"source {source!r} needs the downloaded archive")
        archive = Path(archive)
        if not archive.is_file():
            raise DatasetError(f"archive {archive} does not exist")
    # imported by name, not through importlib: the code hash of a rule follows static imports
    from isplit.data import animal_mnist, chest_xray, elpv, imagefolder, notmnist, tiny_imagenet

    module = {
        "animal-mnist": animal_mnist,
        "notmnist": notmnist,
        "tiny-imagenet-200": tiny_imagenet,
        "chest-xray-pneumonia": chest_xray,
        "imagefolder": imagefolder,
        "elpv": elpv,
    }[source]
    with staging(out_dir) as stage:
        builder = Builder(
            stage, cfg=ds, source=source, archive=archive, limits=archive_limits(limits)
        )
        module.prepare(ds, archive, builder)
        return builder.finish()
