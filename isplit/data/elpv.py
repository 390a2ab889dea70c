"""ELPV (PyPI ``elpv-dataset==1.0.0.post1``): 2,624 electroluminescence images of solar cells.

Buerhop-Lutz et al. (EU PVSEC 2018), Deitsch et al. (Solar Energy 2019): 300×300 8-bit grey
PNGs of single cells cut from 44 photovoltaic modules, each annotated with the probability that
the cell is defective (one of 0, 1/3, 2/3, 1) and the module's cell type (mono- or
polycrystalline).  Data CC BY-NC-SA 4.0, the package's code Apache-2.0.

The wheel ships ``elpv_dataset/data/images/cell0001.png … cell2624.png`` and
``elpv_dataset/data/labels.csv`` (whitespace-separated: ``images/<file> <probability> <type>``).
Its code is never installed or imported: the files are read from the wheel as a zip, like
animal-mnist's.

``task`` chooses the labels:

* ``defect2`` (default): ``functional`` (probability < 0.5) vs ``defective`` (>= 0.5), the
  benchmark's binary task;
* ``defect4``: the four annotated probabilities as classes ``p0``, ``p33``, ``p67``, ``p100``;
* ``type``: ``mono`` vs ``poly``.

There is no official split: train/val/test are stratified by the task's classes (config
``split``), exact duplicates together.  The PNG bytes are kept as shipped, under
``images/<file>`` whatever the task, so the prepared images do not depend on it.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import open_zip, read_zip_member, safe_component
from isplit.data.images import has_image_extension
from isplit.data.splits import assign_stratified, split_config

DATA_DIR = "elpv_dataset/data/"
LABELS_MEMBER = DATA_DIR + "labels.csv"

# The annotated defect probabilities, by the class name defect4 gives them.
PROBABILITIES = {
    "p0": Fraction(0),
    "p33": Fraction(1, 3),
    "p67": Fraction(2, 3),
    "p100": Fraction(1),
}
CELL_TYPES = ("mono", "poly")
TASKS = {
    "defect2": ["functional", "defective"],
    "defect4": list(PROBABILITIES),
    "type": list(CELL_TYPES),
}
TASK_DEFINITIONS = {
    "defect2": {"functional": "defect probability < 0.5", "defective": "defect probability >= 0.5"},
    "defect4": {name: f"defect probability {p}" for name, p in PROBABILITIES.items()},
    "type": {"mono": "monocrystalline module", "poly": "polycrystalline module"},
}


def _probability_name(text: str) -> str | None:
    """The defect4 class of a probability as written in labels.csv (``0.333…`` is 1/3)."""
    try:
        value = float(text)
    except ValueError:
        return None
    for name, p in PROBABILITIES.items():
        if abs(value - float(p)) < 1e-6:
            return name
    return None


def parse_labels(text: str, archive) -> list[dict]:
    """The rows of ``labels.csv`` as ``{"file", "probability", "type"}``, validated.

    ``probability`` is the defect4 class name.  Any malformed line fails the preparation: the
    file is small and fixed, so an odd line means this is not the wheel we know.
    """
    rows, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{archive}: {LABELS_MEMBER} line {n}"
        if len(fields) != 3:
            raise DatasetError(f"{where}: expected 'path probability type', got {line!r}")
        path, prob, cell_type = fields
        folder, _, name = path.partition("/")
        if folder != "images" or not safe_component(name) or not has_image_extension(name):
            raise DatasetError(f"{where}: {path!r} is not images/<file>.png")
        if name in seen:
            raise DatasetError(f"{where}: {path!r} is listed twice")
        seen.add(name)
        p = _probability_name(prob)
        if p is None:
            raise DatasetError(f"{where}: probability {prob!r} is not one of 0, 1/3, 2/3, 1")
        if cell_type not in CELL_TYPES:
            raise DatasetError(f"{where}: type {cell_type!r} is not one of {CELL_TYPES}")
        rows.append({"file": name, "probability": p, "type": cell_type})
    if not rows:
        raise DatasetError(f"{archive}: {LABELS_MEMBER} has no rows")
    return rows


def class_of(row: dict, task: str) -> str:
    """The class name of a labels.csv row under ``task``."""
    if task == "defect2":
        return "defective" if PROBABILITIES[row["probability"]] >= Fraction(1, 2) else "functional"
    if task == "defect4":
        return row["probability"]
    if task == "type":
        return row["type"]
    raise DatasetError(f"elpv task must be one of {sorted(TASKS)}, got {task!r}")


def prepare(cfg: DatasetSettings, archive: Path, builder) -> None:
    task = cfg.task
    if task not in TASKS:
        raise DatasetError(f"elpv task must be one of {sorted(TASKS)}, got {task!r}")
    split = split_config(cfg)
    with open_zip(archive, builder.limits) as zf:
        try:
            info = zf.getinfo(LABELS_MEMBER)
        except KeyError:
            raise DatasetError(
                f"{archive} has no member {LABELS_MEMBER!r}: not the elpv-dataset wheel?"
            ) from None
        rows = parse_labels(read_zip_member(zf, info, archive).decode("utf-8"), archive)
        members = {i.filename: i for i in zf.infolist() if not i.is_dir()}
        listed = set()
        for row in sorted(rows, key=lambda r: r["file"]):
            member = DATA_DIR + "images/" + row["file"]
            listed.add(member)
            if member not in members:
                builder.skip(member, "listed in labels.csv but not in the wheel")
                continue
            data = read_zip_member(zf, members[member], archive)
            builder.add_image_bytes(
                [row["file"]], data, class_name=class_of(row, task), origin=member
            )
        for name in members:
            if name.startswith(DATA_DIR + "images/") and name not in listed:
                builder.ignore("image without a row in labels.csv")

    builder.classes = list(TASKS[task])
    assign_stratified(builder.samples, builder.classes, **split)
    builder.split_info = {
        "method": "stratified",
        **split,
        "note": "no official split; stratified train/val/test per class of the task",
    }
    builder.extra["task"] = task
    builder.extra["class_definitions"] = TASK_DEFINITIONS[task]
    # the full annotation, whatever the task, so one report shows what the other tasks would see
    counts = Counter((r["probability"], r["type"]) for r in rows)
    builder.extra["labels_csv"] = {
        "n_rows": len(rows),
        "probability": {p: sum(counts[p, t] for t in CELL_TYPES) for p in PROBABILITIES},
        "type": {t: sum(counts[p, t] for p in PROBABILITIES) for t in CELL_TYPES},
        "probability_by_type": {t: {p: counts[p, t] for p in PROBABILITIES} for t in CELL_TYPES},
    }
