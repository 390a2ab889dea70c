"""Option types every command shares."""

from __future__ import annotations

import json
from pathlib import Path

import click


class JSONParam(click.ParamType):
    """A config section passed as a JSON object (rules give each step only its own section)."""

    name = "json"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            obj = json.loads(value)
        except json.JSONDecodeError as e:
            self.fail(f"not valid JSON ({e}): {value!r}", param, ctx)
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object, got {value!r}", param, ctx)
        return obj


JSON = JSONParam()
EXISTING = click.Path(path_type=Path, exists=True)
PATH = click.Path(path_type=Path)
