"""Exact duplicates: the pixel digest, the grouped stratified split and the report's counts, on
hand-made samples and through whole preparations (array, file and official-split sources)."""

from __future__ import annotations

import gzip
import io
import pickle
import random

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from isplit.data.manifest import Sample
from isplit.data.sources import prepare
from isplit.data.splits import (
    _half_up,
    array_digests,
    assign_stratified,
    duplicate_report,
    image_digest,
    pixel_digest,
)
from tools.wheels import make_wheel, write_zip


def png(pixels: np.ndarray, mode: str = "L", text: str | None = None) -> bytes:
    info = PngInfo()
    if text is not None:
        info.add_text("comment", text)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def noise(seed: int, shape=(12, 12)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- digests


def test_digest_is_of_pixels_not_bytes():
    a = noise(1)
    one, two = png(a, text="saved once"), png(a, text="saved again")
    assert one != two
    assert image_digest(one) == image_digest(two) == array_digests(a[None])[0]
    assert image_digest(png(noise(2))) != image_digest(one)
    # the same bytes in another shape or mode are another image
    flat = a.reshape(6, 24)
    assert array_digests(flat[None])[0] != array_digests(a[None])[0]
    assert pixel_digest("L", (12, 12), a.tobytes()) != pixel_digest("P", (12, 12), a.tobytes())
    rgb = noise(3, (12, 12, 3))
    assert image_digest(png(rgb, "RGB")) == array_digests(rgb[None])[0]


def test_palette_images_digest_their_colours(tmp_path):
    idx = Image.fromarray(noise(4) % 4, "L").convert("P")
    red, blue = idx.copy(), idx.copy()
    red.putpalette([255, 0, 0] * 4)
    blue.putpalette([0, 0, 255] * 4)
    paths = []
    for name, im in (("red", red), ("blue", blue)):
        paths.append(tmp_path / f"{name}.png")
        im.save(paths[-1])
    assert image_digest(paths[0]) != image_digest(paths[1])  # same indices, other picture


# --------------------------------------------------------------------------- splitting


def per_sample_split(samples, classes, *, val, test, seed):
    """The splitter as it was before duplicates were grouped: the reference it must reproduce."""
    out = {}
    for pos, name in enumerate(classes):
        group = sorted((s for s in samples if s.class_name == name), key=lambda s: s.sample_id)
        n = len(group)
        n_test = min(_half_up(test * n), n)
        n_val = min(_half_up(val * n), n - n_test)
        for rank, i in enumerate(np.random.default_rng([seed, pos]).permutation(n)):
            out[group[i].sample_id] = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
    return out


def make_samples(sizes: dict[str, int], dup_groups=(), digests=True) -> list[Sample]:
    """Samples ``<class>/<i>``; each tuple of ids in ``dup_groups`` shares one digest."""
    samples = [
        Sample(sample_id=f"{c}/{i:03d}", class_name=c, digest=f"{c}/{i}" if digests else None)
        for c, n in sizes.items()
        for i in range(n)
    ]
    by_id = {s.sample_id: s for s in samples}
    for g, ids in enumerate(dup_groups):
        for sid in ids:
            by_id[sid].digest = f"dup{g}"
    return samples


def counts(samples):
    out = {}
    for s in samples:
        out.setdefault(s.class_name, {"train": 0, "val": 0, "test": 0})[s.split] += 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_without_duplicates_the_split_is_the_per_sample_one(seed):
    sizes = {"a": 40, "b": 17, "c": 3, "d": 101}
    for digests in (True, False):
        samples = make_samples(sizes, digests=digests)
        assign_stratified(samples, list(sizes), val=0.15, test=0.1, seed=seed)
        want = per_sample_split(samples, list(sizes), val=0.15, test=0.1, seed=seed)
        assert {s.sample_id: s.split for s in samples} == want
        assert {s.sample_id: s.ungrouped_split for s in samples} == want


def test_duplicate_groups_land_in_one_split_with_exact_counts():
    sizes = {"a": 200, "b": 120}
    rng = random.Random(5)
    ids = [f"a/{i:03d}" for i in range(200)]
    rng.shuffle(ids)
    groups = [ids[2 * k : 2 * k + 2] for k in range(30)] + [
        ids[60 + 3 * k : 63 + 3 * k] for k in range(10)
    ]
    groups.append(["b/000", "b/050", "b/100", "b/119"])
    samples = make_samples(sizes, groups)
    assign_stratified(samples, list(sizes), val=0.1, test=0.1, seed=0)
    split_of = {s.sample_id: s.split for s in samples}
    assert all(len({split_of[i] for i in g}) == 1 for g in groups)
    # single images fill what a group leaves, so the quotas are met exactly
    assert counts(samples) == {
        "a": {"train": 160, "val": 20, "test": 20},
        "b": {"train": 96, "val": 12, "test": 12},
    }
    # the per-sample split would have torn some of these groups apart (what the report counts)
    before = per_sample_split(samples, list(sizes), val=0.1, test=0.1, seed=0)
    assert {s.sample_id: s.ungrouped_split for s in samples} == before
    torn = sum(len({before[i] for i in g}) > 1 for g in groups)
    report = duplicate_report(samples)
    assert report["n_groups"] == len(groups) and report["n_images"] == 60 + 30 + 4
    assert report["n_groups_across_splits"] == 0
    assert report["n_groups_across_splits_without_grouping"] == torn > 0
    assert report["eval_images_with_copy_in_train"] == {"val": 0, "test": 0}


def test_grouped_split_ignores_input_order():
    sizes = {"a": 50, "b": 50}
    groups = [["a/001", "a/002"], ["a/010", "b/010"], ["b/020", "b/021", "b/022"]]
    one, two = make_samples(sizes, groups), make_samples(sizes, groups)[::-1]
    random.Random(1).shuffle(two)
    for s in (one, two):
        assign_stratified(s, list(sizes), val=0.2, test=0.2, seed=3)
    assert {s.sample_id: s.split for s in one} == {s.sample_id: s.split for s in two}


def test_group_across_classes_and_group_bigger_than_the_quota():
    sizes = {"a": 20, "b": 20}
    cross = ["a/003", "b/017"]  # the same picture labelled twice
    big = [f"b/{i:03d}" for i in range(5)]  # bigger than b's test and val quotas (2 each)
    samples = make_samples(sizes, [cross, big])
    assign_stratified(samples, list(sizes), val=0.1, test=0.1, seed=0)
    split_of = {s.sample_id: s.split for s in samples}
    assert split_of["a/003"] == split_of["b/017"]
    assert {split_of[i] for i in big} == {"train"}
    c = counts(samples)
    assert c["a"] == {"train": 16, "val": 2, "test": 2}
    assert c["b"]["val"] == 2 and c["b"]["test"] == 2  # the cross member counts towards them
    assert duplicate_report(samples)["n_groups_with_several_classes"] == 1


def test_report_counts_copies_across_official_splits():
    # an official test image (split fixed by the source) with a copy in the pool
    pool = make_samples({"a": 10}, [["a/000", "a/001"]])
    fixed = Sample(sample_id="test/a/x", class_name="a", split="test", digest="dup0")
    assign_stratified(pool, ["a"], val=0.2, test=0.0, seed=0)
    report = duplicate_report([*pool, fixed])
    assert report["n_groups"] == 1 and report["n_images"] == 3 and report["max_group_size"] == 3
    assert report["groups"] == [["a/000", "a/001", "test/a/x"]]
    # the pool pair stays together, but the official test copy cannot move: it is counted
    assert report["n_groups_across_splits"] == 1
    pair = {s.split for s in pool if s.digest == "dup0"}
    assert len(pair) == 1
    want = {"val": 0, "test": 1} if pair == {"train"} else {"val": 0, "test": 0}
    assert report["eval_images_with_copy_in_train"] == want


# --------------------------------------------------------------------------- whole datasets


def test_animal_mnist_duplicates_end_to_end(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.int64), 20)
    pairs = [(20 * c + k, 20 * c + 10 + k) for c in range(10) for k in range(4)]
    for i, j in pairs:
        images[j] = images[i]
    base = "animal_mnist/data/Animal_MNIST/"
    members = {
        base + "animal_data_version_3.gz": gzip.compress(pickle.dumps(images)),
        base + "animal_label_version_3.gz": gzip.compress(pickle.dumps(labels)),
    }
    archive = make_wheel(tmp_path, "animal-mnist", "0.4", members)
    split = {"val": 0.2, "test": 0.2, "seed": 0}
    report = prepare({"source": "animal-mnist", "split": split}, archive, tmp_path / "out")
    df = pd.read_parquet(tmp_path / "out" / "manifest.parquet").set_index("index")
    assert all(df.loc[i, "split"] == df.loc[j, "split"] for i, j in pairs)
    assert all(c == {"train": 12, "val": 4, "test": 4} for c in report["n_per_class"].values())

    samples = [
        Sample(sample_id=f"animal-mnist/{i:03d}", class_name=str(labels[i])) for i in range(200)
    ]
    before = per_sample_split(samples, [str(c) for c in range(10)], **split)
    torn = sum(before[f"animal-mnist/{i:03d}"] != before[f"animal-mnist/{j:03d}"] for i, j in pairs)
    dup = report["duplicates"]
    assert dup["n_groups"] == 40 and dup["n_images"] == 80
    assert dup["n_groups_across_splits"] == 0
    assert dup["n_groups_across_splits_without_grouping"] == torn > 0
    assert dup["groups"][0] == ["animal-mnist/000", "animal-mnist/010"]


def test_official_split_duplicates_are_counted(tmp_path):
    a, b = noise(10, (20, 20)), noise(11, (20, 20))
    m = {}
    for i in range(6):
        for cls, seed in (("NORMAL", 100), ("PNEUMONIA", 200)):
            m[f"chest_xray/train/{cls}/{i}.png"] = png(noise(seed + i, (20, 20)))
    m["chest_xray/train/NORMAL/copy.png"] = png(a, text="train copy")
    m["chest_xray/test/NORMAL/orig.png"] = png(a)
    m["chest_xray/test/PNEUMONIA/t.png"] = png(b)
    m["chest_xray/val/NORMAL/v.png"] = png(noise(12, (20, 20)))
    m["chest_xray/val/PNEUMONIA/v.png"] = png(noise(13, (20, 20)))
    archive = write_zip(tmp_path / "cx.zip", m)
    cfg = {"source": "chest-xray-pneumonia", "val_from_train": 0.0}
    report = prepare(cfg, archive, tmp_path / "out")
    dup = report["duplicates"]
    assert dup["n_groups"] == 1
    assert dup["groups"] == [["test/NORMAL/orig.png", "train/NORMAL/copy.png"]]
    assert dup["n_groups_across_splits"] == dup["n_groups_across_splits_without_grouping"] == 1
    assert dup["eval_images_with_copy_in_train"] == {"val": 0, "test": 1}


def test_imagefolder_byte_different_copies_are_grouped(tmp_path):
    src = tmp_path / "src"
    for c, cls in enumerate(("cat", "dog")):
        (src / cls).mkdir(parents=True)
        for i in range(10):
            (src / cls / f"{i}.png").write_bytes(png(noise(100 * c + i)))
    # five copies of one cat, each saved with its own metadata
    for k in range(5):
        (src / "cat" / f"copy{k}.png").write_bytes(png(noise(0), text=f"copy {k}"))
    out = tmp_path / "out"
    report = prepare({"source": "imagefolder", "path": str(src)}, None, out)
    df = pd.read_parquet(out / "manifest.parquet").set_index("sample_id")
    group = ["cat/0.png", *(f"cat/copy{k}.png" for k in range(5))]
    assert df.loc[group, "split"].nunique() == 1
    assert report["duplicates"]["n_groups"] == 1 and report["duplicates"]["n_images"] == 6
