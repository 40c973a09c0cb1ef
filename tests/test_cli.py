import argparse
import io
import json
import re
import subprocess
import sys

import pytest
import torch

from sapabench.benchmark.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_catching_exit(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("axis", "expected"),
    [
        ("datasets", ["cifar10", "cifar100", "digits", "svhn"]),
        ("archs", ["convnet", "lenet", "mlp", "mobilenetv2", "resnet18", "resnet50", "resnet8", "vgg11", "vit"]),
        ("recipes", ["adam", "adversarial", "cutout", "mixup", "sam", "sgd"]),
        (
            "attacks",
            [
                "autoregressive",
                "bullseye-polytope",
                "clean-label-backdoor",
                "error-max",
                "error-min",
                "gradient-matching",
                "hidden-trigger",
                "metapoison",
                "poison-frogs",
                "sapa-error-max",
                "sapa-error-min",
                "sapa-gradient-matching",
                "sapa-sleeper-agent",
                "separable",
                "sleeper-agent",
            ],
        ),
        (
            "defenses",
            [
                "abl",
                "activation-clustering",
                "adversarial",
                "cutout",
                "deep-knn",
                "dp-sgd",
                "early-stopping",
                "fine-pruning",
                "gradient-shaping",
                "grayscale",
                "jpeg",
                "mixup",
                "oracle-filter",
                "random-like-activation-clustering",
                "random-like-deep-knn",
                "random-like-oracle-filter",
                "random-like-spectral-signatures",
                "random-like-spectre",
                "sam",
                "spectral-signatures",
                "spectre",
            ],
        ),
    ],
)
def test_list_prints_each_entry_with_a_description(capsys, axis, expected):
    code, out, _ = run(capsys, "list", axis)
    assert code == 0
    rows = out.strip().splitlines()
    assert [r.split()[0] for r in rows] == expected
    assert all(len(r.split(None, 1)) == 2 for r in rows)


def test_list_with_pattern(capsys):
    code, out, _ = run(capsys, "list", "archs", "res*")
    assert code == 0 and [r.split()[0] for r in out.strip().splitlines()] == ["resnet18", "resnet50", "resnet8"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["list", "recipes", "mixpu"], "unknown recipe 'mixpu'; did you mean 'mixup'?"),
        (["train", "--recipe", "mixpu"], "did you mean 'mixup'?"),
        (["train", "--arch", "resnet19"], "unknown architecture 'resnet19'"),
        (["train", "--dataset", "digitz"], "did you mean 'digits'?"),
        (["train", "--lr", "0"], "invalid lr=0.0: must be a positive number (set --lr)"),
        (["train", "--lr", "-0.5"], "invalid lr=-0.5"),
        (["train", "--epochs", "0"], "invalid epochs=0: must be a positive integer of at most 10000 (set --epochs)"),
        (["train", "--epochs", "-1"], "invalid epochs=-1"),
        (
            ["train", "--batch-size", "0"],
            "invalid batch_size=0: must be a positive integer of at most 65536 (set --batch-size)",
        ),
        (["train", "--recipe", "adversarial", "--adv-eps", "1.2"], "adversarial eps=1.2: must be in [0, 1]"),
        (["train", "--recipe", "adversarial", "--adv-eps=-8/255"], "adversarial eps=-0.031"),
        (["train", "--sam-rho", "0.1"], "--sam-rho applies only to --recipe sam"),
        (["train", "--dataset", "cifar10"], "cifar10 needs --data-root DIR"),
        (["train", "--dataset", "svhn", "--data-root", "/definitely/missing"], "svhn: missing"),
        (["train", "--dataset", "digits", "--data-root", "/tmp"], "--data-root/--download are for"),
        (["train", "--seed", "-4"], "invalid seed=-4"),
        (["train", "--epochs", "ten"], "argument --epochs: invalid int value"),
        (["train", "--lr", "fast"], "invalid number 'fast'"),
        (["train", "--train-step", "graph", "--device", "cpu"], "needs a CUDA device, not cpu"),
        (["run", "--suite", "smoke", "--device", "cpu", "--pack", "0"], "invalid pack size 0"),
        *(
            [(["train", "--device", "cuda"], "device cuda requested but no CUDA GPU is available")]
            if not torch.cuda.is_available()
            else []
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_catching_exit(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_train_prints_accuracy_and_timing(capsys):
    code, out, err = run(capsys, "train", "--epochs", "2", "--seed", "1", "--device", "cpu")
    assert code == 0
    assert "clean test accuracy:" in out and "images/s" in out and "on cpu" in out
    assert "epoch" not in err  # no progress bar when stderr is not a terminal


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_show_on_a_terminal_only():
    from sapabench.benchmark.cli import _progress_printer
    from sapabench.benchmark.runner import Progress
    from sapabench.benchmark.trial import FAILED, TrialRecord
    from sapabench.victims.train import EpochStats

    fields = dict.fromkeys(EpochStats.__dataclass_fields__, 0.5)
    for stream, shown in ((_Terminal(), True), (io.StringIO(), False)):
        show = _progress_printer(stream)
        for epoch in (1, 2):
            show(EpochStats(**{**fields, "epoch": epoch, "epochs": 2}))
        assert ("2/2" in stream.getvalue() and "epoch" in stream.getvalue()) == shown
        bar = Progress(3, stream=stream)
        bar.update("error-max sgd convnet seed 100", TrialRecord(FAILED, error="x"))
        bar.close()
        text = stream.getvalue()
        assert ("1/3" in text and "failed 1" in text and "cell" in text) == shown


def test_train_json_is_reproducible(capsys):
    argv = ["train", "--recipe", "cutout", "--epochs", "2", "--seed", "5", "--json", "--quiet"]
    code, out, _ = run(capsys, *argv)
    first = json.loads(out)
    _, out2, _ = run(capsys, *argv)
    second = json.loads(out2)
    assert code == 0 and first["clean_accuracy"] == second["clean_accuracy"]
    assert first["recipe"]["name"] == "cutout" and first["recipe"]["epochs"] == 2 and first["dataset"] == "digits"


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "sapabench", "train", "--lr", "-1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sapabench: error: invalid lr=-1.0: must be a positive number (set --lr)"


_NO_TORCH = """
import runpy, sys
sys.argv = ["sapabench", *sys.argv[1:]]
try:
    runpy.run_module("sapabench", run_name="__main__")
except SystemExit as stop:
    code = stop.code
loaded = sorted(m for m in ("torch", "numpy", "matplotlib", "sapabench.benchmark.cli") if m in sys.modules)
print("LOADED", loaded, "EXIT", code)
"""


@pytest.mark.parametrize(
    "argv, code",
    [(["--help"], 0), (["--version"], 0), (["run", "--help"], 0), (["evaluate", "--help"], 0), (["run", "--nope"], 2)],
)
def test_help_version_and_a_bad_option_answer_without_importing_torch(argv, code):
    """The parser (benchmark.parser) imports no torch: --help answers in a fraction of a second
    (timed in tests/benchmarks/test_help_speed.py), not after torch's five."""
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == f"LOADED [] EXIT {code}", proc.stdout + proc.stderr
    if code == 0:
        assert "sapabench" in proc.stdout


def test_every_option_has_help():
    """Complete help texts: every option of every subcommand says what it does."""
    from sapabench.benchmark.parser import build_parser

    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    missing = [
        f"{p.prog} {action.option_strings[0] if action.option_strings else action.dest}"
        for p in parsers(build_parser())
        for action in p._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


# ------------------------------------------------------------------------- attack / evaluate


@pytest.fixture(scope="module")
def smoke_poison(tmp_path_factory):
    out = tmp_path_factory.mktemp("poison") / "gm"
    code = main(f"attack sapa-gradient-matching --preset smoke --seed 2 --out {out} --device cpu".split())
    assert code == 0
    return out


def test_attack_writes_an_artifact_and_reports_time(capsys, tmp_path):
    argv = f"attack error-max --preset smoke --set steps=2 --eps 4/255 --out {tmp_path / 'em'} --device cpu"
    code, out, _ = run(capsys, *argv.split())
    assert code == 0 and "crafting time:" in out and "wrote" in out
    meta = json.loads((tmp_path / "em" / "poison.json").read_text())
    assert meta["attack"] == "error-max" and meta["config"]["steps"] == 2 and meta["eps"] == pytest.approx(4 / 255)


def test_evaluate_prints_mean_and_standard_error(capsys, smoke_poison):
    argv = f"evaluate --poison {smoke_poison} --trials 2 --epochs 1 --baseline --device cpu"
    code, out, err = run(capsys, *argv.split())
    assert code == 0
    assert "poisoned: target_success" in out and "+/-" in out and "clean: target_success" in out and "crafting" in out
    assert re.search(r"clean: target_success \d+\.\d \+/- \d+\.\d % \(2 victims, SE", out)  # percent
    assert (
        err.count(" victim ") >= 4 and "%, clean accuracy" in err and "training 2 arm(s) x 2 victims of 1 epochs" in err
    )
    assert "attack's effect without the defense" in out and "no 95 % interval from 2 victims" in out
    # one epoch leaves the victims near chance: said, since the poisoned numbers then mean little
    clean = float(re.search(r" clean: .*clean accuracy (\d+\.\d)", out).group(1))
    assert ("near chance" in err) == (clean < 20.0)


def test_evaluate_says_one_trial_and_warns_when_victims_are_near_chance(capsys, smoke_poison):
    # seed 100 itself (the rule of folders before nesting) trains a victim that stays near chance in one epoch
    argv = (
        f"evaluate --poison {smoke_poison} --trials 1 --epochs 1 --baseline --device cpu --quiet --victim-seeds shared"
    )
    code, out, err = run(capsys, *argv.split())
    assert code == 0 and "(1 victim;" in out and not re.search(r"\b1 victims", out) and "+/-" not in out
    clean = float(re.search(r" clean: .*clean accuracy (\d+\.\d)", out).group(1))
    assert clean < 20.0 and "is near chance (10.0 % for 10 classes)" in err and "--epochs" in err


def test_evaluate_json(capsys, smoke_poison):
    argv = f"evaluate --poison {smoke_poison} --trials 2 --epochs 1 --json --quiet --device cpu"
    code, out, _ = run(capsys, *argv.split())
    report = json.loads(out)
    poisoned = report["arms"]["poisoned"]
    assert code == 0 and report["attack"] == "sapa-gradient-matching" and len(poisoned["values"]) == 2
    assert set(poisoned["values"]) <= {0.0, 1.0} and report["comparisons"] == []


def test_evaluate_with_a_defense_names_it_shows_what_it_did_and_both_arms(capsys, tmp_path, monkeypatch):
    """The defense is named, its filter statistics and time printed, and the poison is trained with
    and without it (and clean data with and without it) on the same victim seeds."""
    monkeypatch.setenv("SAPABENCH_CACHE", str(tmp_path / "cache"))
    poison = tmp_path / "em"
    assert main(f"attack error-min --preset smoke --seed 3 --out {poison} --device cpu".split()) == 0
    capsys.readouterr()
    argv = f"evaluate --poison {poison} --trials 2 --epochs 1 --baseline --defense spectral-signatures --device cpu"
    code, out, err = run(capsys, *argv.split())
    assert code == 0, err
    for arm in ("poisoned", "poisoned + spectral-signatures", "clean", "clean + spectral-signatures"):
        assert re.search(rf"^\s*{re.escape(arm)}: clean_accuracy", out, re.M), out
    assert re.search(r"spectral-signatures removed \d+\.\d images per victim, precision \d+\.\d %, recall", out)
    assert re.search(r"spectral-signatures took \d+\.\d s per victim \(its own model trained in \d+\.\d s", out)
    for what in ("defense's change of the attack metric", "attack's effect under the defense", "defense's clean cost"):
        assert what in out
    code, out, _ = run(capsys, *argv.split(), "--json", "--quiet")
    report = json.loads(out)
    seeds = {a["victim_seeds"][0] for a in report["arms"].values()}
    assert len(seeds) == 1 and len(report["arms"]) == 4  # every arm on the same victims
    defended = report["arms"]["poisoned + spectral-signatures"]["defense_stats"]
    assert {"removed", "precision", "recall", "defense_s", "defender_s"} <= set(defended)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["attack", "gradient-matchin", "--out", "X"], "did you mean 'gradient-matching'"),
        (["attack", "error-min", "--eps", "2", "--out", "X"], "invalid eps=2.0"),
        (["attack", "error-min", "--craft-precision", "fp16", "--out", "X"], "invalid choice: 'fp16'"),
        (
            ["attack", "error-min", "--rho", "0.5", "--out", "X"],
            "rho is an option of SAPA attacks only; use 'sapa-error-min'",
        ),
        (["attack", "error-min", "--eps=-1/255", "--out", "X"], "invalid eps=-0.0039"),
        (["attack", "error-min", "--budget", "1.5", "--out", "X"], "invalid budget=1.5"),
        (["attack", "error-min", "--budget", "0", "--out", "X"], "invalid budget=0.0"),
        (["attack", "error-min", "--set", "steps", "--out", "X"], "--set expects KEY=VALUE"),
        (["attack", "error-min", "--set", "nope=1", "--out", "X"], "unknown attack option 'nope'"),
        (["attack", "error-min", "--preset", "tiny", "--out", "X"], "unknown preset 'tiny'"),
        (["evaluate", "--poison", "/no/such/folder"], "not a poison folder"),
        (["evaluate", "--poison", "/tmp", "--trials", "0"], "invalid trials=0"),
    ],
)
def test_attack_and_evaluate_bad_input(capsys, argv, needle):
    code, _, err = run_catching_exit(capsys, *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_evaluate_refuses_a_tampered_artifact(capsys, smoke_poison, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(smoke_poison, copy)
    meta = json.loads((copy / "poison.json").read_text())
    meta["threat"]["adversarial_class"] = (meta["threat"]["adversarial_class"] + 1) % 10  # aim elsewhere
    (copy / "poison.json").write_text(json.dumps(meta))
    code, _, err = run_catching_exit(capsys, "evaluate", "--poison", str(copy), "--trials", "1")
    assert code == 2 and "poison check failed: threat in" in err and "differ from what was sealed" in err


def test_evaluate_refuses_a_poison_from_another_dataset(capsys, smoke_poison, tmp_path):

    from tests._fakedata import write_cifar10

    write_cifar10(tmp_path / "c10")
    argv = f"evaluate --poison {smoke_poison} --dataset cifar10 --data-root {tmp_path / 'c10'} --no-verify-checksums --trials 1"
    code, _, err = run_catching_exit(capsys, *argv.split())
    assert code == 2 and "crafted on dataset 'digits'" in err


# ------------------------------------------------------------------------------- run & co.


def test_run_render_and_claims_from_the_cli(capsys, smoke_cli):
    out, stdout, err, claims = smoke_cli
    lines = stdout.strip().splitlines()
    # a short summary: what ran, one line per threat model, where the page is and what to do next
    assert lines[0].startswith("10 cells run (0 failed)") and len(lines) <= 8 and max(map(len, lines)) < 200
    assert any(line.startswith("targeted: SAPA stronger than its base in ") for line in lines)
    assert "underpowered (need >= 6 poisons" in stdout  # the smoke suite has 1-2 poisons per setting
    assert f"page: {out / 'leaderboard' / 'leaderboard.html'}" in stdout and "# sapabench leaderboard" not in stdout
    assert "10/10" not in err  # the progress bar (tqdm) stays off when stderr is not a terminal
    # a smoke run (1-epoch surrogates, 2-step crafting) stands for no setting of the paper: every
    # claim is untested, counted and not listed (--all lists them)
    assert "summary: 0 held; 0 held, below the paper; 0 below the paper; 0 failed; 0 inconclusive; " in claims
    assert "--all lists them" in claims
    assert "T4-sgd-gradient-matching" not in claims and "leaderboard.html shows them" in claims
    record = json.loads((out / "leaderboard" / "claims.json").read_text())
    assert {r["verdict"] for r in record["verdicts"]} == {"untested"}
    assert {r["id"] for r in record["verdicts"]} >= {"T4-sgd-gradient-matching"}
    code, listed, _ = run(capsys, "claims", "--results", str(out), "--all")
    assert code == 0 and "UNTESTED" in listed and "T4-sgd-gradient-matching" in listed
    page = (out / "leaderboard" / "leaderboard.html").read_bytes()
    assert b"T4-sgd-gradient-matching" in page  # the verdicts are on the page
    (out / "leaderboard" / "leaderboard.md").unlink()
    code, stdout, _ = run(capsys, "leaderboard", "render", "--results", str(out))
    assert code == 0 and (out / "leaderboard" / "leaderboard.md").is_file()
    # the smoke page re-rendered from its entry files and records: byte for byte the same
    assert (out / "leaderboard" / "leaderboard.html").read_bytes() == page


def test_list_suites(capsys):
    code, out, _ = run(capsys, "list", "suites")
    assert code == 0 and [r.split()[0] for r in out.strip().splitlines()] == [
        "as-authors",
        "backdoor",
        "claims",
        "cost",
        "cost-cifar10",
        "default",
        "defenses",
        "head-trajectory",
        "pilot",
        "protocols",
        "rho",
        "smoke",
        "table1",
        "table1-cifar100",
        "table1-embedded",
        "table2",
        "table2-cifar100",
        "table2-embedded",
        "table3",
        "table3-cifar100",
        "table3-embedded",
        "table4",
        "targeted",
        "untargeted",
    ]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            'name = "x"\ndataset = "digits"\n[[grid]]\nattacks = ["error-mn"]\nrecipes = ["sgd"]\narchs = ["convnet"]\n',
            "line 4: unknown attack 'error-mn'",
        ),
        (
            'name = "x"\ndataset = "digits"\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sdg"]\narchs = ["convnet"]\n',
            "line 5: unknown recipe 'sdg'",
        ),
        (
            'name = "x"\ndataset = "digits"\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sgd"]\narchs = ["vitt"]\n',
            "line 6: unknown architecture 'vitt'",
        ),
    ],
)
def test_bad_suite_file_is_refused_before_anything_runs(capsys, tmp_path, content, needle):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    code, _, err = run_catching_exit(capsys, "run", "--suite", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_tampered_entry_is_refused_by_render(capsys, tmp_path):
    from tests._entries import make_entry

    entries = tmp_path / "leaderboard" / "entries"
    entries.mkdir(parents=True)
    e = make_entry()
    e["metric"]["mean"] = 0.01
    (entries / "x.json").write_text(json.dumps(e))
    code, _, err = run_catching_exit(capsys, "leaderboard", "render", "--results", str(tmp_path))
    assert code == 2 and "x.json" in err and ("content_sha256" in err or "do not match" in err)
