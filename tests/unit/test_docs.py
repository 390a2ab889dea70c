"""The README fits on a screen (at most 10 KB) and every link in it, in config/README.md, in
the folders' READMEs and in docs/ points at a file that exists and, for ``#anchor`` links, at a
heading that file has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "config/README.md", ROOT / "scripts/README.md"]
    + [ROOT / "tools/README.md"]
    + list((ROOT / "docs").glob("*.md"))
)
LINK = re.compile(r"!?\[(?:[^\]]|\n)*?\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lowercased, punctuation dropped, spaces
    to hyphens, a repeated heading numbered."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not (m := re.match(r"^#{1,6} (.*)$", line)):
            continue
        slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not prose
    return LINK.findall(text)


def test_the_readme_fits_on_a_screen():
    size = (ROOT / "README.md").stat().st_size
    assert size <= 10_000, f"README.md is {size} bytes; move detail into docs/"


def test_the_pages_are_found_and_link_to_each_other():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "config/README.md", "docs/pipeline.md", "docs/study.md"} <= names
    readme = links(ROOT / "README.md")
    for doc in ("outputs", "deployment", "cluster", "reruns", "architecture", "development"):
        assert f"docs/{doc}.md" in readme, f"README.md does not link docs/{doc}.md"


def test_anchors_follow_githubs_rules(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A title\n## Does CUI predict? (the study)\n## A title\n```\n# no\n```\n")
    assert anchors(page) == {"a-title", "does-cui-predict-the-study", "a-title-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_points_at_something(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: outside the repository
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {dest.name} has no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)
