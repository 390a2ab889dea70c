"""config/README.md is what scripts/config_readme.py renders from the schema (so the two cannot
drift), and it lists every key the schema has, at every depth, with its default."""

from __future__ import annotations

from isplit import config
from scripts import config_readme
from tools.workflow import ROOT


def schema_keys(prop: dict, path: str = "") -> dict[str, dict]:
    """Every key below ``prop`` as a dotted path (``[]`` for list items) → its schema entry."""
    defs = config.schema()["$defs"]
    out = {}
    extra = prop.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" in extra:
        out.update(schema_keys(defs[extra["$ref"].rsplit("/", 1)[1]], path))
    for key, sub in prop.get("properties", {}).items():
        out[f"{path}{key}"] = sub
        out.update(schema_keys(sub, f"{path}{key}."))
    if "items" in prop:
        for alt in prop["items"].get("oneOf", [prop["items"]]):
            out.update(schema_keys(alt, f"{path.rstrip('.')}[]."))
    return out


def test_config_readme_is_the_schema_rendered():
    text = (ROOT / "config/README.md").read_text()
    assert text == config_readme.render(config.schema()), (
        "config/README.md and isplit/config/schema.yaml disagree: "
        "run `python -m scripts.config_readme`"
    )


def tables(text: str) -> dict[str, list[str]]:
    """Section (``experiments.retrain``; ``<name>`` dropped) → its table's rows."""
    out: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## `"):
            title = line[4:].rstrip("`").replace(".<name>", "")
            out[title] = []
        elif title and line.startswith("| `"):
            out[title].append(line)
    return out


def test_every_schema_key_is_listed_with_its_default():
    found = tables((ROOT / "config/README.md").read_text())
    keys = schema_keys(config.schema())
    assert {"experiments.retrain.seeds", "experiments.latency.profiles[].mtu"} <= set(keys)
    for path, entry in keys.items():
        if path in found:  # a section: its own table
            continue
        section = max((t for t in found if path.startswith(t + ".")), key=len)
        key = path[len(section) + 1 :]
        row = [r for r in found[section] if r.startswith(f"| `{key}` |")]
        assert row, f"{path}: no row `{key}` in the table of {section}"
        if "default" in entry:
            assert row[0].split(" | ")[1] == config_readme._code(entry["default"]), row


def test_a_new_schema_key_makes_the_readme_stale():
    schema = config.schema()
    edited = {**schema, "properties": {**schema["properties"]}}
    edited["properties"]["downloads"] = {
        **schema["properties"]["downloads"],
        "properties": {
            **schema["properties"]["downloads"]["properties"],
            "proxy": {"type": "string", "default": "none", "description": "a new key"},
        },
    }
    rendered = config_readme.render(edited)
    assert "| `proxy` | `none` | string | a new key |" in rendered
    assert rendered != (ROOT / "config/README.md").read_text()
