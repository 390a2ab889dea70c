"""The code hash that decides reruns reads a module's syntax tree: comments, docstrings and
formatting leave it unchanged, a changed constant or name changes it."""

from __future__ import annotations

import pytest

from isplit.cli import provenance

BASE = '''"""Module docstring."""

SCALE = 2  # a comment


class Model:
    """Class docstring."""

    def forward(self, x):
        """Method docstring."""
        return x * SCALE
'''

SAME = [
    # comments, docstrings and layout differ; the code does not
    BASE.replace("# a comment", "# another comment"),
    BASE.replace("Module docstring.", "Edited module docstring, two\nlines."),
    BASE.replace("Method docstring.", "Fixed a typo."),
    BASE.replace('    """Class docstring."""\n', ""),
    BASE.replace("return x * SCALE", "return (\n            x\n            * SCALE\n        )"),
    BASE + "\n\n# trailing comment\n",
]
DIFFERENT = [
    BASE.replace("SCALE = 2", "SCALE = 3"),
    BASE.replace("x * SCALE", "x + SCALE"),
    BASE.replace("def forward", "def backward"),
    # a string that is not the first statement is code, not a docstring
    BASE.replace("return x * SCALE", 'print("hi")\n        return x * SCALE'),
]


def _text(tmp_path, source: str) -> str:
    path = tmp_path / "m.py"
    path.write_text(source)
    return provenance.code_text(path)


@pytest.mark.parametrize("source", SAME)
def test_comments_docstrings_and_layout_do_not_change_the_code_text(tmp_path, source):
    assert _text(tmp_path, source) == _text(tmp_path, BASE)


@pytest.mark.parametrize("source", DIFFERENT)
def test_a_code_change_changes_the_code_text(tmp_path, source):
    assert _text(tmp_path, source) != _text(tmp_path, BASE)


def test_code_version_is_stable_and_names_the_package_version():
    import isplit

    a, b = provenance.code_version("importance"), provenance.code_version("importance")
    assert a == b and a.startswith(isplit.__version__ + "+")
    assert provenance.code_version("cui") != a
