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


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # analyse the packages under root, not the installed ones
    return subprocess.run([_tool("lint-imports")], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("core/stats.py", "victims.train"),
        ("victims/train.py", "attacks.base"),
        ("attacks/metrics.py", "defenses.apply"),  # siblings of one layer are independent
        ("defenses/apply.py", "benchmark.trial"),
        ("leaderboard/render.py", "benchmark.entries"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\nimport {upward}  # an upward import\n")
    proc = _lint_imports(tmp_path)
    importer = module.removesuffix(".py").replace("/", ".")
    assert proc.returncode == 1 and "1 broken" in proc.stdout
    assert f"{importer} -> {upward}" in proc.stdout


@pytest.mark.parametrize("check", [["format", "--check"], ["check"]], ids=["ruff-format", "ruff-check"])
def test_ruff(check):
    proc = subprocess.run([_tool("ruff"), *check, "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
