"""The documentation's relative links (and their #anchors) resolve, and the repository paths that
docs/extending.md tells a reader to edit exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# The project's own pages: not those of installed packages (node_modules, .venv) or build output.
NOT_OURS = {"node_modules", ".venv", "cdk.out", "build"}
DOCS = [page for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md")),
                          *sorted(ROOT.glob("*/*/README.md"))]
        if not NOT_OURS & set(page.relative_to(ROOT).parts)]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to hyphens) and explicit
    ``<a id="...">`` ones."""
    text = markdown.read_text(encoding="utf-8")
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)
    return ({re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
            | set(re.findall(r'<a id="([^"]+)"', text)))


def test_relative_links_and_anchors_resolve():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path) if path else doc
            if not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_files_extending_md_names_exist():
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    top = {path.name for path in ROOT.iterdir()}
    named = {token.rstrip("/") for token in re.findall(r"`([\w./-]+)`", text)
             if "/" in token and token.split("/")[0] in top}
    assert len(named) > 20
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"docs/extending.md names paths that do not exist: {missing}"
