"""Each rule hands its command every file it declares, by name, so the Snakefile shows what a
job writes: no rule passes the directory of its outputs and leaves the command to spell the
file names inside it. That no job writes a file beyond its declared ones is checked on a
finished run (tests/integration/test_declared_files.py); the comparison it makes is checked
here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.workflow import undeclared

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "workflow" / "rules"
BLOCK = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)
# a directive of a rule block, and its body: the lines indented deeper than it
DIRECTIVE = re.compile(r"^    (\w+):[^\n]*\n((?:(?:        [^\n]*)?\n)*)", re.M)
NAMED = re.compile(r"^        (\w+)=", re.M)


def figure_stems() -> dict[str, list[str]]:
    """The figures :data:`FIGURES` in common.smk gives each figure rule."""
    common = (RULES / "common.smk").read_text()
    table = common.split("FIGURES = {", 1)[1].split("\n}\n", 1)[0]
    heads = list(re.finditer(r'^    "(\w+)": \(', table, re.M))
    ends = [h.start() for h in heads[1:]] + [len(table)]
    return {
        h[1]: re.findall(r'"(\w+)": "[^"]+"', table[h.end() : end])
        for h, end in zip(heads, ends, strict=True)
    }


def rule_blocks() -> dict[str, dict[str, str]]:
    """Every rule's directives (``output``, ``params``, ``shell`` ...) by name, comments
    dropped."""
    rules = {}
    for smk in sorted(RULES.glob("*.smk")):
        for name, body in BLOCK.findall(smk.read_text()):
            code = "\n".join(line.split("#", 1)[0].rstrip() for line in body.splitlines())
            rules[name] = dict(DIRECTIVE.findall(code + "\n"))
    return rules


def output_names(output: str, figures: dict[str, list[str]]) -> list[str]:
    """The names of a rule's named outputs; ``**figure_outputs("r")`` gives each figure of
    rule r as ``<stem>`` (PNG) and ``<stem>_pdf``."""
    names = NAMED.findall(output)
    for rule in re.findall(r'\*\*figure_outputs\("(\w+)"\)', output):
        names += [n for stem in figures[rule] for n in (stem, f"{stem}_pdf")]
    return names


def problems(directives: dict[str, str], figures: dict[str, list[str]]) -> list[str]:
    """What a rule's command is not handed of its declared outputs (empty: all of it)."""
    output, shell = directives.get("output", ""), directives.get("shell", "")
    if not output or not shell:
        return []
    out = []
    named = dict(re.findall(r'^        (\w+)="([^"]+)"', output, re.M))
    # a download's checksum record is written beside it, as ``<file>.sha256``
    # (isplit/io/verify.py): part of the download's format, found there by every reader
    records = {n for n, p in named.items() if p.endswith(".sha256") and p[:-7] in named.values()}
    if not re.search(r"\{output(:q)?\}", shell):  # the whole output list, every file
        names = [n for n in output_names(output, figures) if n not in records]
        if not names and "{output" not in shell:
            out.append("its output is not on the command line")
        for n in names:
            if not re.search(rf"\{{output\.{n}(:q)?\}}", shell):
                out.append(f"output {n} is not on the command line")
    paths = re.findall(r'"((?:results|resources|logs)/[^"]*)"', output)
    for value in re.findall(r'^        \w+="([^"]+)"', directives.get("params", ""), re.M):
        if any(p.startswith(value.rstrip("/") + "/") for p in paths):
            out.append(f"a param holds {value}, the directory of its outputs")
    return out


FIGURES = figure_stems()
RULE_BLOCKS = rule_blocks()


def test_the_parser_sees_the_rules():
    # a parser that found no outputs would pass every rule below
    assert set(FIGURES) == {"plot_cui", "plot_splits", "plot_latency"}
    assert FIGURES["plot_cui"] == ["cui_curve", "cui_per_class"], FIGURES
    assert output_names(RULE_BLOCKS["finetune"]["output"], FIGURES) == [
        "model", "metrics", "history", "predictions"
    ]  # fmt: skip
    assert len(output_names(RULE_BLOCKS["plot_splits"]["output"], FIGURES)) == 10
    assert sum(bool(b.get("shell")) for b in RULE_BLOCKS.values()) >= 15


def test_a_rule_that_hides_its_files_is_found():
    # the shape every converted rule had: a directory param, one output left to the command
    hiding = {
        "output": '        model="results/{exp}/ft/model.pt",\n'
        '        metrics="results/{exp}/ft/metrics.json",\n',
        "params": '        out="results/{exp}/ft",\n',
        "shell": '        "python -m isplit finetune --model-out {output.model:q}"\n'
        '        " --out {params.out:q}"\n',
    }
    record = {
        "output": '        archive="resources/d/{f}",\n'
        '        checksum="resources/d/{f}.sha256",\n',
        "shell": '        "python -m isplit download-dataset --dest {output.archive:q}"\n',
    }
    assert problems(record, FIGURES) == []
    assert problems(
        record | {"shell": '        "python -m isplit download-dataset"\n'}, FIGURES
    ) == ["output archive is not on the command line"]
    assert problems(hiding, FIGURES) == [
        "output metrics is not on the command line",
        "a param holds results/{exp}/ft, the directory of its outputs",
    ]


@pytest.mark.parametrize("rule", list(RULE_BLOCKS))
def test_every_declared_output_is_on_the_command_line(rule):
    found = problems(RULE_BLOCKS[rule], FIGURES)
    assert not found, f"rule {rule}: {'; '.join(found)}"


def test_undeclared_finds_stray_and_hidden_files(tmp_path):
    """The comparison the finished-run test makes (tools.workflow.undeclared): a file no job
    declares is reported, a hidden work directory left behind included; declared files,
    files inside a declared directory and Snakemake's own metadata are not."""
    files = [
        "results/e/ft/model.pt",
        "results/e/ft/.metrics-checkpoint/checkpoint.pt",
        "results/e/ft/notes.txt",
        "results/e/deploy/l1/device.pt2",
        "results/e/deploy/l1/.snakemake_timestamp",
        "logs/ft/e.log",
        "benchmarks/ft/e.tsv",
        ".snakemake/metadata/abc",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    declared = ["results/e/ft/model.pt", "results/e/deploy/l1", "logs/ft/e.log"]
    assert undeclared(tmp_path, declared) == [
        "benchmarks/ft/e.tsv",
        "results/e/ft/.metrics-checkpoint/checkpoint.pt",
        "results/e/ft/notes.txt",
    ]
    everything = [*declared, "benchmarks/ft/e.tsv", "results/e/ft/notes.txt",
                  "results/e/ft/.metrics-checkpoint/checkpoint.pt"]  # fmt: skip
    assert undeclared(tmp_path, everything) == []
    # a declared directory covers what is inside it, not a neighbour sharing its prefix
    (tmp_path / "results/e/deploy/l10").mkdir()
    (tmp_path / "results/e/deploy/l10/device.pt2").write_text("x")
    assert undeclared(tmp_path, everything) == ["results/e/deploy/l10/device.pt2"]
