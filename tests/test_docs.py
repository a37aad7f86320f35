"""The documentation's relative links resolve (a moved file breaks no page)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted({REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("*/README.md"),
                *REPO.glob("baselines/*/README.md")})
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_relative_links_resolve(page: Path):
    broken = [target for target in LINK.findall(page.read_text())
              if "://" not in target and not target.startswith("mailto:")
              and not (page.parent / target).exists()]
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"


def test_the_readme_links_the_docs():
    text = (REPO / "README.md").read_text()
    for page in ("docs/demo.md", "docs/architecture.md", "docs/paper-protocol.md",
                 "config/README.md", "baselines/README.md"):
        assert f"]({page})" in text, page


def test_no_process_language_in_the_product():
    """Code, configs, tests and docs say why things are as they are, not how the work went:
    no numbered rounds of work, tracker numbers, roles or notes outside the repository."""
    words = ["sess" + r"ions? \d", "iss" + r"ue \d", "iss" + "ue's", "the le" + r"ad\b",
             r"(?-i:\bFA" + r"CTS\b)", "rou" + r"nd \d of work"]
    pattern = re.compile("|".join(words), re.IGNORECASE)
    files = subprocess.run(["git", "ls-files", "*.py", "*.smk", "*.yaml", "*.md", "Makefile",
                            "*.sh", "Snakefile"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    hits = [f"{name}:{n}: {line.strip()}" for name in files
            for n, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, "\n".join(hits[:20])
