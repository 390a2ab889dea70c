"""Image checks: every file we keep must decode, because a training job that meets a broken
image hours in is far more expensive than decoding each one once here.

notMNIST is known to ship zero-byte and corrupt PNGs; such files are skipped and reported, not
fatal.  ``Image.load()`` (not just ``open``) is needed: ``open`` reads only the header, so a
truncated body would pass.

An image whose header claims more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89
million: a few hundred bytes of PNG can claim gigabytes of pixels) is a decompression bomb: it
is skipped (and counted with the other skipped files) before its pixels are decoded. Pillow
only warns between the limit and twice the limit; that warning is made an error here.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def has_image_extension(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def check_image(source: bytes | Path) -> tuple[str | None, tuple[str, tuple[int, int]] | None]:
    """Decode an image fully. Returns ``(None, (mode, (w, h)))`` or ``(reason, None)``."""
    import warnings

    from PIL import Image

    if isinstance(source, bytes | bytearray) and len(source) == 0:
        return "empty file (0 bytes)", None
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        # Pillow warns (not raises) on e.g. odd EXIF or palette transparency; those images are
        # fine to use, so the warnings must not escalate under ``-W error`` test settings. Its
        # decompression-bomb warning is the exception: that image is not decoded at all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                im.load()
                return None, (im.mode, im.size)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        return f"decompression bomb, not decoded: {e}", None
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        return f"cannot decode image: {type(e).__name__}: {e}", None


class ImageStats:
    """Image modes and size range of the kept images, for the report."""

    def __init__(self):
        self.modes: Counter[str] = Counter()
        self.min_size: tuple[int, int] | None = None
        self.max_size: tuple[int, int] | None = None

    def add(self, mode: str, size: tuple[int, int], count: int = 1) -> None:
        self.modes[mode] += count
        if self.min_size is None:
            self.min_size = self.max_size = tuple(size)
        else:
            self.min_size = (min(self.min_size[0], size[0]), min(self.min_size[1], size[1]))
            self.max_size = (max(self.max_size[0], size[0]), max(self.max_size[1], size[1]))

    def as_dict(self) -> dict:
        return {
            "modes": dict(sorted(self.modes.items())),
            "min_size": list(self.min_size) if self.min_size else None,
            "max_size": list(self.max_size) if self.max_size else None,
        }
