"""Prepared datasets (``manifest.parquet`` + images) as torch datasets.

The same preprocessing serves fine-tuning, importance extraction and split retraining, so the
network sees identical inputs at every stage: decode → resize to ``image_size`` (squashed to a
square, as the public I-SPLIT code does with ``Resize((224, 224))``) → optional augmentation →
[0, 1] → grey replicated to 3 channels → optional ImageNet normalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from isplit.config import InputSettings, TrainSettings, settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip", "crop-flip", "public-code")


def read_classes(root: str | Path) -> list[str]:
    return list(json.loads((Path(root) / "classes.json").read_text()))


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset of about ``n`` items (all if ``n`` is None or too
    big), deterministic in ``seed``, in ascending order so loader order stays stable."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # largest-remainder allocation: proportional, summing exactly to n
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def make_transform(
    image_size: int,
    *,
    grayscale_to_rgb: bool = True,
    normalize: str = "imagenet",
    augment: str = "none",
) -> v2.Compose:
    """uint8 tensor (C, H, W) → float tensor (3 or C, image_size, image_size)."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment {augment!r} is not one of {AUGMENTATIONS}")
    steps: list = [v2.Resize((image_size, image_size), antialias=True)]
    if augment == "flip":
        steps.append(v2.RandomHorizontalFlip(0.5))
    elif augment == "crop-flip":
        steps += [
            v2.RandomResizedCrop((image_size, image_size), scale=(0.7, 1.0), antialias=True),
            v2.RandomHorizontalFlip(0.5),
        ]
    elif augment == "public-code":
        # utils.get_transform(is_train=True) of the public I-SPLIT code
        steps += [
            v2.RandomHorizontalFlip(0.4),
            v2.RandomVerticalFlip(0.3),
            v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.1, 0.1)], p=0.4),
        ]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if grayscale_to_rgb:
        steps.append(v2.Lambda(_to_rgb))
    if normalize == "imagenet":
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    elif normalize != "none":
        raise ValueError(f"normalize {normalize!r} is not 'imagenet' or 'none'")
    return v2.Compose(steps)


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def transform_from_config(input_cfg: InputSettings | dict, augment: str = "none") -> v2.Compose:
    """The transform for an experiment's ``input`` settings."""
    inp = settings("input", input_cfg)
    return make_transform(
        inp.image_size,
        grayscale_to_rgb=inp.grayscale_to_rgb,
        normalize=inp.normalize,
        augment=augment,
    )


class ManifestDataset(Dataset):
    """One split of a prepared dataset; items are ``(image tensor, label)``.

    ``subset`` draws a stratified, seeded subset. ``self.frame`` keeps the selected manifest
    rows in loader order, so a position in the loader maps back to a sample id.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None,
        transform=None,
        *,
        subset: int | None = None,
        seed: int = 0,
    ):
        self.root = Path(root)
        manifest = self.root / "manifest.parquet"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: is {self.root} a prepared dataset?")
        frame = pd.read_parquet(manifest)
        if split is not None:
            if split not in set(frame["split"]):
                raise ValueError(f"dataset {self.root} has no {split!r} split")
            frame = frame[frame["split"] == split]
        frame = frame.reset_index(drop=True)
        keep = stratified_subset(frame["label"].to_numpy(), subset, seed)
        self.frame = frame.iloc[keep].reset_index(drop=True)
        self.classes = read_classes(self.root)
        self.transform = transform
        self.labels = self.frame["label"].to_numpy(dtype=np.int64)
        self._paths = self.frame["path"].tolist()
        self._index = self.frame["index"].to_numpy(dtype=np.int64)
        self._array = None
        if (self.root / "images.npy").is_file():
            # memory-mapped: workers share pages instead of each holding a copy
            self._array = np.load(self.root / "images.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.frame)

    def raw(self, i: int) -> torch.Tensor:
        """The decoded image as a uint8 tensor (C, H, W)."""
        if self._index[i] >= 0:
            if self._array is None:
                raise FileNotFoundError(f"{self.root}/images.npy is missing")
            arr = np.array(self._array[self._index[i]])
        else:
            from PIL import Image

            with Image.open(self.root / self._paths[i]) as im:
                arr = np.array(im.convert("L" if im.mode in ("L", "I", "I;16", "1") else "RGB"))
        t = torch.from_numpy(arr)
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)

    def __getitem__(self, i: int):
        x = self.raw(i)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def split_sets(
    root: str | Path, input_cfg: InputSettings | dict, train: TrainSettings, seed: int = 0
) -> dict[str, ManifestDataset]:
    """The datasets a training stage uses: ``train`` (with the stage's augmentation),
    ``train_plain`` (the same images without it, for scoring), ``val`` and ``test``
    (stratified subsets of ``eval_subset`` images each, when set)."""
    augment, train_subset, eval_subset = train.augment, train.train_subset, train.eval_subset
    plain = transform_from_config(input_cfg)
    return {
        "train": ManifestDataset(
            root,
            "train",
            transform_from_config(input_cfg, augment),
            subset=train_subset,
            seed=seed,
        ),
        "train_plain": ManifestDataset(root, "train", plain, subset=train_subset, seed=seed),
        "val": ManifestDataset(root, "val", plain, subset=eval_subset, seed=seed),
        "test": ManifestDataset(root, "test", plain, subset=eval_subset, seed=seed),
    }
