"""Assembling a prepared dataset: the staging directory, kept images, manifest and report.

Sources (one module each) feed a :class:`Builder` with images and skip reasons; the builder
writes image files into the staging directory, and :meth:`Builder.finish` assigns labels from
the class list, writes ``manifest.parquet``, ``classes.json`` and ``prepare_report.json``.
:func:`staging` then renames the directory into place — only after everything was written.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from isplit.config import DatasetSettings
from isplit.data import DatasetError
from isplit.data.archives import ArchiveLimits, archive_limits, safe_component
from isplit.data.images import ImageStats, check_image
from isplit.data.manifest import SPLITS, Sample, write_manifest
from isplit.data.splits import array_digests, duplicate_report, image_digest
from isplit.io.locks import directory_lock

MANIFEST = "manifest.parquet"
CLASSES = "classes.json"
REPORT = "prepare_report.json"
IMAGES_DIR = "images"
IMAGES_NPY = "images.npy"
COPY_CHUNK = 1 << 20
OWNER_LOCK = ".owner.lock"  # inside a staging folder, held by the process preparing it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _claim_stale(parent: Path, name: str) -> list[tuple[Path, int | None]]:
    """The staging leftovers of dataset ``name`` in ``parent`` whose owner is gone, each with
    its owner lock now held by us (None for a folder that has no lock file).

    Call under the parent's lock: folders are created, and moved into place, only under it, so
    a folder without its lock file is never one being set up right now."""
    claimed = []
    stem = glob.escape(f".{name}.")
    for path in sorted(parent.glob(stem + "tmp-*")) + sorted(parent.glob(stem + "old-*")):
        if not path.is_dir() or path.is_symlink():
            continue
        try:
            fd = os.open(path / OWNER_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            claimed.append((path, None))  # a swap's leftover, or a folder made before locks
            continue
        except OSError:
            continue  # not ours to judge (another user's, say)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its owner is alive and holds it
            continue
        claimed.append((path, fd))
    return claimed


@contextmanager
def staging(out_dir):
    """Yield a fresh hidden sibling of ``out_dir``; on success it replaces ``out_dir``.

    The sibling lives in the same parent so the final rename is atomic on one filesystem.  On
    any exception (Ctrl-C included: a partial preparation has no value) it is deleted and
    ``out_dir`` is left as it was.

    A process killed outright (SIGKILL, power loss) cannot delete its sibling, so each one holds
    an flock on its own ``.owner.lock`` for as long as it lives (the kernel drops it when the
    process dies), and every new preparation first deletes the siblings of the same dataset
    whose lock nobody holds. Looking, creating a sibling and the final swap happen under a lock
    on the parent directory, so no sibling is judged while it is being made or moved.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    with directory_lock(parent):
        stale = _claim_stale(parent, out_dir.name)
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
        owner = os.open(stage / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(owner, fcntl.LOCK_EX)
    try:
        # deleted outside the parent's lock (gigabytes may take a while); each one's own lock,
        # held by us, keeps other preparations away from it meanwhile
        for path, fd in stale:
            shutil.rmtree(path, ignore_errors=True)
            if fd is not None:
                os.close(fd)
        # mkdtemp makes the dir private (0700); the dataset should get ordinary permissions.
        stage.chmod(0o777 & ~_umask())
        yield stage
        old = None
        with directory_lock(parent):
            (stage / OWNER_LOCK).unlink()
            if out_dir.is_symlink() or out_dir.is_file():
                out_dir.unlink()
            elif out_dir.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
                os.replace(out_dir, old / "d")
            os.replace(stage, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        os.close(owner)


class Builder:
    """Collects the samples of one dataset while it is being prepared in ``stage``."""

    def __init__(
        self,
        stage: Path,
        *,
        cfg: DatasetSettings,
        source: str,
        archive: Path | None,
        limits: ArchiveLimits | None = None,
    ):
        self.stage = Path(stage)
        self.cfg = cfg
        self.source = source
        self.archive = archive
        self.limits = limits or archive_limits()  # for the sources' archive readers
        self.samples: list[Sample] = []
        self.skipped: list[dict] = []
        self.ignored: Counter[str] = Counter()
        self.stats = ImageStats()
        self.classes: list[str] | None = None
        self.split_info: dict = {}
        self.extra: dict = {}
        self._ids: set[str] = set()

    # ------------------------------------------------------------------ inputs

    def skip(self, file: str, reason: str) -> None:
        """An image that exists but cannot be used."""
        self.skipped.append({"file": file, "reason": reason})

    def ignore(self, why: str) -> None:
        """An entry that is not data at all (OS junk, duplicate trees, unlabelled test)."""
        self.ignored[why] += 1

    def _target(self, rel_parts: list[str]) -> tuple[str, Path] | str:
        """``(sample id, destination)`` for an image path, or the reason it cannot be used."""
        if not rel_parts or not all(safe_component(p) for p in rel_parts):
            return f"unsafe or empty path {rel_parts!r}"
        rel = "/".join(rel_parts)
        if rel in self._ids:
            return f"duplicate: an earlier entry already became {rel!r}"
        return rel, self.stage / IMAGES_DIR / Path(*rel_parts)

    def add_image_bytes(
        self, rel_parts: list[str], data: bytes, *, class_name: str, origin: str,
        split: str | None = None,
    ) -> bool:  # fmt: skip
        """Keep an image given as bytes at ``images/<rel_parts>`` if it decodes; else skip it.

        ``origin`` names it in skip reasons (e.g. the archive member).  Returns True if kept.
        """
        target = self._target(rel_parts)
        if isinstance(target, str):
            self.skip(origin, target)
            return False
        reason, info = check_image(data)
        if reason is not None:
            self.skip(origin, reason)
            return False
        rel, target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._keep(rel, class_name, split, info, image_digest(data))
        return True

    def add_image_stream(
        self, rel_parts: list[str], stream, *, class_name: str, origin: str,
        split: str | None = None,
    ) -> bool:  # fmt: skip
        """Like :meth:`add_image_bytes` for an archive member given as a stream
        (:class:`isplit.data.archives.MemberReader`): copied to its place in chunks, then
        checked there, so a member is never held whole in memory."""
        target = self._target(rel_parts)
        if isinstance(target, str):
            self.skip(origin, target)
            return False
        rel, target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out, COPY_CHUNK)
        reason, info = check_image(target)
        if reason is not None:
            target.unlink()
            self.skip(origin, reason)
            return False
        self._keep(rel, class_name, split, info, image_digest(target))
        return True

    def add_image_file(
        self, rel_parts: list[str], src: Path, *, class_name: str, origin: str,
        split: str | None = None,
    ) -> bool:  # fmt: skip
        """Like :meth:`add_image_bytes` for a local file: hard-linked when possible, else copied.

        A hard link costs no space and the prepared dataset still survives the user deleting
        their folder; the price is that editing a source file in place edits ours too.
        """
        target = self._target(rel_parts)
        if isinstance(target, str):
            self.skip(origin, target)
            return False
        reason, info = check_image(Path(src))
        if reason is not None:
            self.skip(origin, reason)
            return False
        rel, target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
        self._keep(rel, class_name, split, info, image_digest(Path(src)))
        return True

    def _keep(self, rel: str, class_name: str, split: str | None, info, digest: str) -> None:
        self._ids.add(rel)
        self.samples.append(
            Sample(
                sample_id=rel,
                class_name=class_name,
                path=f"{IMAGES_DIR}/{rel}",
                split=split,
                digest=digest,
            )
        )
        self.stats.add(*info)

    def add_array(self, images, labels, class_names: list[str], id_prefix: str) -> None:
        """Keep an in-memory uint8 array (N×H×W) as ``images.npy``; one sample per row."""
        import numpy as np

        images = np.ascontiguousarray(images, dtype=np.uint8)
        np.save(self.stage / IMAGES_NPY, images)
        width = len(str(max(len(images) - 1, 0)))
        digests = array_digests(images)
        for i, label in enumerate(labels.tolist()):
            self.samples.append(
                Sample(
                    sample_id=f"{id_prefix}/{i:0{width}d}",
                    class_name=class_names[label],
                    index=i,
                    digest=digests[i],
                )
            )
        mode = "L" if images.ndim == 3 else "RGB"
        self.stats.add(mode, (int(images.shape[2]), int(images.shape[1])), count=len(images))

    # ------------------------------------------------------------------ output

    def finish(self) -> dict:
        """Assign labels, write manifest/classes/report into the stage; return the report."""
        if self.classes is None:
            raise DatasetError("internal: the source did not set the class list")
        if not self.samples:
            raise DatasetError(f"{self.source}: no usable images found in {self._origin()}")
        label_of = {name: i for i, name in enumerate(self.classes)}
        if len(label_of) != len(self.classes):
            raise DatasetError(f"duplicate class names in {self.classes}")
        for s in self.samples:
            if s.class_name not in label_of:
                raise DatasetError(f"internal: class {s.class_name!r} not in the class list")
            if s.split not in SPLITS:
                raise DatasetError(f"internal: sample {s.sample_id!r} has no split")
            s.label = label_of[s.class_name]

        write_manifest(self.samples, self.stage / MANIFEST)
        (self.stage / CLASSES).write_text(json.dumps(self.classes, indent=1) + "\n")

        per_split = Counter(s.split for s in self.samples)
        per_class = {name: dict.fromkeys(SPLITS, 0) for name in self.classes}
        for s in self.samples:
            per_class[s.class_name][s.split] += 1
        empty = [name for name, c in per_class.items() if c["train"] == 0]
        report = {
            "source": self.source,
            "input": self._origin(),
            "n_images": len(self.samples),
            "n_classes": len(self.classes),
            "n_per_split": {k: per_split.get(k, 0) for k in SPLITS},
            "n_per_class": per_class,
            "classes_without_train_images": empty,
            "split": self.split_info,
            "n_skipped": len(self.skipped),
            "skipped": sorted(self.skipped, key=lambda d: d["file"]),
            "n_ignored": sum(self.ignored.values()),
            "ignored": dict(sorted(self.ignored.items())),
            "images": self.stats.as_dict(),
            # exact duplicates: kept in one split where the split is drawn (isplit.data.splits)
            "duplicates": duplicate_report(self.samples),
            **self.extra,
            "config": self.cfg.to_dict(),
        }
        (self.stage / REPORT).write_text(json.dumps(report, indent=2, default=str) + "\n")
        return report

    def _origin(self) -> str:
        if self.archive is not None:
            return Path(self.archive).name
        return str(self.cfg.path)
