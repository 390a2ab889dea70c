"""The rule files read like the snakemake-workflows catalogue's: no function is written inline
in a rule (input and params functions are named, in workflow/rules/common.smk), and every
figure the report shows has its caption file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "workflow/rules").glob("*.smk"))


@pytest.mark.parametrize(
    "smk",
    [p for p in RULE_FILES if p.name != "common.smk"],
    ids=lambda p: p.name,
)
def test_no_function_is_written_inside_a_rule(smk):
    code = "\n".join(line.split("#", 1)[0] for line in smk.read_text().splitlines())
    assert not re.search(r"\blambda\b", code), f"{smk.name}: name it in common.smk"


def test_every_report_figure_has_a_caption():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    table = common.split("FIGURES = {", 1)[1].split("\n}\n", 1)[0]
    stems = re.findall(r'"(\w+)": "[^"]+"', table)
    assert len(stems) >= 8 and "cui_curve" in stems, stems
    captions = {p.stem for p in (ROOT / "workflow/report").glob("*.rst")}
    assert set(stems) <= captions, set(stems) - captions
