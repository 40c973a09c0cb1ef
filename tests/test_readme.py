"""The README's Python examples carry their imports and run as written; a block marked
``<!-- file: PATH -->`` is that file of the repository, verbatim.

All blocks run in one child interpreter (one torch import instead of one per block), each as the
body of its own fresh module: a block that relies on a name it does not import fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"(?:<!-- file: (\S+) -->\n)?```python\n(.*?)```", README, re.S)

RUNNER = """
import json, sys, traceback, types
results = []
for i, code in enumerate(json.load(sys.stdin)):
    module = types.ModuleType(f"readme_block_{i}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, f"README block {i}", "exec"), module.__dict__)
        results.append("")
    except BaseException:
        results.append(traceback.format_exc())
print(json.dumps(results))
"""


def _id(block: tuple[str, str]) -> str:
    path, code = block
    return Path(path).name if path else code.strip().splitlines()[0][:40]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> list[str]:
    """Per block, '' when it ran, else its traceback."""
    tmp = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAPABENCH_CACHE": str(tmp / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([code for _, code in BLOCKS]),
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_readme_shows_the_plugin_files_and_extension_examples():
    assert len(BLOCKS) >= 5
    assert {Path(path).name for path, _ in BLOCKS if path} == {"attack.py", "defense.py"}


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[_id(b) for b in BLOCKS])
def test_python_block_runs_as_written(outcomes, index):
    path, code = BLOCKS[index]
    if path:
        assert code == (ROOT / path).read_text(), f"the README's copy of {path} differs from the file"
    assert outcomes[index] == "", outcomes[index][-3000:]
