"""The HTML report of a finished tiny run holds every figure and the summary, each in its
section with its label (report.smk declares them through common.smk's FIGURES)."""

from __future__ import annotations

import re

from tools.workflow import ROOT, snakemake

SECTIONS = {
    "1. importance": ["CUI curve", "CUI per class"],
    "2. splits": ["accuracy per split", "CUI vs accuracy", "accuracy vs bytes",
                  "per-class accuracy", "predictors of accuracy"],
    "3. latency": ["latency vs accuracy"],
    "0. summary": [],
}  # fmt: skip


def test_report_holds_every_figure_and_the_summary(tiny_run, tmp_path):
    work, _ = tiny_run
    report = tmp_path / "report.html"
    r = snakemake(
        "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work),
        "--report", str(report),
    )  # fmt: skip
    added = set(re.findall(r"^Adding (\S+) \(", r.stdout + r.stderr, re.M))
    figures = {p.name for p in (work / "results/tiny/figures").glob("*.png")}
    assert len(figures) == 8 and added == figures | {"summary.md"}, added
    html = report.read_text()
    for section, labels in SECTIONS.items():
        assert section in html, section
        for label in labels:
            assert label in html, label
