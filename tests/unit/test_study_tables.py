"""docs/study.md's tables are what scripts/study_results.py rebuilds from the per-pair files
committed under docs/study/ (no number typed by hand), and every pair has what the study
promised: every probe point, five aligned seeds, the budget bottleneck's equal bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "docs/study"
PAIRS = ["animal-mnist-mobilenet_v2", "animal-mnist-resnet18", "elpv-mobilenet_v2", "elpv-resnet18"]


def test_the_tables_in_docs_match_the_committed_files():
    out = subprocess.run(
        [sys.executable, "-m", "scripts.study_results", "tables", "--study", str(STUDY)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    page = (ROOT / "docs/study.md").read_text()
    block = page.split("<!-- study tables: begin -->\n")[1].split("<!-- study tables: end -->")[0]
    assert block.strip() == out.strip()


def test_every_pair_has_five_seeds_at_every_split_and_a_verdict():
    for pair in PAIRS:
        q = json.loads((STUDY / pair / "quality.json").read_text())
        assert set(q["n_seeds"]) == {5} and q["n_points"] >= 10, pair
        assert q["selection"].startswith("validation"), pair
        assert isinstance(q["cui_adds_to_size"], bool), pair
        provenance = json.loads((STUDY / pair / "provenance.json").read_text())
        assert provenance["seconds_by_rule"]["retrain_split"] > 0, pair
