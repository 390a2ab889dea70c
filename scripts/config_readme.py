"""Write config/README.md from isplit/config/schema.yaml: every key with its default, its
allowed values and its description, one table per config section.

The schema is where keys and defaults live; this file renders it, so the two cannot drift:
``--check`` exits 1 when config/README.md differs from what the schema gives (CI runs it,
tests/unit/test_config_readme.py). After a change to the schema::

    .venv/bin/python -m scripts.config_readme
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from isplit.config import SCHEMA_PATH, schema

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "config" / "README.md"

INTRO = """\
<!-- Generated from isplit/config/schema.yaml by `python -m scripts.config_readme`: edit the
schema, then rerun it (a test fails while this file and the schema disagree). -->

# Configuration

A config names its `datasets` and its `experiments` (model × dataset × settings); each
experiment writes `results/<name>/`. Snakemake validates the whole file against
`isplit/config/schema.yaml` (also at `workflow/schemas/config.schema.yaml`) before anything
runs: defaults are filled in from there, and an unknown key or a wrong type stops the run with
the key's path. Each rule receives only its own section, so editing a stage's settings reruns
that stage and what follows, nothing upstream ([docs/reruns.md](../docs/reruns.md)).

Configs shipped here:

| file | what it runs |
|---|---|
| `config.yaml` | the default: MobileNetV2 on ELPV solar cells, offline (`make run`) |
| `animal-mnist.yaml` | a quick second task: animal silhouettes, 10 classes |
| `validate.yaml` | [the oracle study](../docs/study.md): 4 network × dataset pairs, 5 seeds |
| `tiny.yaml` | what the tests run end to end: 300 training images, 1 epoch |
| `paper.yaml` | the six paper experiments: {VGG16, ResNet-50} × {Tiny-ImageNet, notMNIST, X-ray} |

Run another with `snakemake --configfile config/<file>` (or `make run CONFIG=config/<file>`).
What the settings mean for the method: [docs/pipeline.md](../docs/pipeline.md); the dataset
sources and their splits: [Datasets](../docs/pipeline.md#datasets).

A minimal config:

```yaml
datasets:
  cells: {source: elpv, task: defect2}
experiments:
  solar:
    dataset: cells
    model: mobilenet_v2
    metric: balanced_accuracy
    retrain: {seeds: [0, 1]}
    qos: {max_p95_s: 0.25, min_accuracy: 0.7}
```

Below, every key: its default (**required** where it has none and must be given, — where it
is optional and unset means "not used"), the values it takes and what it does.
"""


def _code(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return f"`{text}`".replace("|", "\\|")


def _bound(prop: dict) -> str:
    parts = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")):
        if key in prop:
            parts.append(f"{sign} {prop[key]:g}")
    return ", ".join(parts)


def values(prop: dict) -> str:
    """The values a property takes, in words."""
    if "oneOf" in prop:
        return " or ".join(values(p) for p in prop["oneOf"])
    if "enum" in prop:
        return " \\| ".join(_code(v) for v in prop["enum"])
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words = []
    for t in types:
        if t == "array" and "items" in prop:
            words.append(f"list of {values(prop['items'])}")
        elif t == "object" and "properties" in prop:
            words.append("{" + ", ".join(prop["properties"]) + "}")
        else:
            words.append(t)
    text = " or ".join(words) or "any"
    bound = _bound(prop)
    return f"{text} ({bound})" if bound else text


def _default(prop: dict, required: bool) -> str:
    if "default" in prop:
        return _code(prop["default"])
    return "**required**" if required else "—"


def _describe(prop: dict) -> str:
    return " ".join(prop.get("description", "").split()).replace("|", "\\|")


def rows(properties: dict, required=(), prefix: str = "") -> list[str]:
    """Table rows for ``properties`` and, with dotted keys, for their nested properties."""
    out = []
    for key, prop in properties.items():
        name = f"{prefix}{key}"
        out.append(
            f"| `{name}` | {_default(prop, key in required)} | {values(prop)} | {_describe(prop)} |"
        )
        nested = prop.get("properties")
        items = prop.get("items", {})
        for alt in items.get("oneOf", [items]):
            if alt.get("properties"):
                out += rows(alt["properties"], alt.get("required", ()), f"{name}[].")
        if nested and not _is_section(prop):
            out += rows(nested, prop.get("required", ()), f"{name}.")
    return out


def _is_section(prop: dict) -> bool:
    """An object of settings of its own (a table of its own), not a small nested value."""
    return prop.get("type") == "object" and prop.get("default") == {}


def table(title: str, sub: dict) -> list[str]:
    properties = sub["properties"]
    scalars = {k: p for k, p in properties.items() if not _is_section(p)}
    out = [f"## `{title}`", ""]
    if sub.get("description"):
        out += [" ".join(sub["description"].split()), ""]
    out += ["| key | default | values | what it does |", "|---|---|---|---|"]
    out += rows(scalars, sub.get("required", ()))
    out.append("")
    for key, prop in properties.items():
        if _is_section(prop):
            out += table(f"{title}.{key}", prop)
    return out


def render(root: dict) -> str:
    """config/README.md for the schema ``root``."""
    defs = root["$defs"]
    out = [INTRO]
    for key, prop in root["properties"].items():
        ref = prop.get("additionalProperties", {})
        if isinstance(ref, dict) and "$ref" in ref:
            sub = {**defs[ref["$ref"].rsplit("/", 1)[1]]}
            sub["description"] = prop.get("description", "")
            out += table(f"{key}.<name>", sub)
        else:
            out += table(key, prop)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if config/README.md is stale")
    ap.add_argument("--out", type=Path, default=README)
    args = ap.parse_args(argv)
    text = render(schema())
    if args.check:
        old = args.out.read_text() if args.out.exists() else ""
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), str(args.out), SCHEMA_PATH.name, lineterm=""
            )
            print("\n".join(diff), file=sys.stderr)
            print(f"{args.out} is stale: run python -m scripts.config_readme", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
