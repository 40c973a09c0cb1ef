"""A poison saved again into its folder: the user's files beside it survive, and an interrupt at
any step of the save leaves the earlier poison or the new one, never neither."""

import json
import os

import pytest

from sapabench.core.errors import ConfigError
from sapabench.core.poison import META_FILE, NEXT, TENSORS_FILE, PoisonSet, check_poison_folder, migrate, recover
from tests._poisons import make_poison


def _poison(seed: int) -> PoisonSet:
    return make_poison(seed)


def _notes(folder):
    (folder / "notes.md").write_text("my notes")
    (folder / "figure.png").write_bytes(b"\x89PNG")


def test_a_re_craft_into_an_earlier_poison_folder_keeps_the_users_files(tmp_path):
    out = tmp_path / "P"
    _poison(1).save(out)
    _notes(out)
    _poison(2).save(out)
    assert (out / "notes.md").read_text() == "my notes" and (out / "figure.png").exists()
    assert PoisonSet.load(out).seed == 2
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "notes.md", META_FILE, TENSORS_FILE]


def test_a_folder_of_other_files_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    _notes(out)
    with pytest.raises(ConfigError, match="holds files but no poison"):
        check_poison_folder(out)
    with pytest.raises(ConfigError, match="holds files but no poison"):
        _poison(1).save(out)
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "notes.md"]


def test_migrate_keeps_the_files_beside_the_poison(tmp_path):
    out = tmp_path / "P"
    _poison(1).save(out)
    _notes(out)
    meta = json.loads((out / META_FILE).read_text())
    meta["format_version"] = 2  # an unsealed folder of the earlier format
    meta.pop("content_sha256", None)
    (out / META_FILE).write_text(json.dumps(meta))
    with pytest.warns(UserWarning):
        migrate(out)
    assert (out / "notes.md").read_text() == "my notes" and PoisonSet.load(out).seed == 1


def test_migrate_leaves_a_sealed_folder_as_it_is_and_refuses_an_edited_one(tmp_path, capsys):
    """A current (sealed) poison is checked, not re-sealed with a warning that it never was; one
    edited after sealing is refused rather than sealed again."""
    from sapabench.benchmark.cli import main

    out = tmp_path / "P"
    _poison(1).save(out)
    before = (out / META_FILE).read_bytes()
    assert main(["migrate-poison", str(out)]) == 0
    captured = capsys.readouterr()
    assert "sealed already" in captured.out and "warning" not in captured.err
    assert (out / META_FILE).read_bytes() == before
    meta = json.loads(before)
    meta["eps"] = 1.0
    (out / META_FILE).write_text(json.dumps(meta))
    assert main(["migrate-poison", str(out)]) == 2
    assert "poison check failed" in capsys.readouterr().err


@pytest.mark.parametrize("step", ["tensors_written", "meta_written", "tensors_renamed", "meta_renamed"])
def test_an_interrupt_at_any_step_of_a_save_leaves_the_old_or_the_new(tmp_path, monkeypatch, step):
    """Kill the save after each of its steps (simulated by raising where the step ends): the
    folder then loads as the earlier poison or the new one, with the user's files."""
    out = tmp_path / "P"
    _poison(1).save(out)
    _notes(out)
    real_replace = os.replace
    calls = {"n": 0}

    class Killed(BaseException):
        pass

    def replace(src, dst):
        calls["n"] += 1
        real_replace(src, dst)
        if (step, calls["n"]) in (("tensors_renamed", 1), ("meta_renamed", 2)):
            raise Killed

    original_write = PoisonSet._write

    def write(self, tensors, meta):
        if step == "tensors_written":
            original_write(self, tensors, meta)
            meta.unlink()  # the kill came before the metadata was written
            raise Killed
        original_write(self, tensors, meta)
        if step == "meta_written":
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(PoisonSet, "_write", write)
    with pytest.raises(Killed):
        _poison(2).save(out)
    monkeypatch.undo()
    seed = PoisonSet.load(out).seed  # recovery runs first
    assert seed == (2 if step in ("tensors_renamed", "meta_renamed") else 1)
    assert (out / "notes.md").read_text() == "my notes"
    assert not list(out.glob(f"*{NEXT}"))  # the harness's own leftovers are gone
    recover(out)  # idempotent
    assert PoisonSet.load(out).seed == seed


@pytest.mark.parametrize("where", ["root", "home", "checkout", "project"])
def test_output_folders_that_are_not_the_runs_own_are_refused_in_one_line(tmp_path, monkeypatch, capsys, where):
    from sapabench.benchmark.cli import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    folders = {
        "root": "/",
        "home": str(tmp_path / "home"),
        "checkout": str(tmp_path / "checkout"),
        "project": str(tmp_path / "project"),
    }
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / ".git").mkdir()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "pyproject.toml").write_text("[project]\n")
    out = folders[where]
    before = sorted(os.listdir(out))
    for argv in (["run", "--suite", "smoke", "--out", out], ["attack", "error-max", "--preset", "smoke", "--out", out]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--out" in err
    assert sorted(os.listdir(out)) == before  # nothing written there


def test_a_poison_folder_of_its_own_inside_a_project_needs_no_flag(tmp_path):
    from sapabench.benchmark.cli import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\n")
    poison = project / "poison"  # a folder of its own inside the project needs no flag
    assert main(["attack", "error-max", "--preset", "smoke", "--out", str(poison)]) == 0
    assert PoisonSet.load(poison).attack == "error-max"


def test_a_disk_that_fills_while_a_poison_is_saved_is_one_line_and_keeps_the_old(tmp_path, monkeypatch):
    import sapabench.core.poison as poison_module

    out = tmp_path / "P"
    _poison(1).save(out)

    class SafetensorError(Exception):
        """safetensors' own error type, raised for an I/O failure while writing."""

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(poison_module, "save_file", full)
    with pytest.raises(ConfigError, match=r"writing the poison failed .* the disk may be full or read-only"):
        _poison(2).save(out)
    monkeypatch.undo()
    assert PoisonSet.load(out).seed == 1 and not list(out.glob(f"*{NEXT}"))
