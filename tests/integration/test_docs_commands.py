"""Every command docs/latency.md shows runs as written, at a small size: the fenced shell blocks
and the inline commands are parsed, frames and seeds are cut down (the options a reader would
change to go faster, nothing else), outputs go to a temporary folder, and each command must exit 0
and write the files its comment says. ns-3 commands need the ``ns3`` extra, the lossy bridge
root and network namespaces; each is skipped with the reason where missing."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from isplit.latency import ns3sim
from tools.relay import netns_unavailable

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs/latency.md"
#: a program's files in its --out: a folder of these, or (None) the --out file itself
WRITES = {
    "isplit simulate-link": None,
    "scripts.compare_ns3": ["ns3_agreement.md", "ns3_agreement.csv"],
    "scripts.validate_latency --lossy": ["lossy.md", "lossy.csv", "lossy.json"],
    "scripts.fit_device_profiles": [],
}
#: options cut down; a command without one of these gets none added
SMALL = {"--frames": "20", "--seeds": "0,1", "--sim-frames": "200", "--runs": "2"}
#: what the lossy bridge measures at this size: one loss level, one-packet TCP frames
LOSSY_SMALL = ["--losses", "0.05", "--frame-bytes", "1000", "--protocols", "tcp"]


def commands() -> list[str]:
    """Shell commands of the page: lines of ```bash blocks (continuations joined) and inline
    code that starts like a command."""
    text = PAGE.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(line.strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    out += [c for c in re.findall(r"`([^`\n]+)`", prose) if re.match(r"(sudo |\S*python )", c)]
    # the same command in prose and in a block runs once
    seen, unique = set(), []
    for c in out:
        key = re.sub(r"^(sudo )?\S*python ", "", c)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def program(argv: list[str]) -> str:
    """The WRITES key of a command (``python -m MODULE [--lossy]``)."""
    i = argv.index("-m")
    name = argv[i + 1] + (f" {argv[i + 2]}" if argv[i + 1] == "isplit" else "")
    return name + (" --lossy" if "--lossy" in argv else "")


def small(argv: list[str], out: Path) -> list[str]:
    """``argv`` with this interpreter, fewer frames and outputs under ``out``."""
    argv = [a for a in argv if a != "sudo"]
    argv[0] = sys.executable if argv[0].endswith("python") else argv[0]
    for k, a in enumerate(argv[:-1]):
        if a in SMALL:
            argv[k + 1] = SMALL[a]
        if a == "--out":
            argv[k + 1] = str(out / Path(argv[k + 1]).name)
    if "--lossy" in argv:
        argv += [*LOSSY_SMALL, "--frames", "40"]
    if "--out" not in argv and WRITES[program(argv)]:
        argv += ["--out", str(out / "out")]
    return argv


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, id=f"{k}-{program(shlex.split(c, comments=True)).replace(' ', '-')}")
        for k, c in enumerate(commands())
    ],
)
def test_documented_command_runs(command, tmp_path):
    argv = shlex.split(command, comments=True)
    assert argv[0] in ("sudo", ".venv/bin/python", "python"), command
    name = program(argv)
    assert name in WRITES, f"{command}: say in WRITES what it writes"
    if "ns3" in command or "compare_ns3" in name:
        if ns3sim.unavailable():
            pytest.skip(ns3sim.unavailable())
    if name.endswith("--lossy") and (reason := netns_unavailable()):
        pytest.skip(f"lossy bridge: {reason}")
    run = small(argv, tmp_path)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, f"{shlex.join(run)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    expect = WRITES[name]
    if expect is None:
        out = Path(run[run.index("--out") + 1])
        assert out.is_file() and out.stat().st_size > 0, out
        assert re.search(r"p50 \d", r.stdout) and "frame loss" in r.stdout, r.stdout
    elif expect:
        folder = Path(run[run.index("--out") + 1])
        for f in expect:
            assert (folder / f).is_file() and (folder / f).stat().st_size > 0, folder / f
        if "compare_ns3" in name:
            assert "| link |" in (folder / "ns3_agreement.md").read_text()
    else:
        assert "rpi4-cpu" in r.stdout, r.stdout  # the fit printed per profile


def test_the_page_shows_the_commands():
    cmds = commands()
    assert len(cmds) >= 7, cmds
    assert {program(shlex.split(c, comments=True)) for c in cmds} == set(WRITES)
