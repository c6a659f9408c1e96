"""The README is the front door: every YAML block in it is a plan `centralino check` accepts,
every file it links to is in the repository, and it never sends a reader outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from centralino.config.loader import PlanInvalid, parse_plan_text
from centralino.config.schema import resolution_errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "SECURITY.md"]


def _yaml_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in re.finditer(r"```yaml\n(.*?)```", text, re.S)]


BLOCKS = [(doc, line, block) for doc in DOCS if doc.exists() for line, block in _yaml_blocks(doc)]


def test_the_readme_has_plan_examples():
    assert sum(1 for doc, _, _ in BLOCKS if doc.name == "README.md") >= 2


@pytest.mark.parametrize(("doc", "line", "block"), BLOCKS, ids=[f"{d.name}:{n}" for d, n, _ in BLOCKS])
def test_every_yaml_block_is_a_valid_plan(doc, line, block):
    where = f"{doc.name}:{line}"
    try:  # padded so that errors carry the README's own line numbers
        loaded = parse_plan_text("\n" * (line - 1) + block, doc.name)
    except PlanInvalid as exc:
        pytest.fail(f"the YAML block at {where} fails `centralino check`:\n{exc}")
    unresolved = loaded.errors_for(resolution_errors(loaded.plan))
    assert not unresolved, "\n".join(map(str, unresolved))


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda d: d.name)
def test_links_stay_inside_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text and "shared/sip-torture" not in text and "DESIGN.md" not in text
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # a URL
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is not in the repository"
    for path in re.findall(r"`((?:[a-z_]+/)+[\w.-]+\.(?:py|md|xml|yaml|png|csv))`", text):
        assert (ROOT / path).exists(), f"{doc.name} names {path}, which is not in the repository"


def test_the_repository_carries_no_call_data():
    """Recordings and databases of test or demo runs never land in git (41 WAVs once did)."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    call_data = [f for f in tracked if f.startswith(("recordings/", "voicemail/")) or
                 f.endswith((".db", ".db-wal", ".db-shm")) or
                 (f.endswith(".wav") and not f.startswith(("media/prompts/", "tests/data/")))]
    assert not call_data, call_data
    ignored = (ROOT / ".gitignore").read_text()
    assert "/recordings/" in ignored and "/centralino.db*" in ignored
