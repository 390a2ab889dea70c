"""The exception types that mean "bad input or environment", not "bug".

The CLI reports these as one line naming the problem; anything else keeps its traceback.
"""

from __future__ import annotations


class DownloadError(RuntimeError):
    """A download failed or produced the wrong bytes; the message names the URL or file."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    DownloadError,
)
