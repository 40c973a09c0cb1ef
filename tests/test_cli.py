import json
import subprocess
import sys

import pytest

from benchmark.cli import main


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


@pytest.mark.parametrize(("axis", "expected"), [
    ("datasets", ["cifar10", "cifar100", "digits", "svhn"]),
    ("archs", ["convnet", "mobilenetv2", "resnet18", "resnet50", "vgg11", "vit"]),
    ("recipes", ["adam", "adversarial", "cutout", "mixup", "sam", "sgd"]),
])  # fmt: skip
def test_list_prints_each_entry_with_a_description(capsys, axis, expected):
    code, out, _ = run(capsys, "list", axis)
    assert code == 0
    rows = out.strip().splitlines()
    assert [r.split()[0] for r in rows] == expected
    assert all(len(r.split(None, 1)) == 2 for r in rows)


def test_list_with_pattern(capsys):
    code, out, _ = run(capsys, "list", "archs", "res*")
    assert code == 0 and [r.split()[0] for r in out.strip().splitlines()] == ["resnet18", "resnet50"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["list", "recipes", "mixpu"], "unknown recipe 'mixpu'; did you mean 'mixup'?"),
    (["train", "--recipe", "mixpu"], "did you mean 'mixup'?"),
    (["train", "--arch", "resnet19"], "unknown architecture 'resnet19'"),
    (["train", "--dataset", "digitz"], "did you mean 'digits'?"),
    (["train", "--lr", "0"], "invalid lr=0.0: must be a positive number (set --lr)"),
    (["train", "--lr", "-0.5"], "invalid lr=-0.5"),
    (["train", "--epochs", "0"], "invalid epochs=0: must be a positive integer (set --epochs)"),
    (["train", "--epochs", "-1"], "invalid epochs=-1"),
    (["train", "--batch-size", "0"], "invalid batch_size=0: must be a positive integer (set --batch-size)"),
    (["train", "--recipe", "adversarial", "--adv-eps", "1.2"], "adversarial eps=1.2: must be in [0, 1]"),
    (["train", "--recipe", "adversarial", "--adv-eps=-8/255"], "adversarial eps=-0.031"),
    (["train", "--sam-rho", "0.1"], "--sam-rho applies only to --recipe sam"),
    (["train", "--dataset", "cifar10"], "cifar10 needs --data-root DIR"),
    (["train", "--dataset", "svhn", "--data-root", "/definitely/missing"], "svhn: missing"),
    (["train", "--dataset", "digits", "--data-root", "/tmp"], "--data-root/--download are for"),
    (["train", "--seed", "-4"], "invalid seed=-4"),
    (["train", "--epochs", "ten"], "argument --epochs: invalid int value"),
    (["train", "--lr", "fast"], "invalid number 'fast'"),
])  # fmt: skip
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
    assert "epoch 2/2" in err  # progress


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
        [sys.executable, "-m", "benchmark", "train", "--lr", "-1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sapabench: error: invalid lr=-1.0: must be a positive number (set --lr)"
