"""Chest X-Ray Pneumonia (Kermany et al. 2018): NORMAL vs PNEUMONIA, variable-size grey JPEGs.

Accepted layouts, found by pattern rather than fixed paths:

* Mendeley Data ``ChestXRay2017.zip``: ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg``
  (no val split at all), plus ``__MACOSX/`` and ``.DS_Store`` junk;
* Kaggle ``paultimothymooney/chest-xray-pneumonia``: ``chest_xray/{train,val,test}/...``
  (train 5,216 / val 16 / test 624), which also carries a nested duplicate tree
  ``chest_xray/chest_xray/...`` and a ``__MACOSX`` tree.

Of several trees the shallowest one is used and the others are counted as ignored duplicates.

Validation split: the official val has 16 images (8 per class) — far too few to select models
on — and the Mendeley zip has none.  With ``val_from_train > 0`` (default 0.1) the official val
is merged into train and a stratified ``val_from_train`` fraction of that becomes our val; with
``val_from_train: 0`` the official val is kept as is (error if the archive has none).  Test is
always the official test.  Output: ``images/<official split>/<class>/<file>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import is_junk, open_zip, open_zip_member, safe_component
from isplit.data.images import has_image_extension
from isplit.data.splits import assign_stratified, split_config

CLASSES = ["NORMAL", "PNEUMONIA"]
_MEMBER = re.compile(
    r"^(?P<prefix>(?:[^/]+/)*?)(?P<split>train|val|test)/(?P<cls>normal|pneumonia)/(?P<file>[^/]+)$",
    re.IGNORECASE,
)


def val_from_train(cfg: DatasetSettings) -> float:
    value = float(cfg.val_from_train)
    if not 0 <= value < 1:
        raise DatasetError(f"val_from_train must be in [0, 1), got {value}")
    return value


def prepare(cfg: DatasetSettings, archive: Path, builder) -> None:
    frac = val_from_train(cfg)
    seed = split_config(cfg)["seed"]
    with open_zip(archive, builder.limits) as zf:
        trees: dict[str, list] = {}
        for info in zf.infolist():
            if info.is_dir():
                continue
            if is_junk(info.filename):
                builder.ignore("os-metadata")
                continue
            m = _MEMBER.match(info.filename)
            if m:
                trees.setdefault(m.group("prefix"), []).append((info, m))
            else:
                builder.ignore("outside <split>/<class>/")
        if not trees:
            raise DatasetError(
                f"{archive}: no {{train,val,test}}/{{NORMAL,PNEUMONIA}}/ images; "
                "not a Chest X-Ray Pneumonia archive?"
            )
        root = min(trees, key=lambda p: (p.count("/"), p))
        for prefix, members in trees.items():
            if prefix != root:
                builder.ignored["duplicate tree"] += len(members)

        official = {"train": 0, "val": 0, "test": 0}
        pool = []  # samples from which our val is drawn
        for info, m in sorted(trees[root], key=lambda t: t[0].filename):
            off_split, cls, fname = m.group("split").lower(), m.group("cls").upper(), m["file"]
            if not safe_component(fname):
                builder.skip(info.filename, "unsafe member name")
                continue
            if not has_image_extension(fname):
                builder.skip(info.filename, "not an image file name")
                continue
            data = open_zip_member(zf, info, archive)
            if off_split == "test":
                split = "test"
            elif off_split == "val" and frac == 0:
                split = "val"
            else:
                split = "train"
            if builder.add_image_stream(
                [off_split, cls, fname], data, class_name=cls, origin=info.filename, split=split
            ):
                official[off_split] += 1
                if split == "train":
                    pool.append(builder.samples[-1])

    builder.classes = list(CLASSES)
    if frac > 0:
        assign_stratified(pool, CLASSES, val=frac, test=0.0, seed=seed)
        method = "official test; val stratified from official train+val"
    else:
        if official["val"] == 0:
            raise DatasetError(
                f"{archive} has no val split; set val_from_train > 0 to carve one from train"
            )
        method = "official"
    builder.split_info = {
        "method": method,
        "val_from_train": frac,
        "seed": seed,
        "official_counts": official,
        "note": (
            "the official val split has only 16 images (none in the Mendeley zip); with "
            "val_from_train > 0 it is merged into train and a stratified fraction becomes val"
        ),
    }
