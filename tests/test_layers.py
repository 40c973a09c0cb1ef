"""Code-quality gates of the default test run: the package layers (import-linter's contract in
``pyproject.toml``) hold, an upward import breaks them, and the code passes ruff's format and
lint checks as configured in ``pyproject.toml``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "victims", "attacks", "defenses", "leaderboard", "benchmark")


def _tool(name: str) -> str:
    """The console script ``name`` installed beside this interpreter (the dev extra's)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: python -m pip install -e '.[dev]'")
    return found


def _staged(root: Path, dest: Path) -> Path:
    """The layout a wheel installs (``sapabench/`` holding the six folders: pyproject's package-dir
    mapping), staged under ``dest`` from the source tree ``root``: grimp reads a package from one
    folder, so the contract is checked on the installed shape of the code."""
    package = dest / "sapabench"
    package.mkdir(parents=True)
    shutil.copy(root / "sapabench" / "__init__.py", package / "__init__.py")
    for name in PACKAGES:
        shutil.copytree(root / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", dest)
    return dest


def _lint_imports(root: Path, staging: Path) -> subprocess.CompletedProcess[str]:
    staged = _staged(root, staging)
    env = {**os.environ, "PYTHONPATH": str(staged)}  # analyse the staged packages, not the installed ones
    return subprocess.run([_tool("lint-imports")], cwd=staged, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_hold(tmp_path):
    proc = _lint_imports(ROOT, tmp_path / "staged")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("core/stats.py", "sapabench.victims.train"),
        ("victims/train.py", "sapabench.attacks.base"),
        ("attacks/metrics.py", "sapabench.defenses.apply"),  # siblings of one layer are independent
        ("defenses/apply.py", "sapabench.benchmark.trial"),
        ("leaderboard/render.py", "sapabench.benchmark.entries"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    source = tmp_path / "source"
    for name in (*PACKAGES, "sapabench"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", source)
    path = source / module
    path.write_text(path.read_text() + f"\nimport {upward}  # an upward import\n")
    proc = _lint_imports(source, tmp_path / "staged")
    importer = "sapabench." + module.removesuffix(".py").replace("/", ".")
    assert proc.returncode == 1 and "1 broken" in proc.stdout
    assert f"{importer} -> {upward}" in proc.stdout


@pytest.mark.parametrize("check", [["format", "--check"], ["check"]], ids=["ruff-format", "ruff-check"])
def test_ruff(check):
    proc = subprocess.run([_tool("ruff"), *check, "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
