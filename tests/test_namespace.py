"""One import namespace: the harness's packages are ``sapabench.*``, so a user's own ``core``
(or ``attacks``, ``benchmark``...) package is never shadowed, nor shadows the harness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "victims", "attacks", "defenses", "leaderboard", "benchmark")


@pytest.fixture
def user_project(tmp_path):
    """A folder with packages of its own named like the harness's folders."""
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    return tmp_path


def _sapabench() -> str:
    return str(Path(sys.executable).parent / "sapabench")


def test_a_users_own_core_package_and_the_harness_live_side_by_side(user_project):
    code = (
        "import core, attacks; assert core.OWNER == 'user core' and attacks.OWNER == 'user attacks'\n"
        "from sapabench.attacks import ATTACKS; assert 'sapa-gradient-matching' in ATTACKS\n"
        f"import sapabench.core; assert sapabench.core.__file__.startswith(r'{ROOT}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=user_project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = subprocess.run(
        [_sapabench(), "list", "attacks"], cwd=user_project, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0 and "sapa-gradient-matching" in listed.stdout, listed.stderr[-2000:]
    as_module = subprocess.run(
        [sys.executable, "-m", "sapabench", "list", "suites"],
        cwd=user_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert as_module.returncode == 0 and "smoke" in as_module.stdout, as_module.stderr[-2000:]


def test_the_version_answers_without_importing_torch():
    code = "import sys; from sapabench.cli import main; main(['--version']); assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("sapabench "), proc.stderr
