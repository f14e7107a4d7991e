"""Nothing is deleted that tunesmith did not write: output.overwrite replaces only a folder marked as a run, only
after config, model and data are validated, never the working directory or a folder holding the config or data;
an output.dir that is a file or read-only is one clear line."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml
from tiny_runs import tiny_config, write_chat_data

from tunesmith.cli import main
from tunesmith.config import build_config
from tunesmith.errors import TunesmithError
from tunesmith.recipes.train import run_training
from tunesmith.rundir import (
    MARKER,
    RunDirError,
    check_output,
    clear_run,
    config_changes,
    run_state,
    write_errors,
)


def quiet(*_: object) -> None:
    pass


def user_folder(path: Path) -> Path:
    """A folder of a user's own files, some with the names a run uses."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine", encoding="utf-8")
    (path / "config.yaml").write_text("mine: true\n", encoding="utf-8")
    return path


def fake_run(path: Path, started: bool = True) -> Path:
    """The files a run folder holds, without training one (the lifecycle only looks at the names)."""
    (path / "checkpoints" / "step-2").mkdir(parents=True)
    (path / MARKER).write_text("{}", encoding="utf-8")
    (path / "config.yaml").write_text("old: run\n", encoding="utf-8")
    (path / "audit.json").write_text("{}", encoding="utf-8")
    if started:
        (path / "manifest.json").write_text("{}", encoding="utf-8")
    return path


def write_config(folder: Path, cfg: dict) -> Path:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_overwrite_never_touches_a_folder_tunesmith_did_not_mark(tiny_model_dir, tmp_path):
    data = write_chat_data(tmp_path / "train.jsonl", n=16)
    out = user_folder(tmp_path / "mine")
    cfg = build_config({**tiny_config(tiny_model_dir, data, out), "output": {"dir": str(out), "overwrite": True}})
    with pytest.raises(RunDirError, match="not a tunesmith run"):
        run_training(cfg, log=quiet)
    with pytest.raises(RunDirError, match="not a tunesmith run"):
        run_training(cfg, resume=True, log=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "notes.txt"]
    assert (out / "config.yaml").read_text() == "mine: true\n"


def test_a_mistyped_model_leaves_the_run_to_be_replaced_intact(tiny_model_dir, tmp_path):
    """The old code removed the folder first and failed on the model after: now validation comes first."""
    data = write_chat_data(tmp_path / "train.jsonl", n=16)
    out = fake_run(tmp_path / "run")
    raw = tiny_config(tiny_model_dir, data, out)
    raw["model"]["base"] = str(tmp_path / "no-such-model")
    raw["output"]["overwrite"] = True
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(TunesmithError):
        run_training(build_config(raw), log=quiet)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_overwrite_removes_only_what_a_run_writes(tmp_path):
    out = fake_run(tmp_path / "run")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    clear_run(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]


@pytest.mark.parametrize("where", ["cwd", "parent_of_cwd"])
def test_never_the_working_directory_or_above_it(tmp_path, monkeypatch, where):
    run = fake_run(tmp_path / "run")
    inside = run / "eval"
    inside.mkdir()
    monkeypatch.chdir(run if where == "cwd" else inside)
    if where == "cwd":
        with pytest.raises(RunDirError, match="working directory"):
            check_output(Path("."), resume=False, overwrite=True, protect=[])
    with pytest.raises(RunDirError, match="working directory"):
        check_output(run, resume=False, overwrite=True, protect=[])
    assert (run / "manifest.json").is_file()


def test_output_dot_through_the_cli_deletes_nothing(tiny_model_dir, tmp_path, monkeypatch, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=16)
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, Path(".")))
    assert main(["train", str(cfg), "output.overwrite=true"]) == 2
    assert "not a tunesmith run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "train.jsonl"]


@pytest.mark.parametrize("kind", ["config", "data", "ids"])
def test_never_a_folder_holding_the_config_or_data(tiny_model_dir, tmp_path, kind):
    run = fake_run(tmp_path / "run")
    (run / "eval").mkdir()
    data = write_chat_data((run / "eval" / "train.jsonl") if kind == "data" else tmp_path / "train.jsonl", n=16)
    raw = tiny_config(tiny_model_dir, data, run)
    raw["output"]["overwrite"] = True
    config_path = None
    if kind == "config":
        config_path = write_config(run, raw)
    if kind == "ids":
        (run / "final").mkdir()
        ids = run / "final" / "ids.txt"
        ids.write_text("1\n", encoding="utf-8")
        raw["data"]["train"][0]["ids"] = {"file": str(ids), "field": "id"}
    with pytest.raises(RunDirError, match="which this run reads"):
        run_training(build_config(raw), log=quiet, config_path=config_path)
    assert (run / "manifest.json").is_file()


def test_output_dir_that_is_a_file_or_read_only_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=16)
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, blocker))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and "Traceback" not in err
    assert blocker.read_text() == "x"

    # Root may write anywhere the file system allows, so the permission answer is stubbed (os.access is what
    # the check asks; a read-only file system answers it the same way for every user).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, tmp_path / "ro" / "run"))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not writable" in err


def test_write_errors_become_one_line(tmp_path):
    from safetensors import SafetensorError

    def raised(err: Exception) -> str:
        with pytest.raises(Exception) as caught, write_errors(tmp_path):
            raise err
        return f"{type(caught.value).__name__}: {caught.value}"

    assert raised(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "ckpt"))) == (
        f"RunWriteError: No space left on device: {tmp_path / 'ckpt'}; free space and continue with --resume"
    )
    # safetensors reports the errno only inside its message
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert raised(full).startswith(f"RunWriteError: No space left on device: {tmp_path};")
    assert raised(OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))).startswith(
        "RunWriteError: Read-only file system"
    )
    assert raised(ValueError("bug")) == "ValueError: bug"  # anything else passes unchanged


def test_run_states_and_a_legacy_run(tmp_path):
    assert run_state(tmp_path / "absent") == "empty"
    assert run_state(fake_run(tmp_path / "started")) == "started"
    assert run_state(fake_run(tmp_path / "unstarted", started=False)) == "unstarted"
    assert run_state(user_folder(tmp_path / "mine")) == "foreign"
    legacy = tmp_path / "legacy"  # written before the marker existed: config.yaml + a tunesmith manifest
    legacy.mkdir()
    (legacy / "config.yaml").write_text("a: 1\n", encoding="utf-8")
    (legacy / "manifest.json").write_text(json.dumps({"packages": {"tunesmith": "0.1.0"}}), encoding="utf-8")
    assert run_state(legacy) == "started"
    (legacy / "manifest.json").write_text(json.dumps({"name": "a web app"}), encoding="utf-8")
    assert run_state(legacy) == "foreign"


def test_where_a_run_lives_is_not_part_of_its_identity(tiny_model_dir, tmp_path):
    data = write_chat_data(tmp_path / "train.jsonl", n=16)
    saved = build_config(tiny_config(tiny_model_dir, data, tmp_path / "a")).model_dump(mode="json")
    moved = build_config(tiny_config(tiny_model_dir, data, tmp_path / "b"))
    assert config_changes(saved, moved) == []


def test_a_second_process_cannot_train_into_a_run_in_use(tiny_model_dir, tmp_path):
    """While one process trains into a folder (here: this test holds its lock, as a running `train` does), a
    `--resume` into it is refused in one line and leaves the folder as it was; once released, the resume runs."""
    import subprocess
    import sys

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    out = tmp_path / "run"
    cfg = build_config(tiny_config(tiny_model_dir, data, out, max_steps=4, save_every=2))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, log=lambda *_: None, crash_after_step=2)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom tunesmith.rundir import run_lock\n"
         f"with run_lock(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TunesmithError, match="is in use: another tunesmith process is training into it"):
            run_training(cfg, resume=True, log=lambda *_: None)
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    finally:
        holder.kill()
        holder.wait()
    assert run_training(cfg, resume=True, log=lambda *_: None).steps == 4
