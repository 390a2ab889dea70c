"""isplit.data end to end: small archives in each source's real layout, built here, served
over loopback HTTP, downloaded and prepared; plus the split helper and failure modes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from isplit.config import settings
from isplit.data import DatasetError
from isplit.data import sources as datasets
from isplit.data.manifest import Sample
from isplit.data.sources import download, download_filename, prepare
from isplit.data.splits import assign_stratified, split_config
from tools.loopback_http import FileServer

SCHEMA = {
    "sample_id": pa.string(),
    "path": pa.string(),
    "index": pa.int64(),
    "label": pa.int64(),
    "class_name": pa.string(),
    "split": pa.string(),
}


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


# --------------------------------------------------------------------------- builders


def image_bytes(seed: int, size=(28, 28), mode="L", fmt="PNG") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, fmt)
    return buf.getvalue()


def corrupt_png() -> bytes:
    return image_bytes(999)[:60]  # valid signature and header, body cut off


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def fetch_and_prepare(server, tmp_path, cfg, archive_bytes, name="ds"):
    filename = download_filename(cfg)
    cfg = {**cfg, "url": server.add("/" + filename, archive_bytes)}
    dest = tmp_path / "downloads" / name / filename
    download(cfg, dest, timeout=5)
    out = tmp_path / "datasets" / name
    report = prepare(cfg, dest, out)
    return out, report, read(out)


def read(out: Path):
    table = pq.read_table(out / "manifest.parquet")
    return table, table.to_pandas()


def check_layout(out: Path, table, report, classes):
    assert {f: table.schema.field(f).type for f in table.schema.names} == SCHEMA
    assert table.schema.names == list(SCHEMA)
    df = table.to_pandas()
    assert df["sample_id"].is_unique
    assert set(df["split"]) <= {"train", "val", "test"}
    assert json.loads((out / "classes.json").read_text()) == classes
    assert (df["class_name"] == [classes[i] for i in df["label"]]).all()
    assert json.loads((out / "prepare_report.json").read_text()) == json.loads(
        json.dumps(report, default=str)
    )
    assert report["n_images"] == len(df)
    assert report["n_per_split"] == {
        s: int((df["split"] == s).sum()) for s in report["n_per_split"]
    }
    order = {"train": 0, "val": 1, "test": 2}
    keys = list(zip(df["split"].map(order), df["sample_id"], strict=True))
    assert keys == sorted(keys)
    for p in df["path"].dropna():
        assert (out / p).is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging dirs


# --------------------------------------------------------------------------- API basics


def test_download_filenames():
    assert download_filename({"source": "notmnist"}) == "notMNIST_small.tar.gz"
    assert download_filename({"source": "notmnist", "variant": "large"}) == "notMNIST_large.tar.gz"
    assert download_filename({"source": "tiny-imagenet-200"}) == "tiny-imagenet-200.zip"
    assert download_filename({"source": "chest-xray-pneumonia"}) == "ChestXRay2017.zip"
    assert download_filename({"source": "animal-mnist"}) == "animal_mnist-0.4-py3-none-any.whl"
    assert download_filename({"source": "imagefolder", "path": "x"}) is None
    with pytest.raises(DatasetError, match="source"):
        download_filename({"source": "mnist"})
    with pytest.raises(DatasetError, match="variant"):
        download_filename({"source": "notmnist", "variant": "medium"})
    assert datasets.canonical_url({"source": "notmnist", "variant": "large"}).endswith(
        "notMNIST_large.tar.gz"
    )


def test_parse_time_functions_import_no_heavy_module():
    import subprocess
    import sys

    code = (
        "import sys, isplit.data.sources as d; d.download_filename({'source': 'notmnist'});"
        "bad = {'numpy', 'PIL', 'pandas', 'pyarrow', 'torch'} & set(sys.modules);"
        "sys.exit(sorted(bad) or 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- splits


def test_stratified_split_is_deterministic_and_balanced():
    def samples(order):
        return [Sample(sample_id=f"{c}/{i:02d}", class_name=c) for c, i in order]

    base = [(c, i) for c in "ab" for i in range(20)] + [("c", i) for i in range(5)]
    s1, s2 = samples(base), samples(base[::-1])
    for s in (s1, s2):
        assign_stratified(s, ["a", "b", "c"], val=0.1, test=0.25, seed=3)
    assert {x.sample_id: x.split for x in s1} == {x.sample_id: x.split for x in s2}
    count = {(x.class_name, x.split): 0 for x in s1}
    for x in s1:
        count[x.class_name, x.split] += 1
    assert count["a", "test"] == 5 and count["a", "val"] == 2 and count["a", "train"] == 13
    # 0.25 * 5 = 1.25 -> 1; 0.1 * 5 = 0.5 -> 1 (half-up)
    assert count["c", "test"] == 1 and count["c", "val"] == 1 and count["c", "train"] == 3

    s3 = samples(base)
    assign_stratified(s3, ["a", "b", "c"], val=0.1, test=0.25, seed=4)
    assert [x.split for x in s3] != [x.split for x in s1]


def test_split_config_validation():
    def split(s=None):
        cfg = {"source": "notmnist", **({"split": s} if s is not None else {})}
        return split_config(settings("dataset", cfg))

    assert split() == {"val": 0.1, "test": 0.1, "seed": 0}
    assert split({"val": 0.2}) == {"val": 0.2, "test": 0.1, "seed": 0}
    with pytest.raises(DatasetError, match="sum below 1"):
        split({"val": 0.6, "test": 0.5})
    for bad, key in (({"val": -0.1}, "val"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")):
        with pytest.raises(ValueError, match=f"dataset.split.{key}"):
            split(bad)
    with pytest.raises(ValueError, match="'x' was unexpected"):
        split({"x": 1})


# --------------------------------------------------------------------------- notMNIST


def notmnist_archive():
    members = {}
    for li, letter in enumerate("ABC"):
        for i in range(10):
            members[f"notMNIST_small/{letter}/img{i:02d}.png"] = image_bytes(li * 100 + i)
    members["notMNIST_small/B/broken.png"] = corrupt_png()
    members["notMNIST_small/C/empty.png"] = b""
    members["notMNIST_small/._A"] = b"junk"
    return tar_gz(members)


def test_notmnist_end_to_end(server, tmp_path):
    cfg = {"source": "notmnist", "split": {"val": 0.2, "test": 0.2, "seed": 1}}
    out, report, (table, df) = fetch_and_prepare(server, tmp_path, cfg, notmnist_archive())
    check_layout(out, table, report, ["A", "B", "C"])
    assert len(df) == 30
    assert report["n_skipped"] == 2
    assert {s["file"] for s in report["skipped"]} == {
        "notMNIST_small/B/broken.png",
        "notMNIST_small/C/empty.png",
    }
    assert all(s["reason"] for s in report["skipped"])
    assert not df["sample_id"].str.contains("broken|empty").any()
    assert not (out / "images/B/broken.png").exists()
    assert (out / "images/A/img00.png").read_bytes() == image_bytes(0)
    for letter in "ABC":
        assert report["n_per_class"][letter] == {"train": 6, "val": 2, "test": 2}
    assert report["split"]["method"] == "stratified" and report["split"]["seed"] == 1
    assert (df["index"] == -1).all()
    assert report["images"]["modes"] == {"L": 30}
    # the hash it was verified with is recorded beside the download, as sha256sum writes it
    digest, name = (tmp_path / "downloads/ds/notMNIST_small.tar.gz.sha256").read_text().split()
    assert name == "notMNIST_small.tar.gz" and len(digest) == 64


def test_prepare_is_deterministic_and_replaces_out_dir(tmp_path):
    archive = tmp_path / "n.tar.gz"
    archive.write_bytes(notmnist_archive())
    cfg = {"source": "notmnist"}
    out1, out2 = tmp_path / "one", tmp_path / "two"
    out2.mkdir()
    (out2 / "stale.txt").write_text("old")
    prepare(cfg, archive, out1)
    prepare(cfg, archive, out2)
    assert not (out2 / "stale.txt").exists()
    assert pq.read_table(out1 / "manifest.parquet").equals(pq.read_table(out2 / "manifest.parquet"))
    assert (out1 / "manifest.parquet").read_bytes() == (out2 / "manifest.parquet").read_bytes()
    assert (out1 / "classes.json").read_bytes() == (out2 / "classes.json").read_bytes()


def test_truncated_tar_gz_fails_cleanly(tmp_path):
    data = notmnist_archive()
    archive = tmp_path / "notMNIST_small.tar.gz"
    archive.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "datasets" / "nm"
    with pytest.raises(DatasetError, match="notMNIST_small.tar.gz"):
        prepare({"source": "notmnist"}, archive, out)
    assert not out.exists() and list((tmp_path / "datasets").iterdir()) == []


# --------------------------------------------------------------------------- Tiny-ImageNet

WNIDS = ["n02", "n01", "n03"]  # deliberately not sorted: the class order is wnids.txt's


def tiny_archive():
    r = "tiny-imagenet-200/"
    m = {
        r + "wnids.txt": "\n".join(WNIDS).encode() + b"\n",
        r + "words.txt": b"n01\tgoldfish, Carassius auratus\nn02\tshark\nn03\tstingray\nn99\tx\n",
    }
    ann = []
    for c, w in enumerate(WNIDS):
        m[f"{r}train/{w}/{w}_boxes.txt"] = b"whatever\n"
        for i in range(20):
            m[f"{r}train/{w}/images/{w}_{i}.JPEG"] = image_bytes(
                c * 1000 + i, (64, 64), "RGB", "JPEG"
            )
    for j in range(9):
        w = WNIDS[j % 3]
        m[f"{r}val/images/val_{j}.JPEG"] = image_bytes(50_000 + j, (64, 64), "RGB", "JPEG")
        ann.append(f"val_{j}.JPEG\t{w}\t0\t0\t10\t10")
    m[f"{r}val/images/val_99.JPEG"] = image_bytes(99, (64, 64), "RGB", "JPEG")  # no annotation
    m[r + "val/val_annotations.txt"] = ("\n".join(ann) + "\n").encode()
    for k in range(4):
        m[f"{r}test/images/test_{k}.JPEG"] = image_bytes(70_000 + k, (64, 64), "RGB", "JPEG")
    return zip_bytes(m)


def test_tiny_imagenet_end_to_end(server, tmp_path):
    cfg = {"source": "tiny-imagenet-200", "split": {"val": 0.25, "test": 0.1, "seed": 0}}
    out, report, (table, df) = fetch_and_prepare(server, tmp_path, cfg, tiny_archive())
    check_layout(out, table, report, WNIDS)

    test = df[df["split"] == "test"]
    assert len(test) == 9
    assert test["sample_id"].str.startswith("val/").all()
    for _, row in test.iterrows():
        j = int(row["sample_id"].rsplit("_", 1)[1].split(".")[0])
        assert row["class_name"] == WNIDS[j % 3] and row["label"] == j % 3
        assert row["sample_id"] == f"val/{WNIDS[j % 3]}/val_{j}.JPEG"

    # Our val comes from the official train, 25% of each class; split.test is not used.
    for w in WNIDS:
        assert report["n_per_class"][w] == {"train": 15, "val": 5, "test": 3}
    assert df.loc[df["split"] == "val", "sample_id"].str.startswith("train/").all()
    assert not df["sample_id"].str.contains("test_").any()
    assert report["n_skipped"] == 1 and "val_99" in report["skipped"][0]["file"]
    assert report["ignored"]["official test (unlabelled)"] == 4
    assert report["class_descriptions"]["n01"] == "goldfish, Carassius auratus"
    assert report["images"]["modes"] == {"RGB": len(df)}
    assert report["images"]["min_size"] == [64, 64]


# --------------------------------------------------------------------------- Chest X-Ray


def chest_archive(with_val=True, duplicate=True):
    m = {}
    counts = {"train": 10, "val": 2, "test": 3} if with_val else {"train": 10, "test": 3}
    for root in ("chest_xray/", "chest_xray/chest_xray/") if duplicate else ("chest_xray/",):
        for split, n in counts.items():
            for c, cls in enumerate(("NORMAL", "PNEUMONIA")):
                for i in range(n):
                    size = (40 + i, 30 + c)  # variable sizes, as in the real data
                    data = image_bytes(len(split) * 100 + c * 10 + i, size, "L", "JPEG")
                    m[f"{root}{split}/{cls}/{cls.lower()}_{split}_{i}.jpeg"] = data
    m["__MACOSX/chest_xray/train/NORMAL/._normal_train_0.jpeg"] = b"\0\5\x16\7"
    m["chest_xray/train/.DS_Store"] = b"\0\0\0\1Bud1"
    m["chest_xray/test/PNEUMONIA/notes.txt"] = b"not an image"
    return zip_bytes(m)


def test_chest_xray_end_to_end(server, tmp_path):
    cfg = {"source": "chest-xray-pneumonia", "val_from_train": 0.25, "split": {"seed": 0}}
    out, report, (table, df) = fetch_and_prepare(server, tmp_path, cfg, chest_archive())
    check_layout(out, table, report, ["NORMAL", "PNEUMONIA"])
    assert len(df) == 2 * (10 + 2 + 3)  # the nested duplicate tree is not counted twice
    assert not df["sample_id"].str.contains("chest_xray").any()
    # official val (2) merged into train (10): 12 per class, 25% -> 3 to our val
    for cls in ("NORMAL", "PNEUMONIA"):
        assert report["n_per_class"][cls] == {"train": 9, "val": 3, "test": 3}
    assert df.loc[df["split"] == "test", "sample_id"].str.startswith("test/").all()
    assert report["split"]["official_counts"] == {"train": 20, "val": 4, "test": 6}
    assert report["ignored"]["duplicate tree"] == 30
    assert report["ignored"]["os-metadata"] == 2
    assert report["n_skipped"] == 1 and report["skipped"][0]["file"].endswith("notes.txt")
    assert report["images"]["min_size"] == [40, 30] and report["images"]["max_size"] == [49, 31]


def test_chest_xray_official_val_and_mendeley_layout(tmp_path):
    archive = tmp_path / "kaggle.zip"
    archive.write_bytes(chest_archive())
    report = prepare(
        {"source": "chest-xray-pneumonia", "val_from_train": 0}, archive, tmp_path / "k"
    )
    assert report["n_per_split"] == {"train": 20, "val": 4, "test": 6}
    assert report["split"]["method"] == "official"

    mendeley = tmp_path / "ChestXRay2017.zip"
    mendeley.write_bytes(chest_archive(with_val=False, duplicate=False))
    report = prepare({"source": "chest-xray-pneumonia"}, mendeley, tmp_path / "m")
    assert report["n_per_split"] == {"train": 18, "val": 2, "test": 6}  # 10% of 10 per class
    with pytest.raises(DatasetError, match="val_from_train"):
        prepare({"source": "chest-xray-pneumonia", "val_from_train": 0}, mendeley, tmp_path / "z")
    assert not (tmp_path / "z").exists()


def test_corrupt_zip_fails_cleanly(tmp_path):
    good = chest_archive(duplicate=False)
    out = tmp_path / "datasets" / "cx"
    for name, data in {
        "garbage.zip": os.urandom(5000),
        "truncated.zip": good[: len(good) // 2],
    }.items():
        archive = tmp_path / name
        archive.write_bytes(data)
        with pytest.raises(DatasetError, match=name):
            prepare({"source": "chest-xray-pneumonia"}, archive, out)
        assert not out.exists()
        assert list((tmp_path / "datasets").iterdir()) == []


def test_damaged_zip_member_fails_cleanly(tmp_path):
    payload = image_bytes(1, (64, 64), "RGB", "PNG")
    data = bytearray(zip_bytes({"chest_xray/train/NORMAL/a.png": payload}))
    i = data.index(payload[20:40])
    data[i : i + 20] = bytes(20)  # stored (uncompressed) member: CRC no longer matches
    archive = tmp_path / "crc.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="crc.zip"):
        prepare({"source": "chest-xray-pneumonia"}, archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- imagefolder


def write_images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:02d}.png").write_bytes(image_bytes(seed + i, (16, 16), "RGB"))


def test_imagefolder_flat(tmp_path):
    src = tmp_path / "my images"
    write_images(src / "dog", 10, 0)
    write_images(src / "cat", 10, 100)
    write_images(src / "cat" / "nested", 2, 200)
    (src / "cat" / "README.txt").write_text("hi")
    (src / "dog" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "dog" / ".hidden.png").write_bytes(b"x")
    (src / ".git").mkdir()
    cfg = {"source": "imagefolder", "path": str(src), "split": {"val": 0.2, "test": 0.2}}
    out = tmp_path / "datasets" / "mine"
    report = prepare(cfg, None, out)
    table, df = read(out)
    check_layout(out, table, report, ["cat", "dog"])
    assert report["n_per_class"]["dog"] == {"train": 6, "val": 2, "test": 2}
    assert sum(report["n_per_class"]["cat"].values()) == 12
    assert "cat/nested/00.png" in set(df["sample_id"])
    assert {s["file"] for s in report["skipped"]} == {"cat/README.txt", "dog/bad.jpg"}
    assert (out / "images/dog/00.png").read_bytes() == (src / "dog/00.png").read_bytes()


def test_imagefolder_with_split_folders(tmp_path):
    src = tmp_path / "split"
    for split, n in {"train": 6, "val": 2, "test": 3}.items():
        for c, cls in enumerate(("a", "b")):
            write_images(src / split / cls, n, 1000 * c + 10 * len(split))
    out = tmp_path / "ds"
    report = prepare({"source": "imagefolder", "path": str(src)}, None, out)
    table, df = read(out)
    check_layout(out, table, report, ["a", "b"])
    assert report["split"]["method"] == "official"
    assert report["n_per_class"]["a"] == {"train": 6, "val": 2, "test": 3}
    assert (df["sample_id"].str.split("/").str[0] == df["split"]).all()

    import shutil

    shutil.rmtree(src / "val")
    report = prepare({"source": "imagefolder", "path": str(src), "split": {"val": 0.5}}, None, out)
    assert report["n_per_class"]["b"] == {"train": 3, "val": 3, "test": 3}


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        prepare({"source": "imagefolder", "path": str(tmp_path / "nope")}, None, tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        prepare({"source": "imagefolder", "path": str(tmp_path / "empty")}, None, tmp_path / "o")
    with pytest.raises(DatasetError, match="nothing to download"):
        download({"source": "imagefolder", "path": "x"}, tmp_path / "x")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- animal-mnist

ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def animal_wheel(per_class=10, labels=None) -> tuple[bytes, np.ndarray]:
    n = 10 * per_class
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    if labels is None:
        labels = np.repeat(np.arange(10, dtype=np.int64), per_class)  # sorted, like the real one
    base = "animal_mnist/data/Animal_MNIST/"
    return zip_bytes(
        {
            "animal_mnist/__init__.py": b"",
            base + "animal_data_version_3.gz": gzip.compress(pickle.dumps(images, protocol=4)),
            base + "animal_label_version_3.gz": gzip.compress(pickle.dumps(labels, protocol=4)),
            "animal_mnist-0.4.dist-info/METADATA": b"Name: animal-mnist\nVersion: 0.4\n",
        }
    ), images


def test_animal_mnist_end_to_end(server, tmp_path):
    wheel, images = animal_wheel()
    cfg = {"source": "animal-mnist", "split": {"val": 0.1, "test": 0.2, "seed": 7}}
    out, report, (table, df) = fetch_and_prepare(server, tmp_path, cfg, wheel)
    check_layout(out, table, report, ANIMALS)
    arr = np.load(out / "images.npy")
    assert arr.dtype == np.uint8 and arr.shape == (100, 28, 28)
    assert np.array_equal(arr, images)
    assert df["path"].isna().all() and (df["index"] >= 0).all()
    assert sorted(df["index"]) == list(range(100))
    assert (df["label"] == df["index"] // 10).all()
    assert df["sample_id"].str.fullmatch(r"animal-mnist/\d\d").all()
    for name in ANIMALS:
        assert report["n_per_class"][name] == {"train": 7, "val": 1, "test": 2}
    # the file is sorted by label; the split must not be (e.g. "first 80% = train")
    assert df.loc[df["split"] == "test", "label"].nunique() == 10
    report2 = prepare(cfg, tmp_path / "downloads/ds" / download_filename(cfg), tmp_path / "again")
    assert report2["n_per_split"] == report["n_per_split"]
    assert pq.read_table(tmp_path / "again/manifest.parquet").equals(table)


def test_animal_mnist_refuses_code_in_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    base = "animal_mnist/data/Animal_MNIST/"
    archive = tmp_path / "evil.whl"
    archive.write_bytes(
        zip_bytes(
            {
                base + "animal_data_version_3.gz": gzip.compress(pickle.dumps(Evil())),
                base + "animal_label_version_3.gz": gzip.compress(pickle.dumps(np.zeros(1))),
            }
        )
    )
    with pytest.raises(DatasetError, match="refusing to load global"):
        prepare({"source": "animal-mnist"}, archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_animal_mnist_bad_labels(tmp_path):
    wheel, _ = animal_wheel(labels=np.full(100, 12, dtype=np.int64))
    archive = tmp_path / "a.whl"
    archive.write_bytes(wheel)
    with pytest.raises(DatasetError, match="labels outside"):
        prepare({"source": "animal-mnist"}, archive, tmp_path / "out")


def test_download_checks_the_configured_hash(server, tmp_path):
    data = notmnist_archive()
    cfg = {"source": "notmnist", "url": server.add("/n.tar.gz", data)}
    good = hashlib.sha256(data).hexdigest()
    assert download({**cfg, "sha256": good}, tmp_path / "a.tar.gz") == good
    from isplit.errors import DownloadError

    with pytest.raises(DownloadError, match="checksum mismatch"):
        download({**cfg, "sha256": "0" * 64}, tmp_path / "c.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "a.tar.gz.sha256"]


@pytest.mark.skipif(os.environ.get("ISPLIT_TEST_PYPI") != "1", reason="set ISPLIT_TEST_PYPI=1")
def test_real_animal_mnist_from_pypi(tmp_path):
    cfg = {"source": "animal-mnist"}
    dest = tmp_path / download_filename(cfg)
    download(cfg, dest)
    report = prepare(cfg, dest, tmp_path / "animal-mnist")
    assert report["n_images"] == 10_000
    assert all(sum(c.values()) == 1000 for c in report["n_per_class"].values())
    assert report["n_per_split"] == {"train": 8000, "val": 1000, "test": 1000}
    arr = np.load(tmp_path / "animal-mnist/images.npy")
    assert arr.shape == (10_000, 28, 28) and arr.dtype == np.uint8


def test_duplicate_zip_member_is_skipped(tmp_path):
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
        for i in range(2):
            zf.writestr("chest_xray/train/NORMAL/a.jpeg", image_bytes(i, fmt="JPEG"))
        zf.writestr("chest_xray/test/NORMAL/b.jpeg", image_bytes(5, fmt="JPEG"))
    archive = tmp_path / "dup.zip"
    archive.write_bytes(buf.getvalue())
    cfg = {"source": "chest-xray-pneumonia", "val_from_train": 0.5}
    report = prepare(cfg, archive, tmp_path / "out")
    assert report["n_images"] == 2 and report["n_skipped"] == 1
    assert "duplicate" in report["skipped"][0]["reason"]


# --------------------------------------------------------------------------- hostile archives

BOMB_BLOCK = 16 << 20
MEMORY_BOUND_MB = 250  # peak RSS of preparing a bomb; the interpreter and imports take ~100


def bomb_tar_gz(path: Path, size: int, before: dict[str, bytes] | None = None) -> Path:
    """A notMNIST-like .tar.gz whose member ``notMNIST_small/A/bomb.png`` is ``size`` zero
    bytes, after the ``before`` members; about 1 KB per 1 MB of zeros. Made in no time as one
    gzip member per block of zeros (concatenated gzip members are one valid stream)."""
    assert size % BOMB_BLOCK == 0

    def header(name: str, n: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = n
        return info.tobuf(format=tarfile.GNU_FORMAT)

    members = (before or {}).items()
    head = b"".join(header(n, len(d)) + d + bytes(-len(d) % 512) for n, d in members)
    zeros = gzip.compress(bytes(BOMB_BLOCK))
    with open(path, "wb") as f:
        f.write(gzip.compress(head + header("notMNIST_small/A/bomb.png", size)))
        for _ in range(size // BOMB_BLOCK):
            f.write(zeros)
        f.write(gzip.compress(bytes(1024)))  # the end-of-archive blocks
    return path


def few_letters() -> dict[str, bytes]:
    return {
        f"notMNIST_small/{letter}/img{i}.png": image_bytes(10 * li + i)
        for li, letter in enumerate("ABC")
        for i in range(4)
    }


PREPARE_MEASURED = """
import json, sys
from pathlib import Path
from isplit.data import sources
from isplit.data.archives import archive_limits
from isplit.data.build import Builder, staging
from isplit.data import notmnist
from isplit.config import settings

archive, out, limits = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
result = {}
try:
    if limits is None:  # the entry point the workflow runs
        result["report"] = sources.prepare({"source": "notmnist"}, archive, out)
    else:
        ds = settings("dataset", {"source": "notmnist"})
        with staging(out) as stage:
            b = Builder(stage, cfg=ds, source="notmnist", archive=archive,
                        limits=archive_limits(limits))
            notmnist.prepare(ds, archive, b)
            result["report"] = b.finish()
except Exception as e:
    result["error"] = f"{type(e).__name__}: {e}"
# VmHWM, the peak of this process's own memory: ru_maxrss would also count the parent's
# (the test runner's) at the fork that started this interpreter
status = Path("/proc/self/status").read_text()
result["peak_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(result, default=str))
"""


def prepare_measured(archive: Path, out: Path, limits=None) -> dict:
    """Prepare in a fresh interpreter; its result and its peak resident memory (MB)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", PREPARE_MEASURED, str(archive), str(out), json.dumps(limits)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_tar_bomb_is_refused_in_bounded_memory(tmp_path):
    """1 MB of tar.gz holding a 1 GiB member (it took 3 GB of RAM when
    members were read whole) is refused at its header, before a byte of it is unpacked."""
    archive = bomb_tar_gz(tmp_path / "bomb.tar.gz", 1 << 30, few_letters())
    assert archive.stat().st_size < 2_000_000
    out = tmp_path / "datasets" / "nm"
    result = prepare_measured(archive, out)
    assert "ArchiveLimitError" in result["error"] and "downloads.max_member_mb" in result["error"]
    assert result["peak_mb"] < MEMORY_BOUND_MB, result
    assert list((tmp_path / "datasets").iterdir()) == []  # no dataset, no staging folder


def test_large_member_is_streamed_to_disk_not_memory(tmp_path):
    """With limits raised above it, a 256 MiB member is copied to disk in chunks (peak memory
    stays far below its size), then skipped as an image that does not decode."""
    archive = bomb_tar_gz(tmp_path / "big.tar.gz", 256 << 20, few_letters())
    out = tmp_path / "datasets" / "nm"
    result = prepare_measured(archive, out, {"max_member_mb": 1000, "max_ratio": 1e6})
    assert "error" not in result, result
    report = result["report"]
    assert report["n_images"] == 12 and report["n_skipped"] == 1
    assert report["skipped"][0]["file"] == "notMNIST_small/A/bomb.png"
    assert result["peak_mb"] < MEMORY_BOUND_MB, result
    assert not (out / "images/A/bomb.png").exists()


def test_compression_ratio_and_total_size_guards(tmp_path):
    from isplit.data.archives import ArchiveLimitError, archive_limits, iter_tar_files, open_zip

    # a 32 MiB member of zeros: under the member limit, but a ratio of ~1000
    tar = bomb_tar_gz(tmp_path / "r.tar.gz", 2 * BOMB_BLOCK, few_letters())
    with pytest.raises(ArchiveLimitError, match="downloads.max_ratio"):
        prepare({"source": "notmnist"}, tar, tmp_path / "out")
    zipped = tmp_path / "r.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("chest_xray/train/NORMAL/zeros.jpeg", bytes(2 * BOMB_BLOCK))
    with pytest.raises(ArchiveLimitError, match="downloads.max_ratio"):
        prepare({"source": "chest-xray-pneumonia"}, zipped, tmp_path / "out")
    # the total: three 4 MB members against a 10 MB limit, in a zip and in a tar stream
    small = archive_limits({"max_unpacked_mb": 10})
    members = {f"notMNIST_small/A/{i}.png": os.urandom(4_000_000) for i in range(3)}
    (tmp_path / "t.zip").write_bytes(zip_bytes(members))
    with pytest.raises(ArchiveLimitError, match="downloads.max_unpacked_mb"):
        with open_zip(tmp_path / "t.zip", small):
            pass
    (tmp_path / "t.tar.gz").write_bytes(tar_gz(members))
    with pytest.raises(ArchiveLimitError, match="downloads.max_unpacked_mb"):
        for _, stream in iter_tar_files(tmp_path / "t.tar.gz", small):
            stream.read()
    assert not (tmp_path / "out").exists()


def test_image_decompression_bomb_is_skipped_and_counted(tmp_path, monkeypatch):
    """Pillow only warns between MAX_IMAGE_PIXELS and twice that; the image is skipped (not
    decoded) and counted, not silently kept. The limit is lowered so the test image is small."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    members = few_letters()
    members["notMNIST_small/A/wide.png"] = image_bytes(7, size=(150, 100))  # 1.5 x the limit
    members["notMNIST_small/B/huge.png"] = image_bytes(8, size=(300, 100))  # 3 x: Pillow raises
    archive = tmp_path / "n.tar.gz"
    archive.write_bytes(tar_gz(members))
    report = prepare({"source": "notmnist"}, archive, tmp_path / "out")
    assert report["n_images"] == 12 and report["n_skipped"] == 2
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert all(
        "decompression bomb" in reasons[f"notMNIST_small/{k}"] for k in ("A/wide.png", "B/huge.png")
    )


# --------------------------------------------------------------------------- killed preparations

SLOW_PREPARE = """
import sys, time
from pathlib import Path
import isplit.data.build as build

def stuck(source):  # the first image check never returns: the process is inside its stage
    print("staging", flush=True)
    time.sleep(120)

build.check_image = stuck
from isplit.data.sources import prepare
prepare({"source": "notmnist"}, Path(sys.argv[1]), Path(sys.argv[2]))
"""


def stuck_prepare(archive: Path, out: Path):
    """A real ``prepare`` in another process, stopped inside its staging folder."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREPARE, str(archive), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "staging"
    return proc


def staging_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_killed_prepare_leaves_no_staging_folder_behind(tmp_path):
    """A prepare killed with SIGKILL leaves its staging folder; the next
    prepare of the same dataset removes it (its owner is gone)."""
    import signal

    archive = tmp_path / "n.tar.gz"
    archive.write_bytes(notmnist_archive())
    out = tmp_path / "datasets" / "nm"
    proc = stuck_prepare(archive, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(staging_folders(out)) == 1  # what the killed process left
    prepare({"source": "notmnist"}, archive, out)
    assert staging_folders(out) == []
    assert (out / "manifest.parquet").is_file()


def test_staging_folder_of_a_live_prepare_is_kept(tmp_path):
    archive = tmp_path / "n.tar.gz"
    archive.write_bytes(notmnist_archive())
    out = tmp_path / "datasets" / "nm"
    proc = stuck_prepare(archive, out)
    try:
        live = staging_folders(out)
        assert len(live) == 1
        prepare({"source": "notmnist"}, archive, out)  # a second prepare, while it runs
        assert staging_folders(out) == live
    finally:
        proc.kill()
        proc.wait(10)
