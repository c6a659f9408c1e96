"""The seam stays where it is: applications reach the B2BUA only through ``control`` (and the
``call`` types), ``switch/`` never imports the applications or the API, no worker command is
written as a dict outside the media protocol, and the seam and the applications are mypy-clean.
These read the source tree (AST) — they fail when someone reaches into internals again."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"tests", "build", "dist", ".git", "__pycache__", "node_modules"}
B2BUA_PUBLIC = {"control", "call"}  # what may be imported from switch.b2bua outside it
APPLICATIONS = ("ivr", "acd", "dialer", "api")


def sources() -> list[Path]:
    return [p for p in ROOT.rglob("*.py")
            if not any(part in SKIP or part.startswith(".") for part in p.relative_to(ROOT).parts)]


def module_of(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ["centralino", *parts]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute (relative imports resolved), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_of(path)
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_nothing_outside_the_b2bua_imports_its_internals():
    bad = []
    for path in sources():
        where = rel(path)
        if where.startswith("switch/b2bua/") or where == "app.py":
            continue  # the B2BUA itself; the app wires it
        for line, mod in imports(path):
            parts = mod.split(".")
            if parts[:3] == ["centralino", "switch", "b2bua"] and len(parts) > 3 and parts[3] not in B2BUA_PUBLIC:
                bad.append(f"{where}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_switch_never_imports_the_applications_or_the_api():
    bad = []
    for path in sources():
        where = rel(path)
        if not where.startswith("switch/"):
            continue
        for line, mod in imports(path):
            parts = mod.split(".")
            if parts[:1] == ["centralino"] and len(parts) > 1 and parts[1] in APPLICATIONS:
                bad.append(f"{where}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_media_and_the_pure_modules_stay_below_the_switch():
    """media/ (and events.py, schedules.py) never import the switch, the apps or the API."""
    bad = []
    for path in sources():
        where = rel(path)
        if not (where.startswith("media/") or where in ("events.py", "schedules.py")):
            continue
        for line, mod in imports(path):
            parts = mod.split(".")
            if parts[:1] == ["centralino"] and len(parts) > 1 and parts[1] in ("switch", *APPLICATIONS):
                bad.append(f"{where}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_worker_commands_are_written_only_by_the_media_protocol():
    """No ``{"cmd": …}`` dict outside media/protocol.py and the worker's dispatcher."""
    allowed = {"media/protocol.py", "media/engine.py", "media/worker.py"}
    bad = []
    for path in sources():
        if rel(path) in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "cmd" for k in node.keys):
                bad.append(f"{rel(path)}:{node.lineno}")
    assert not bad, "worker commands built by hand at " + ", ".join(bad)


def test_applications_are_typed_against_the_seam_not_any():
    """The IVR, the ACD, supervision and voicemail take a CallControl, not ``b2bua: Any``."""
    for name in ("ivr/engine.py", "ivr/voicemail.py", "acd/service.py", "acd/supervision.py"):
        text = (ROOT / name).read_text()
        assert "b2bua: Any" not in text and "self.b2bua" not in text, f"{name} still holds the B2BUA"
        assert "control: CallControl" in text, name


SEAM = ["centralino.events", "centralino.schedules", "centralino.acd", "centralino.ivr", "centralino.dialer",
        "centralino.api", "centralino.media.protocol"]


def test_mypy_is_clean_on_the_seam_and_the_applications(tmp_path):
    mypy = shutil.which("mypy")
    if mypy is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is required under CI (the test extra installs it)")
        pytest.skip("mypy not installed")
    (tmp_path / "centralino").symlink_to(ROOT, target_is_directory=True)  # the root is the package
    args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp_path / ".mypy_cache")]
    for pkg in SEAM:
        args += ["-p", pkg]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
