"""The examples of the README and of the docs pages (``docs/*.md``) work as written: every Python
block carries its imports and runs; a block marked ``<!-- file: PATH -->`` is that file of the
repository, verbatim; every ``sapabench`` command of a shell block parses, names registered
attacks, suites and defenses, and the cheap ones (``list``) run.

All blocks run in one child interpreter (one torch import instead of one per block), each as the
body of its own fresh module: a block that relies on a name it does not import fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(page.read_text() for page in PAGES)
BLOCKS = re.findall(r"(?:<!-- file: (\S+) -->\n)?```python\n(.*?)```", TEXT, re.S)
# names the example plugin (examples/sapabench-example-plugin) registers once installed
PLUGIN_NAMES = ("random-noise", "random*", "median-filter", "median*")
COMMANDS = [
    line.split("#")[0].strip()
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S)
    for part in block.splitlines()
    for line in part.split("&&")
    if line.strip().startswith("sapabench ")
]

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


def test_the_pages_show_commands():
    assert any(c.startswith("sapabench run") for c in COMMANDS) and any("claims" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_shell_command_is_valid_as_written(command, capsys):
    from sapabench.attacks import ATTACKS
    from sapabench.benchmark.cli import build_parser, main
    from sapabench.benchmark.suite import load_suite
    from sapabench.defenses import DEFENSES

    argv = shlex.split(command)[1:]
    args = build_parser().parse_args(argv)  # a bad option or command exits here
    if "example-plugin" in command or set(PLUGIN_NAMES) & set(argv):
        return  # names of the example plugin: tests/test_plugins.py installs it and runs these
    if args.command == "run" and args.suite:
        load_suite(args.suite)
    if args.command == "attack":
        ATTACKS.entry(args.name)
    if args.command in ("evaluate", "run") and getattr(args, "defense", None) not in (None, "none"):
        DEFENSES.entry(args.defense)
    if args.command == "list":
        assert main(argv) == 0 and capsys.readouterr().out.strip()
