"""Tiny-ImageNet-200 (cs231n): 200 classes, 64×64 RGB JPEGs (a few are greyscale).

Archive layout (under ``tiny-imagenet-200/``): ``wnids.txt`` (the 200 class ids),
``words.txt`` (``wnid<TAB>names``), ``train/<wnid>/images/<wnid>_<i>.JPEG`` (500 per class,
plus ``<wnid>_boxes.txt``), ``val/images/val_<i>.JPEG`` with labels in
``val/val_annotations.txt`` (``file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1``, 50 per class) and
``test/images/test_<i>.JPEG`` (no labels).

Because the official test set is unlabelled it is ignored, and:

* our **test** = the official **val**, re-labelled from ``val_annotations.txt``;
* our **val** = a stratified fraction ``split.val`` of the official train (``split.test`` is not
  used: the test set already exists).

Classes are in ``wnids.txt`` order and named by wnid; the human-readable names from
``words.txt`` go to the report (``class_descriptions``), not to ``classes.json``.
Output: ``images/train/<wnid>/<file>`` and ``images/val/<wnid>/<file>`` (official origin kept in
the path; the ``split`` column is what counts).
"""

from __future__ import annotations

from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import (
    is_junk,
    open_zip,
    open_zip_member,
    read_zip_member,
    safe_component,
    split_member,
)
from isplit.data.splits import assign_stratified, split_config


def _text(zf, name: str, archive: Path) -> str:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise DatasetError(
            f"{archive}: missing {name!r}; not a Tiny-ImageNet-200 archive?"
        ) from None
    return read_zip_member(zf, info, archive).decode("utf-8", errors="replace")


def _has(zf, name: str) -> bool:
    try:
        zf.getinfo(name)
    except KeyError:
        return False
    return True


def prepare(cfg: DatasetSettings, archive: Path, builder) -> None:
    split = split_config(cfg)
    with open_zip(archive, builder.limits) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        roots = sorted(
            (
                i.filename[: -len("wnids.txt")]
                for i in infos
                if i.filename.rsplit("/", 1)[-1] == "wnids.txt" and not is_junk(i.filename)
            ),
            key=lambda r: (r.count("/"), r),
        )
        if not roots:
            raise DatasetError(f"{archive}: no wnids.txt; not a Tiny-ImageNet-200 archive?")
        root = roots[0]

        wnids = [w.strip() for w in _text(zf, root + "wnids.txt", archive).splitlines()]
        wnids = [w for w in wnids if w]
        if len(set(wnids)) != len(wnids) or not all(safe_component(w) for w in wnids):
            raise DatasetError(f"{archive}: wnids.txt has duplicate or invalid entries")
        known = set(wnids)

        words = {}
        if _has(zf, root + "words.txt"):
            for line in _text(zf, root + "words.txt", archive).splitlines():
                wnid, _, names = line.partition("\t")
                if wnid.strip() in known:
                    words[wnid.strip()] = names.strip()

        val_label = {}
        for line in _text(zf, root + "val/val_annotations.txt", archive).splitlines():
            fields = line.strip().split("\t")
            if len(fields) >= 2 and fields[0]:
                val_label[fields[0]] = fields[1]

        train = []
        for info in infos:
            name = info.filename
            if not name.startswith(root) or is_junk(name):
                if is_junk(name):
                    builder.ignore("os-metadata")
                continue
            parts = split_member(name[len(root) :])
            if len(parts) == 4 and parts[0] == "train" and parts[2] == "images":
                wnid, fname = parts[1], parts[3]
                if wnid not in known:
                    builder.skip(name, f"class {wnid!r} is not in wnids.txt")
                    continue
                data = open_zip_member(zf, info, archive)
                if builder.add_image_stream(
                    ["train", wnid, fname], data, class_name=wnid, origin=name
                ):
                    train.append(builder.samples[-1])
            elif len(parts) == 3 and parts[:2] == ["val", "images"]:
                fname = parts[2]
                wnid = val_label.get(fname)
                if wnid is None:
                    builder.skip(name, "no label in val/val_annotations.txt")
                    continue
                if wnid not in known:
                    builder.skip(name, f"val label {wnid!r} is not in wnids.txt")
                    continue
                data = open_zip_member(zf, info, archive)
                builder.add_image_stream(
                    ["val", wnid, fname], data, class_name=wnid, origin=name, split="test"
                )
            elif parts and parts[0] == "test":
                builder.ignore("official test (unlabelled)")
            # Anything else (wnids/words/annotation/boxes files) is metadata, read above or unused.

    builder.classes = wnids
    assign_stratified(train, wnids, val=split["val"], test=0.0, seed=split["seed"])
    builder.split_info = {
        "method": "official val as test; val stratified from train",
        "val": split["val"],
        "seed": split["seed"],
        "note": (
            "the official test split is unlabelled and ignored; our test = official val "
            "(labels from val_annotations.txt); our val = a stratified fraction of official train"
        ),
    }
    builder.extra["class_descriptions"] = {w: words.get(w, "") for w in wnids}
