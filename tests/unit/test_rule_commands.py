"""Every rule's command line names a real ``isplit`` command and only options that command
accepts. Snakemake's lint and dry-run never execute a shell command, so a stale option (one a
command lost, or one copied to the wrong rule) would otherwise surface only when the job runs,
after the training before it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from isplit.cli import COMMANDS

RULES = Path(__file__).resolve().parents[2] / "workflow" / "rules"
# a rule or checkpoint block: from its header to the next top-level statement
BLOCK = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)
COMMAND = re.compile(r"python -m isplit ([a-z][a-z-]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def rule_commands() -> list[tuple[str, str, list[str]]]:
    """(rule, isplit command, options its block passes) for every rule that runs isplit."""
    out = []
    for smk in sorted(RULES.glob("*.smk")):
        for name, body in BLOCK.findall(smk.read_text()):
            code = "\n".join(line.split("#", 1)[0] for line in body.splitlines())
            commands = set(COMMAND.findall(code))
            if not commands:
                continue
            assert len(commands) == 1, f"{smk.name}: rule {name} runs {sorted(commands)}"
            out.append((name, commands.pop(), sorted(set(OPTION.findall(code)))))
    return out


def accepted(command: str) -> set[str]:
    module, attr = COMMANDS[command].split(":")
    cmd = getattr(importlib.import_module(module), attr)
    return {opt for p in cmd.params for opt in p.opts + p.secondary_opts if opt.startswith("--")}


def test_rules_found():
    found = {command for _, command, _ in rule_commands()}
    # the workflow runs most steps; a parser that finds none would pass the test below vacuously
    assert len(found) >= 15, found


@pytest.mark.parametrize("rule,command,options", rule_commands(), ids=lambda v: str(v)[:40])
def test_rule_passes_only_options_its_command_accepts(rule, command, options):
    assert command in COMMANDS, f"rule {rule}: no isplit command {command!r}"
    unknown = sorted(set(options) - accepted(command))
    assert not unknown, f"rule {rule}: `isplit {command}` has no option {unknown}"
