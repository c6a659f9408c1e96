"""The README's `pip install .` is not editable: what the wheel ships is what a user gets.

The static check compares the package list with every source folder holding Python files; the
install check builds the wheel, installs it into a fresh virtual environment and imports every
module of the source tree *from that install*, then runs the installed `centralino` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"tests", "build", "dist", ".git", "__pycache__", "results", "node_modules", "recordings"}


def _source_dirs() -> set[Path]:
    """Folders of the source tree that hold Python modules (tests and build output excluded)."""
    found = set()
    for py in ROOT.rglob("*.py"):
        rel = py.parent.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") or part.endswith(".egg-info") for part in rel.parts):
            continue
        found.add(rel)
    return found


def _modules() -> list[str]:
    out = []
    for rel in sorted(_source_dirs()):
        for py in sorted((ROOT / rel).glob("*.py")):
            if py.name == "__main__.py":
                continue  # running it is the command's job (checked below)
            parts = [*rel.parts] + ([] if py.name == "__init__.py" else [py.stem])
            out.append(".".join(["centralino", *parts]))
    return out


def test_every_source_folder_is_a_listed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    expected = {".".join(["centralino", *rel.parts]) for rel in _source_dirs()}
    missing_init = [str(rel) for rel in _source_dirs() if not (ROOT / rel / "__init__.py").exists()]
    assert not missing_init, f"folders with modules but no __init__.py: {missing_init}"
    assert expected == listed, f"not listed: {sorted(expected - listed)}; listed but absent: {sorted(listed - expected)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this tree (its dependencies are taken from the
    running interpreter's site-packages, so no download is needed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True, timeout=300)
    wheels = list((tmp / "dist").glob("centralino-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])],
                   check=True, timeout=300)
    return env_dir


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["XDG_DATA_HOME"] = str(tmp / "data")
    return env


def test_wheel_imports_every_module_from_the_install(installed: Path, tmp_path: Path):
    python = installed / "bin" / "python"
    script = (
        "import importlib, sys, centralino\n"
        f"site = {str(installed)!r}\n"
        "assert centralino.__file__.startswith(site), centralino.__file__\n"
        "bad = []\n"
        f"for name in {_modules()!r}:\n"
        "    try:\n"
        "        mod = importlib.import_module(name)\n"
        "        if not (mod.__file__ or '').startswith(site): bad.append(f'{name}: from {mod.__file__}')\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    # run outside the source tree so that nothing can be imported from the checkout
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=_clean_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_installed_command_runs(installed: Path, tmp_path: Path):
    command = installed / "bin" / "centralino"
    env = _clean_env(tmp_path)
    version = subprocess.run([str(command), "--version"], cwd=tmp_path, capture_output=True, text=True,
                             env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("centralino "), version.stdout + version.stderr
    check = subprocess.run([str(command), "check"], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "<embedded default.yaml>: OK" in check.stdout
    # the packaged data files came with it: prompts, scenarios, the example plan
    example = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "from importlib import resources as r; import sys;"
         "print(r.files('centralino.config').joinpath('examples/callcentre.yaml'));"
         "print(r.files('centralino.media').joinpath('prompts/welcome.wav'))"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    paths = [Path(p) for p in example.stdout.split()]
    assert len(paths) == 2 and all(p.is_file() for p in paths), example.stdout + example.stderr
    plan = subprocess.run([str(command), "check", str(paths[0])], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=60)
    assert plan.returncode == 0, plan.stdout + plan.stderr
