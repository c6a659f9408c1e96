"""Every package directory ships in the wheel (the README's `pip install .` is not editable)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"centralino"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] in ("tests", "build", ".git"):
            continue
        if rel.parts:
            found.add("centralino." + ".".join(rel.parts))
    assert found == listed
