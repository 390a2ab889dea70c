"""notMNIST (Yaroslav Bulatov): letters A–J rendered in many fonts, 28×28 grey PNGs.

Archive layout: ``notMNIST_small/<letter>/<name>.png`` (``notMNIST_large/...`` for the large
variant).  The archives are known to contain unreadable files (zero bytes or corrupt PNGs);
they are skipped and listed in the report.  There is no official split, so the split is
stratified.  Output: ``images/<letter>/<name>.png``.
"""

from __future__ import annotations

from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data.archives import is_junk, iter_tar_files, safe_component, split_member
from isplit.data.images import has_image_extension
from isplit.data.splits import assign_stratified, split_config


def prepare(cfg: DatasetSettings, archive: Path, builder) -> None:
    split = split_config(cfg)
    class_dirs: set[str] = set()
    for name, stream in iter_tar_files(archive, builder.limits):
        parts = split_member(name)
        if is_junk(name):
            builder.ignore("os-metadata")
            continue
        if len(parts) != 3 or not parts[0].startswith("notMNIST"):
            builder.ignore("outside notMNIST_*/<letter>/")
            continue
        _, letter, fname = parts
        if not (safe_component(letter) and safe_component(fname)):
            builder.skip(name, "unsafe member name")
            continue
        class_dirs.add(letter)
        if not has_image_extension(fname):
            builder.skip(name, "not an image file name")
            continue
        builder.add_image_stream([letter, fname], stream, class_name=letter, origin=name)

    # Classes come from the folders, not the kept images, so a letter whose files were all
    # unreadable still shows up (with zero images) instead of silently shifting the labels.
    builder.classes = sorted(class_dirs)
    assign_stratified(builder.samples, builder.classes, **split)
    builder.split_info = {
        "method": "stratified",
        **split,
        "note": "no official split; stratified train/val/test per letter",
    }
    builder.extra["variant"] = cfg.variant
