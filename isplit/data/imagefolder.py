"""A user's own image folder (``source: imagefolder``, ``path: <folder>``).

Two layouts:

* flat — one sub-folder per class (sorted names = labels 0..K-1), images anywhere below it;
  split stratified with ``split.val`` / ``split.test``;
* split — sub-folders ``train/`` and ``test/`` (and optionally ``val/``), each with class
  sub-folders; those are the splits, and a missing ``val/`` is carved from train with
  ``split.val``.  Classes = sorted union of the class folders of all splits.

Images are hard-linked (or copied where linking fails) into ``images/`` so the prepared dataset
is self-contained: deleting or replacing files in the user's folder does not change a dataset
that results were computed from (an in-place edit of a hard-linked file would show through;
image tools normally write a new file instead).  Hidden files and folders are ignored; files with a
non-image extension and files that do not decode are skipped and reported.
"""

from __future__ import annotations

from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import is_junk
from isplit.data.images import has_image_extension
from isplit.data.manifest import SPLITS
from isplit.data.splits import assign_stratified, split_config


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_junk(p.name))


def _add_class_dir(builder, root: Path, class_dir: Path, prefix: list[str], split) -> list:
    kept = []
    for f in sorted(class_dir.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if is_junk(f.relative_to(class_dir).as_posix()):
            builder.ignore("hidden")
            continue
        if not f.is_file():
            continue
        if not has_image_extension(f.name):
            builder.skip(rel, f"not an image file name ({f.suffix or 'no extension'})")
            continue
        parts = [*prefix, class_dir.name, *f.relative_to(class_dir).parts]
        if builder.add_image_file(parts, f, class_name=class_dir.name, origin=rel, split=split):
            kept.append(builder.samples[-1])
    return kept


def prepare(cfg: DatasetSettings, archive, builder) -> None:
    split = split_config(cfg)
    if not cfg.path:
        raise DatasetError("an imagefolder dataset needs 'path': the folder with the images")
    root = Path(cfg.path)
    if not root.is_dir():
        raise DatasetError(f"imagefolder path {root} is not a directory")
    for f in root.iterdir():
        if f.is_file():
            builder.ignore("file outside class folders")

    top = _subdirs(root)
    names = {p.name for p in top}
    if {"train", "test"} <= names and names <= set(SPLITS):
        classes = sorted({c.name for d in top for c in _subdirs(d)})
        train = []
        for d in top:
            for class_dir in _subdirs(d):
                kept = _add_class_dir(builder, root, class_dir, [d.name], d.name)
                if d.name == "train":
                    train.extend(kept)
        builder.classes = classes
        if "val" in names:
            builder.split_info = {"method": "official", "note": "train/ val/ test/ folders"}
        else:
            assign_stratified(train, classes, val=split["val"], test=0.0, seed=split["seed"])
            builder.split_info = {
                "method": "official train/test; val stratified from train",
                "val": split["val"],
                "seed": split["seed"],
            }
    else:
        if not top:
            raise DatasetError(f"imagefolder path {root} has no class sub-folders")
        for class_dir in top:
            _add_class_dir(builder, root, class_dir, [], None)
        builder.classes = [d.name for d in top]
        assign_stratified(builder.samples, builder.classes, **split)
        builder.split_info = {
            "method": "stratified",
            **split,
            "note": "one folder per class; stratified train/val/test",
        }
    builder.extra["layout"] = "split" if builder.split_info["method"] != "stratified" else "flat"
