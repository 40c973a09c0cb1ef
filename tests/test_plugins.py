"""Third-party attacks and defenses arrive through entry points; broken plugins are contained."""

import functools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from sapabench.attacks import ATTACKS, Attack, AttackConfig, Crafted, ThreatModel, create_attack, register_attack
from sapabench.benchmark.runner import run_suite
from sapabench.benchmark.store import ResultsStore
from sapabench.benchmark.suite import parse_suite
from sapabench.core.registry import Registry
from sapabench.core.stats import mean_se
from sapabench.leaderboard.schema import content_hash

PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "sapabench-example-plugin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _sapabench(site, *args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(PLUGIN.parent.parent)])}
    return subprocess.run(
        [sys.executable, "-m", "sapabench", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_example_plugin_installs_registers_and_runs_through_a_suite(installed_plugin, tmp_path):
    listed = _sapabench(installed_plugin, "list", "attacks", "random*", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("random-noise")
    listed = _sapabench(installed_plugin, "list", "defenses", "median*", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("median-filter")
    run = _sapabench(
        installed_plugin,
        "run",
        "--suite",
        str(PLUGIN / "suite.toml"),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--quiet",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    entries = [json.loads(p.read_text()) for p in (tmp_path / "out" / "leaderboard" / "entries").glob("*.json")]
    assert {(e["attack"], e["defense"]) for e in entries} >= {
        ("random-noise", "none"),
        ("random-noise", "median-filter"),
    }


def _walkthrough():
    """The commands of the submission walkthrough (docs/submitting.md), as written."""
    readme = (PLUGIN.parent.parent / "docs" / "submitting.md").read_text()
    block = readme.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("```")]


def test_readme_walkthrough_install_submit_verify_render(installed_plugin, tmp_path):
    commands = _walkthrough()
    assert (
        commands[0] == "python -m pip install ./examples/sapabench-example-plugin"
    )  # done by the fixture, into a target
    assert [c.split()[1] for c in commands[1:]] == [
        "list",
        "list",
        "submit",
        "submit",
        "verify",
        "verify",
        "leaderboard",
    ]
    outputs = []
    for command in commands[1:]:
        proc = _sapabench(installed_plugin, *shlex.split(command)[1:], cwd=tmp_path)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
        outputs.append(proc.stdout)
    assert outputs[0].startswith("random-noise") and outputs[1].startswith("median-filter")
    assert "0 refused" in outputs[4] and "0 refused" in outputs[5] and "REFUSED" not in outputs[4] + outputs[5]
    attack, defense = tmp_path / "submissions" / "random-noise", tmp_path / "submissions" / "median-filter"
    manifest = json.loads((attack / "submission.json").read_text())
    assert {e["attack"] for e in manifest["entries"] if e["role"] == "submitted"} == {"random-noise"}
    manifest = json.loads((defense / "submission.json").read_text())
    assert {e["defense"] for e in manifest["entries"] if e["role"] == "submitted"} == {"median-filter"}
    assert json.loads((defense / "verification.json").read_text())["accepted"]
    assert "median-filter" in (defense / "leaderboard" / "defenses.md").read_text()
    # a forged value in the plugin's submission is refused by the re-run
    path = next((attack / "leaderboard" / "entries").glob("random-noise--*.json"))
    e = json.loads(path.read_text())
    e["metric"]["values"] = [min(1.0, v + 0.1) for v in e["metric"]["values"]]
    e["metric"]["mean"], e["metric"]["se"] = mean_se(e["metric"]["values"])
    e["content_sha256"] = content_hash(e)
    path.write_text(json.dumps(e))
    proc = _sapabench(installed_plugin, "verify", str(path), "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sapabench", "list", "attacks", "random-noise"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown attack 'random-noise'" in proc.stderr


class _PluginBaseError(BaseException):
    """A plugin's own BaseException subclass."""


_BASE_EXCEPTIONS = {
    "system-exit": SystemExit,
    "keyboard-interrupt": KeyboardInterrupt,
    "generator-exit": GeneratorExit,
    "base-exception": _PluginBaseError,
}


class _Misbehaving(Attack):
    """Test attack. Threat model: untargeted. eps / budget: broken on purpose. Objective: none.
    Options: mode. Example: none."""

    threat = "untargeted"
    Config = AttackConfig
    presets = {p: dict(eps=8 / 255, budget=0.5) for p in ("paper", "embedded", "smoke")}
    mode = "raise"

    def craft(self, ctx):
        n = 10
        idx = torch.arange(n)
        if self.mode == "raise":
            raise RuntimeError("plugin exploded")
        if self.mode in _BASE_EXCEPTIONS:
            raise _BASE_EXCEPTIONS[self.mode]("plugin bailed out")
        if self.mode == "shape":
            return Crafted(indices=idx, delta=torch.zeros(n, 3, 5, 5), threat=ThreatModel("untargeted"))
        return Crafted(
            indices=idx, delta=torch.full((n, *ctx.dataset.train_x.shape[1:]), 0.5), threat=ThreatModel("untargeted")
        )


@pytest.fixture()
def misbehaving(monkeypatch):
    monkeypatch.setattr(ATTACKS, "_entries", dict(ATTACKS._entries))  # registrations end with the test
    names = []
    for mode in ("raise", "shape", "eps", *_BASE_EXCEPTIONS):
        name = f"test-bad-{mode}"
        register_attack(name)(type(f"Bad{mode}", (_Misbehaving,), {"mode": mode}))
        names.append(name)
    return names


def test_misbehaving_plugins_fail_their_cells_and_the_run_goes_on(misbehaving, tmp_path):
    suite = parse_suite(f"""
name = "bad"
dataset = "digits"
preset = "smoke"
trials = 1
[victim]
epochs = 1
[[grid]]
attacks = {json.dumps([*misbehaving, "error-max"])}
recipes = ["sgd"]
archs = ["convnet"]
""")
    lines = []
    report = run_suite(suite, tmp_path, device="cpu", progress=False, log=lines.append)
    rows = {r["attack"]: r for r in ResultsStore(tmp_path).rows()}
    assert report.failed == len(misbehaving)
    assert rows["error-max"]["status"] == "done" and rows["clean"]["status"] == "done"
    import sqlite3

    with sqlite3.connect(tmp_path / "results.sqlite") as con:
        errors = dict(con.execute("SELECT attack, error FROM poisons WHERE status = 'failed'").fetchall())
    assert "plugin exploded" in errors["test-bad-raise"]
    assert "delta shape" in errors["test-bad-shape"]
    assert "> eps" in errors["test-bad-eps"]
    for mode, kind in _BASE_EXCEPTIONS.items():  # SystemExit, KeyboardInterrupt & co. fail the plugin's cells only
        assert errors[f"test-bad-{mode}"].startswith(f"{kind.__name__}: plugin bailed out at test_plugins.py:")
        assert any(f"FAILED to craft test-bad-{mode}" in line for line in lines)  # named in the run's log
    assert (tmp_path / "leaderboard" / "leaderboard.md").is_file()  # finished work is kept and rendered


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(monkeypatch, capsys):
    class EP:
        name, value = "broken", "nowhere:thing"

        def load(self):
            raise ImportError("no module named nowhere")

    import sapabench.core.registry as registry_module

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [EP()])
    reg: Registry = Registry("attack", plugin_group="sapabench.attacks")
    assert reg.list() == [] and "broken" in reg.plugin_errors
    assert "plugin 'broken'" in capsys.readouterr().err


def test_create_attack_still_works_for_builtins():
    assert create_attack("error-min").name == "error-min"


def test_registration_names_a_class_once_and_refuses_misuse(monkeypatch):
    from sapabench.attacks import SurrogateConfig
    from sapabench.defenses import DEFENSES, DataDefense, Filtered, register_defense

    monkeypatch.setattr(ATTACKS, "_entries", dict(ATTACKS._entries))
    monkeypatch.setattr(DEFENSES, "_entries", dict(DEFENSES._entries))

    class NoSurrogate(_Misbehaving):
        """No surrogate: one name, no SAPA twin."""

    register_attack("test-plain")(NoSurrogate)
    assert "test-plain" in ATTACKS and "sapa-test-plain" not in ATTACKS
    assert ATTACKS.entry("test-plain").description == "No surrogate: one name, no SAPA twin. [untargeted]"
    attack = create_attack("test-plain", preset="smoke")
    assert attack.name == "test-plain" and attack.rho is None and not hasattr(attack.config, "surrogate")
    with pytest.raises(TypeError, match="SAPA twin needs a config derived from SurrogateConfig"):
        register_attack("test-twin", sapa_twin=True)(type("Twin", (_Misbehaving,), {}))
    twin = type("Twin", (_Misbehaving,), {"Config": SurrogateConfig})
    register_attack("test-twin", sapa_twin=True)(twin)
    assert create_attack("sapa-test-twin", preset="smoke").rho == 0.05
    with pytest.raises(TypeError, match=r"subclass of attacks\.Attack"):
        register_attack("test-bad")(object)

    class Keep(DataDefense):
        def filter(self, ctx):
            return Filtered(torch.arange(len(ctx.x)))

    register_defense("test-keep")(Keep)
    assert DEFENSES.create("test-keep").name == "test-keep"
    with pytest.raises(TypeError, match="already registered as 'test-keep'"):
        register_defense("test-keep-again")(Keep)


class _Stop(BaseException):
    """A plugin's own BaseException subclass."""


@pytest.mark.parametrize(
    "raised", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), _Stop("boom"), ImportError("x")]
)
def test_a_plugin_that_fails_to_import_in_any_way_is_one_warning_and_the_rest_works(monkeypatch, capsys, raised):
    import sapabench.core.registry as registry_module

    class Broken:
        name, value = "broken", "pkg:broken"

        def load(self):
            raise raised

    class Good:
        name, value = "good", "pkg:good"

        def load(self):
            return lambda: "ok"

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [Broken(), Good()])
    reg: Registry = Registry("attack", plugin_group="sapabench.attacks")
    assert reg.list() == ["good"] and reg.create("good") == "ok"
    assert reg.plugin_errors["broken"].startswith(type(raised).__name__)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "attack plugin 'broken' (pkg:broken) was not loaded" in err


def test_a_plugin_may_not_take_a_built_in_name_or_one_that_is_no_file_name(monkeypatch, capsys):
    import sapabench.core.registry as registry_module

    class Shadow:
        name, value = "error-max", "pkg:shadow"

        def load(self):
            return lambda: "shadow"

    reg: Registry = Registry("attack", plugin_group="sapabench.attacks")
    reg.register("error-max")(lambda: "built-in")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [Shadow()])
    assert reg.create("error-max") == "built-in"  # the built-in stays, and the plugin is named
    err = capsys.readouterr().err
    assert "plugin 'error-max' (pkg:shadow) was not loaded" in err and "built-in attack 'error-max'" in err
    for bad in ("a/b", "../x", ".hidden", "", "x" * 101, "tab\tname"):
        with pytest.raises(ValueError, match="must be 1-100 letters, digits"):
            reg.register(bad)


def test_a_plugin_that_hangs_on_import_is_reported_and_skipped(monkeypatch, capsys):
    import threading
    import time

    import sapabench.core.registry as registry_module

    release = threading.Event()

    class Sleeper:
        name, value = "sleeper", "pkg:sleeper"

        def load(self):
            release.wait(30)  # a plugin that sleeps on import
            return lambda: "late"

    class Good:
        name, value = "good", "pkg:good"

        def load(self):
            return lambda: "ok"

    monkeypatch.setenv("SAPABENCH_PLUGIN_TIMEOUT", "0.3")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [Sleeper(), Good()])
    reg: Registry = Registry("attack", plugin_group="sapabench.attacks")
    t0 = time.monotonic()
    assert reg.list() == ["good"]
    assert time.monotonic() - t0 < 5
    assert "did not finish in 0.3 s" in reg.plugin_errors["sleeper"]
    assert "attack plugin 'sleeper' (pkg:sleeper) was not loaded: PluginTimeout" in capsys.readouterr().err
    release.set()


def test_a_real_ctrl_c_still_stops_what_a_plugins_keyboard_interrupt_only_fails(misbehaving, monkeypatch):
    """Cells contain a plugin's KeyboardInterrupt, but a real SIGINT (the user's Ctrl-C) ends the
    craft: core.interrupts tells them apart by the signal."""
    import os
    import signal

    from sapabench.benchmark.trial import CraftTask, craft
    from sapabench.core.datasets import DataSource
    from sapabench.core.interrupts import is_user_stop, marking_interrupts

    class _Interrupted(_Misbehaving):
        def craft(self, ctx):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt at once
            raise AssertionError("not interrupted")

    register_attack("test-ctrl-c")(_Interrupted)
    suite = parse_suite(
        """
name = "c"
dataset = "digits"
preset = "smoke"
[[grid]]
attacks = ["test-ctrl-c", "test-bad-keyboard-interrupt"]
recipes = ["sgd"]
archs = ["convnet"]
"""
    )
    specs = {c.poison.attack: c.poison for c in suite.cells() if c.poison is not None}
    task = functools.partial(CraftTask, source=DataSource("digits"), device="cpu", deterministic=False)
    with marking_interrupts():
        assert not is_user_stop(KeyboardInterrupt())
        record = craft(task(specs["test-bad-keyboard-interrupt"], folder=str(Path(tempfile.mkdtemp()) / "p")))
        assert record.status == "failed" and record.error.startswith("KeyboardInterrupt: plugin bailed out")
        with pytest.raises(KeyboardInterrupt) as caught:
            craft(task(specs["test-ctrl-c"], folder=str(Path(tempfile.mkdtemp()) / "p")))
        assert is_user_stop(caught.value)
    assert is_user_stop(KeyboardInterrupt())  # unmarked (no handler of ours): read as the user's, to be safe
    with marking_interrupts():
        assert not is_user_stop(KeyboardInterrupt())  # the next command starts unmarked
