"""The ``elpv`` source: a small fake ``elpv-dataset`` wheel in the real layout, built here, fetched
over loopback HTTP (as a configured URL, and through ``pip download --no-index --find-links``),
prepared under each ``task``; plus the opt-in test against the real wheel on PyPI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from isplit.config import ConfigError, settings
from isplit.data import DatasetError
from isplit.data.sources import (
    ELPV_SHA256,
    ELPV_WHEEL,
    SOURCES,
    canonical_url,
    download,
    download_filename,
    prepare,
)
from isplit.errors import DownloadError
from tools.loopback_http import FileServer
from tools.wheels import make_wheel

# (defect probability as labels.csv writes it, cell type, number of cells)
CELLS = [
    ("0.0", "mono", 6),
    ("0.0", "poly", 6),
    ("0.3333333333333333", "mono", 4),
    ("0.3333333333333333", "poly", 4),
    ("0.6666666666666666", "mono", 2),
    ("0.6666666666666666", "poly", 2),
    ("1.0", "mono", 5),
    ("1.0", "poly", 5),
]
N = sum(n for *_, n in CELLS)  # 34
SPLIT = {"val": 0.2, "test": 0.2, "seed": 0}


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def cell_png(seed: int, date: str = "2017-01-01T00:00:00") -> bytes:
    """A small grey PNG carrying the text chunks the real cells have (dates differ per file)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (30, 30), dtype=np.uint8)
    info = PngInfo()
    info.add_text("date:create", date)
    info.add_text("date:modify", date)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def rows():
    """``(file, probability, type)`` per cell, in the wheel's order."""
    out, i = [], 0
    for prob, cell_type, n in CELLS:
        for _ in range(n):
            i += 1
            out.append((f"cell{i:04d}.png", prob, cell_type))
    return out


def labels_csv(lines) -> bytes:
    # the real file pads its columns with spaces
    return "".join(f"images/{f}  {p:<19} {t}\n" for f, p, t in lines).encode()


def elpv_members(lines=None, images=None) -> dict:
    lines = rows() if lines is None else lines
    if images is None:
        images = {f: cell_png(i) for i, (f, _, _) in enumerate(lines)}
    base = "elpv_dataset/data/"
    return {
        # importing the package would fail the test: its code is never run
        "elpv_dataset/__init__.py": b"raise SystemExit('elpv_dataset must not be imported')\n",
        base + "labels.csv": labels_csv(lines),
        **{base + "images/" + f: data for f, data in images.items()},
    }


def elpv_wheel(directory, members=None):
    directory.mkdir(parents=True, exist_ok=True)
    members = elpv_members() if members is None else members
    return make_wheel(directory, "elpv-dataset", "1.0.0.post1", members)


def wheel_images(wheel) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        prefix = "elpv_dataset/data/images/"
        return {n[len(prefix) :]: zf.read(n) for n in zf.namelist() if n.startswith(prefix)}


# --------------------------------------------------------------------------- registration


def test_elpv_is_registered():
    assert "elpv" in SOURCES
    assert download_filename({"source": "elpv"}) == ELPV_WHEEL
    assert ELPV_WHEEL == "elpv_dataset-1.0.0.post1-py3-none-any.whl"
    assert canonical_url({"source": "elpv"}) is None  # fetched through pip
    assert settings("dataset", {"source": "elpv"}).task == "defect2"
    with pytest.raises(ConfigError, match="dataset.task"):
        settings("dataset", {"source": "elpv", "task": "defect3"})


# --------------------------------------------------------------------------- download


def test_elpv_url_over_loopback_end_to_end(server, tmp_path):
    wheel = elpv_wheel(tmp_path / "links")
    data = wheel.read_bytes()
    cfg = {"source": "elpv", "split": SPLIT, "url": server.add("/" + wheel.name, data)}
    dest = tmp_path / "downloads" / "elpv" / download_filename(cfg)
    assert download(cfg, dest, timeout=5) == hashlib.sha256(data).hexdigest()
    out = tmp_path / "datasets" / "elpv"
    report = prepare(cfg, dest, out)

    df = pd.read_parquet(out / "manifest.parquet")
    assert json.loads((out / "classes.json").read_text()) == ["functional", "defective"]
    assert len(df) == N and df["sample_id"].is_unique
    # the PNGs are the wheel's bytes, text chunks and all: never re-encoded
    originals = wheel_images(wheel)
    for row in df.itertuples():
        assert row.path == f"images/{row.sample_id}"
        assert (out / row.path).read_bytes() == originals[row.sample_id]
    assert report["source"] == "elpv" and report["task"] == "defect2"
    # functional = p0 + p33 = 20 cells -> 4/4/12; defective = p67 + p100 = 14 -> 3/3/8
    assert report["n_per_class"] == {
        "functional": {"train": 12, "val": 4, "test": 4},
        "defective": {"train": 8, "val": 3, "test": 3},
    }
    assert report["images"] == {"modes": {"L": N}, "min_size": [30, 30], "max_size": [30, 30]}
    assert report["labels_csv"]["probability"] == {"p0": 12, "p33": 8, "p67": 4, "p100": 10}
    assert report["labels_csv"]["type"] == {"mono": 17, "poly": 17}
    assert report["split"]["method"] == "stratified" and report["split"]["seed"] == 0
    assert report["duplicates"]["n_groups"] == 0


def pip_through_loopback(monkeypatch, server, wheel):
    """Make ``pip download`` see only ``wheel``, served by ``server`` (find-links to its URL)."""
    url = server.add("/links/" + wheel.name, wheel.read_bytes())
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the machine's index and mirrors: none
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", url)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    return "/links/" + wheel.name


def test_elpv_through_pip_and_the_pinned_hash(monkeypatch, server, tmp_path):
    wheel = elpv_wheel(tmp_path / "links")
    path = pip_through_loopback(monkeypatch, server, wheel)
    want = hashlib.sha256(wheel.read_bytes()).hexdigest()
    dest = tmp_path / "downloads" / ELPV_WHEEL

    # a configured hash replaces the pinned one (the fake wheel is not the real wheel)
    assert download({"source": "elpv", "sha256": want}, dest) == want
    assert server.requests_for(path), "pip did not fetch the wheel from the loopback server"
    assert dest.read_bytes() == wheel.read_bytes()
    assert (tmp_path / "downloads" / f"{ELPV_WHEEL}.sha256").read_text().split() == [
        want,
        ELPV_WHEEL,
    ]
    report = prepare({"source": "elpv", "task": "type"}, dest, tmp_path / "ds")
    assert report["n_images"] == N and report["task"] == "type"

    # without one, the pinned hash of the real wheel rejects it and nothing is left behind
    other = tmp_path / "other" / ELPV_WHEEL
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download({"source": "elpv"}, other)
    assert ELPV_SHA256 != want
    assert not other.parent.exists() or list(other.parent.iterdir()) == []


# --------------------------------------------------------------------------- tasks


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory):
    return elpv_wheel(tmp_path_factory.mktemp("elpv"))


@pytest.mark.parametrize(
    ("task", "classes", "counts"),
    [
        (
            "defect4",
            ["p0", "p33", "p67", "p100"],
            # p0 12 -> 2/2 (2.4), p33 8 -> 2/2 (1.6), p67 4 -> 1/1 (0.8), p100 10 -> 2/2
            {"p0": (8, 2, 2), "p33": (4, 2, 2), "p67": (2, 1, 1), "p100": (6, 2, 2)},
        ),
        ("type", ["mono", "poly"], {"mono": (11, 3, 3), "poly": (11, 3, 3)}),
        (
            "defect2",
            ["functional", "defective"],
            {"functional": (12, 4, 4), "defective": (8, 3, 3)},
        ),
    ],
)
def test_elpv_tasks(wheel_file, tmp_path, task, classes, counts):
    cfg = {"source": "elpv", "task": task, "split": SPLIT}
    out = tmp_path / task
    report = prepare(cfg, wheel_file, out)
    assert json.loads((out / "classes.json").read_text()) == classes
    assert report["n_per_class"] == {
        c: dict(zip(("train", "val", "test"), n, strict=True)) for c, n in counts.items()
    }
    df = pd.read_parquet(out / "manifest.parquet")
    expected = {
        "defect2": lambda p, t: "functional" if float(p) < 0.5 else "defective",
        "defect4": lambda p, t: {"0.0": "p0", "1.0": "p100"}.get(p, "p33" if p < "0.5" else "p67"),
        "type": lambda p, t: t,
    }[task]
    label_of = {f: expected(p, t) for f, p, t in rows()}
    assert dict(zip(df["sample_id"], df["class_name"], strict=True)) == label_of
    assert (df["class_name"] == [classes[i] for i in df["label"]]).all()
    # the images do not depend on the task, so every task sees the same files
    assert sorted(df["path"]) == [f"images/{f}" for f, _, _ in rows()]


def test_elpv_split_is_seeded(wheel_file, tmp_path):
    def splits(seed):
        cfg = {"source": "elpv", "split": {**SPLIT, "seed": seed}}
        prepare(cfg, wheel_file, tmp_path / str(seed))
        df = pd.read_parquet(tmp_path / str(seed) / "manifest.parquet")
        return dict(zip(df["sample_id"], df["split"], strict=True))

    first = splits(0)
    assert splits(0) == first
    assert splits(1) != first


def test_elpv_duplicates_by_pixels_not_bytes(tmp_path):
    lines = rows()
    images = {f: cell_png(i) for i, (f, _, _) in enumerate(lines)}
    # cell0002 and cell0003 re-save cell0001's pixels at other times: different bytes, same image
    for f, date in (("cell0002.png", "2018-05-05T10:00:00"), ("cell0003.png", "2019-01-01")):
        images[f] = cell_png(0, date)
    assert len({images[f"cell000{i}.png"] for i in (1, 2, 3)}) == 3
    wheel = elpv_wheel(tmp_path / "w", elpv_members(lines, images))
    report = prepare({"source": "elpv", "split": SPLIT}, wheel, tmp_path / "out")
    dup = report["duplicates"]
    assert dup["n_groups"] == 1 and dup["n_images"] == 3
    assert dup["groups"] == [["cell0001.png", "cell0002.png", "cell0003.png"]]
    assert dup["n_groups_across_splits"] == 0
    df = pd.read_parquet(tmp_path / "out" / "manifest.parquet").set_index("sample_id")
    assert df.loc[["cell0001.png", "cell0002.png", "cell0003.png"], "split"].nunique() == 1
    # still the configured counts: single cells fill what the group left
    assert report["n_per_class"]["functional"] == {"train": 12, "val": 4, "test": 4}


# --------------------------------------------------------------------------- bad input


def test_elpv_bad_wheels(tmp_path):
    def prep(members, name):
        wheel = elpv_wheel(tmp_path / name, members)
        return prepare({"source": "elpv"}, wheel, tmp_path / "out" / name)

    members = elpv_members()
    del members["elpv_dataset/data/labels.csv"]
    with pytest.raises(DatasetError, match="not the elpv-dataset wheel"):
        prep(members, "nolabels")

    bad = [("cell0001.png", "0.5", "mono")]
    with pytest.raises(DatasetError, match="probability '0.5'"):
        prep(elpv_members(bad, {"cell0001.png": cell_png(1)}), "prob")
    bad = [("cell0001.png", "1.0", "thin-film")]
    with pytest.raises(DatasetError, match="type 'thin-film'"):
        prep(elpv_members(bad, {"cell0001.png": cell_png(1)}), "type")
    bad = [("../cell0001.png", "1.0", "mono")]
    with pytest.raises(DatasetError, match="not images/"):
        prep(elpv_members(bad, {}), "path")
    bad = [("cell0001.png", "1.0", "mono")] * 2
    with pytest.raises(DatasetError, match="listed twice"):
        prep(elpv_members(bad, {"cell0001.png": cell_png(1)}), "twice")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []

    # a listed cell missing from the wheel is skipped, an unlisted one ignored; both counted
    lines = rows()
    images = {f: cell_png(i) for i, (f, _, _) in enumerate(lines)}
    del images["cell0005.png"]
    images["cell9999.png"] = cell_png(9999)
    report = prep(elpv_members(lines, images), "partial")
    assert report["n_images"] == N - 1
    assert report["skipped"] == [
        {
            "file": "elpv_dataset/data/images/cell0005.png",
            "reason": "listed in labels.csv but not in the wheel",
        }
    ]
    assert report["ignored"] == {"image without a row in labels.csv": 1}


def test_task_is_ignored_by_other_sources(tmp_path):
    src = tmp_path / "folder"
    for c, cls in enumerate(("a", "b")):
        (src / cls).mkdir(parents=True)
        for i in range(5):
            (src / cls / f"{i}.png").write_bytes(cell_png(10 * c + i))
    manifests = []
    for task in ("defect2", "type"):
        cfg = {"source": "imagefolder", "path": str(src), "task": task}
        report = prepare(cfg, None, tmp_path / task)
        assert "task" not in report and report["config"]["task"] == task
        manifests.append((tmp_path / task / "manifest.parquet").read_bytes())
    assert manifests[0] == manifests[1]


# --------------------------------------------------------------------------- real wheel


@pytest.mark.skipif(os.environ.get("ISPLIT_TEST_PYPI") != "1", reason="set ISPLIT_TEST_PYPI=1")
def test_real_elpv_from_pypi(tmp_path):
    cfg = {"source": "elpv"}
    dest = tmp_path / download_filename(cfg)
    assert download(cfg, dest) == ELPV_SHA256
    report = prepare(cfg, dest, tmp_path / "elpv")
    assert report["n_images"] == 2624 and report["n_skipped"] == 0 and report["n_ignored"] == 0
    assert report["labels_csv"]["probability"] == {"p0": 1508, "p33": 295, "p67": 106, "p100": 715}
    assert report["labels_csv"]["type"] == {"mono": 1074, "poly": 1550}
    assert report["images"] == {
        "modes": {"L": 2624},
        "min_size": [300, 300],
        "max_size": [300, 300],
    }
    assert report["n_per_class"] == {
        "functional": {"train": 1443, "val": 180, "test": 180},
        "defective": {"train": 657, "val": 82, "test": 82},
    }
    assert report["duplicates"]["n_groups"] == 0
