"""Hostile configs, model files and arguments through the real command line: each is one `error: ...` line naming
the file or key and the reason, exit 2, no traceback, and none of them reaches the last-resort crash handler, which
itself turns a bug into one line plus a crash log (exit 70).

pytest tests/unit/test_cli_hostile.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tunesmith.cli import main
from tunesmith.commands import runs
from tunesmith.errors import EXIT_INTERNAL

sys.path.insert(0, str(Path(__file__).parent))
from test_training import tiny_config, write_chat_data


@pytest.fixture(autouse=True)
def crash_folder(tmp_path, monkeypatch) -> Path:
    """Crash logs go to a folder of the test's own; a known bad input must leave it empty."""
    folder = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder / "tunesmith"


def refused(argv: list[str], capsys, crash_folder: Path) -> str:
    """Run the CLI, require the clean refusal (exit 2, one `error:` line, no crash log); return that line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and "internal error" not in err, err
    assert not crash_folder.exists(), "a known bad input reached the last-resort handler"
    return err


# --- config files -----------------------------------------------------------------------------------------------


def _config_case(tmp_path: Path, body: str | bytes) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return path


CONFIG_CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "directory": (lambda t: t, ["is a directory"]),
    "missing": (lambda t: t / "nope.yaml", ["nope.yaml", "not found"]),
    "latin-1": (lambda t: _config_case(t, "model:\n  base: caf\xe9\n".encode("latin-1")), ["not UTF-8", "0xe9"]),
    "utf-16": (lambda t: _config_case(t, "train:\n  lr: 0.1\n".encode("utf-16")), ["not UTF-8"]),
    "yaml syntax": (lambda t: _config_case(t, "train:\n  lr: [0.1\n  epochs: 2\n"), ["cfg.yaml:3:"]),
    "top-level list": (lambda t: _config_case(t, "- train\n- eval\n"), ["top level must be a mapping"]),
    "duplicate key": (
        lambda t: _config_case(t, "train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n"),
        ["cfg.yaml:4:", "duplicate key 'lr'", "line 2"],
    ),
    "epochs inf": (lambda t: _config_case(t, "train:\n  epochs: .inf\n"), ["train.epochs", "finite"]),
    "lr inf": (lambda t: _config_case(t, "train:\n  lr: .inf\n"), ["train.lr", "finite"]),
    "lr nan": (lambda t: _config_case(t, "train:\n  lr: .nan\n"), ["train.lr", "finite"]),
    "betas nan": (lambda t: _config_case(t, "train:\n  betas: [.nan, 0.9]\n"), ["train.betas.0", "finite"]),
    "huge seed": (lambda t: _config_case(t, f"train:\n  seed: {2**70}\n"), ["train.seed", "2147483647"]),
    "negative seed": (lambda t: _config_case(t, "train:\n  seed: -1\n"), ["train.seed"]),
    "max_steps true": (lambda t: _config_case(t, "train:\n  max_steps: true\n"), ["train.max_steps", "boolean"]),
    "batch yes": (lambda t: _config_case(t, "train:\n  batch_size: yes\n"), ["train.batch_size", "boolean"]),
    "empty target_modules": (
        lambda t: _config_case(t, "adapter:\n  target_modules: []\n"),
        ["adapter.target_modules", "at least one"],
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_files_are_one_line(case, tmp_path, capsys, crash_folder):
    make, expected = CONFIG_CASES[case]
    err = refused(["train", str(make(tmp_path)), "output.dir=" + str(tmp_path / "run")], capsys, crash_folder)
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", [["plan"], ["verify"], ["data", "preview"]])
def test_every_config_verb_refuses_the_same_way(verb, tmp_path, capsys, crash_folder):
    err = refused([*verb, str(tmp_path)], capsys, crash_folder)
    assert "is a directory" in err
    err = refused([*verb, str(_config_case(tmp_path, "train:\n  lr: .inf\n"))], capsys, crash_folder)
    assert "train.lr" in err and "finite" in err


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path, capsys, crash_folder):
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(["train", str(fifo)], capsys, crash_folder)


@pytest.mark.parametrize(
    ("override", "expected"),
    [("train.lr=inf", "finite"), ("train.seed=99999999999", "train.seed"), ("train.max_steps=on", "boolean")],
)
def test_bad_overrides_are_one_line(override, expected, tmp_path, capsys, crash_folder):
    path = _config_case(tmp_path, "train:\n  lr: 0.1\n")
    assert expected in refused(["train", str(path), override], capsys, crash_folder)


# --- model files ------------------------------------------------------------------------------------------------


def _copy(tiny: Path, to: Path) -> Path:
    shutil.copytree(tiny, to)
    return to


def _no_weights(tiny: Path, tmp: Path) -> str:
    folder = _copy(tiny, tmp / "m")
    (folder / "model.safetensors").unlink()
    return str(folder)


def _edit_config(tiny: Path, tmp: Path, text: str) -> str:
    folder = _copy(tiny, tmp / "m")
    (folder / "config.json").write_text(text, encoding="utf-8")
    return str(folder)


def _more_layers(tiny: Path, tmp: Path) -> str:
    config = json.loads((tiny / "config.json").read_text())
    return _edit_config(tiny, tmp, json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))


def _truncated_weights(tiny: Path, tmp: Path) -> str:
    folder = _copy(tiny, tmp / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return str(folder)


def _file(tmp: Path, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


MODEL_CASES: dict[str, tuple[Callable[[Path, Path], str], list[str]]] = {
    "missing path": (lambda _, t: str(t / "no-such-model"), ["no-such-model", "neither a registered name"]),
    "folder without config": (lambda _, t: str(t), ["a folder without config.json"]),
    "no weights": (_no_weights, ["no weights beside config.json"]),
    "corrupt config.json": (lambda m, t: _edit_config(m, t, "{not json"), ["config.json", "not a readable JSON"]),
    "config.json a list": (lambda m, t: _edit_config(m, t, "[1, 2]"), ["config.json", "model_type"]),
    "unknown model_type": (lambda m, t: _edit_config(m, t, '{"model_type": "wizard"}'), ["cannot load the model"]),
    "weights missing layers": (_more_layers, ["lack 9 of the weights"]),
    "truncated weights": (_truncated_weights, ["cannot load the model"]),
    "empty gguf": (lambda _, t: _file(t, "m.gguf", b""), ["m.gguf", "empty"]),
    "fake gguf": (lambda _, t: _file(t, "m.gguf", b"llama weights, honest"), ["m.gguf", "not a GGUF file"]),
    "not a model file": (lambda _, t: _file(t, "m.bin", b"\0" * 64), ["m.bin", "not a .gguf model"]),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_models_are_one_line_and_write_nothing(case, tiny_model_dir, tmp_path, capsys, crash_folder):
    make, expected = MODEL_CASES[case]
    models = tmp_path / "models"
    models.mkdir()
    base = make(tiny_model_dir, models)
    data = write_chat_data(tmp_path / "train.jsonl", n=8)
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run")
    cfg["model"]["base"] = base
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    err = refused(["train", str(path)], capsys, crash_folder)
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_config_that_does_not_fit_the_model_is_refused_before_the_run(tiny_model_dir, tmp_path, capsys, crash_folder):
    data = write_chat_data(tmp_path / "train.jsonl", n=8)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_model_dir, data, tmp_path / "run")), encoding="utf-8")
    err = refused(["train", str(path), "data.max_length=4096"], capsys, crash_folder)
    assert "data.max_length 4096 exceeds the context" in err and "512" in err
    err = refused(["train", str(path), "adapter.target_modules=[q_proj, qkv]"], capsys, crash_folder)
    assert "no layer of this model is named qkv" in err and "v_proj" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


# --- arguments --------------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    ["generate", "run", "--prompt", "hi", "--max-new-tokens", "0"],
    ["predict", "run", "--text", "hi", "--batch-size", "0"],
    ["serve", "--port", "99999"],
    ["serve", "--port", "0"],
    ["serve", "--workers", "-1"],
    ["serve", "--max-batch", "0"],
    ["serve", "--max-tokens", "-5"],
    ["serve", "--max-rows", "0"],
    ["serve", "--max-upload-mb", "nan"],
    ["serve", "--max-upload-mb", "0"],
    ["data", "preview", "cfg.yaml", "-n", "-3"],
    ["plan", "cfg.yaml", "--steps", "0"],
    ["verify", "cfg.yaml", "--steps", "0"],
    ["verify", "cfg.yaml", "--steps", "three"],
    ["eval", "run", "--kind", "wizard"],
    ["data", "check", "f.jsonl", "--format", "xlsx"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=" ".join)
def test_out_of_range_arguments_are_usage_errors(argv, capsys, crash_folder):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tunesmith" in err and f"error: argument {argv[-2]}" in err and "Traceback" not in err
    assert not crash_folder.exists()


# --- the last resort --------------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_one_line_and_a_crash_log(monkeypatch, capsys, crash_folder):
    def broken(_args) -> int:
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr(runs, "_models", broken)
    assert main(["models"]) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip()
    [log] = crash_folder.glob("crash-*.log")
    assert err == f"internal error: KeyError: 'internal bookkeeping'; details in {log}"
    report = log.read_text(encoding="utf-8")
    assert "command: tunesmith models" in report and "Traceback" in report and "in broken" in report


def test_machine_problems_are_plain_errors_not_crashes(monkeypatch, capsys, crash_folder):
    def full_disk(_args) -> int:
        raise OSError(28, "No space left on device", "/runs/x/metrics.jsonl")

    monkeypatch.setattr(runs, "_models", full_disk)
    assert "No space left on device" in refused(["models"], capsys, crash_folder)


def test_the_real_process_prints_no_traceback(tmp_path):
    """The installed entry point, not just main(): a bad config and a bad argument, one line each."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_STATE_HOME": str(tmp_path / "state")}
    run = [sys.executable, "-m", "tunesmith.cli"]
    done = subprocess.run([*run, "train", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {tmp_path}: is a directory, not a config file"
    done = subprocess.run([*run, "serve", "--port", "99999"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--port: 99999 is out of range" in done.stderr
    assert not (tmp_path / "state").exists()
