"""The exception types that mean "bad input or environment", not "bug".

The CLI reports these as one line naming the problem; anything else keeps its traceback.
"""

from __future__ import annotations


def _user_errors() -> tuple[type[BaseException], ...]:
    from isplit.fetch import DownloadError

    return (ValueError, FileNotFoundError, NotADirectoryError, DownloadError)


USER_ERRORS = _user_errors()
