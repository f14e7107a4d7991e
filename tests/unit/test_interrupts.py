"""Every interruption leaves a resumable run: a real `tunesmith train` is stopped with SIGKILL or SIGINT at named
points (TUNESMITH_FAULT, tunesmith/faults.py) — during setup, steps, every kind of save and the final eval — then
`--resume` must end with the weights of an uninterrupted run. Also: a stop between config.yaml and manifest.json,
a re-save of an existing step, a cut-short metrics line, an audit refusal, a moved run, Ctrl-C and a full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_runs import tiny_config, write_chat_data

from tunesmith import faults
from tunesmith.cli import main
from tunesmith.config import build_config
from tunesmith.faults import ENV
from tunesmith.recipes.train import run_training
from tunesmith.training.checkpoint import clean_staging, list_checkpoints

TUNESMITH = [sys.executable, "-m", "tunesmith.cli"]
# Saves at 2 and 4 (keeping 2, so step-2 is pruned at 6), a held-out eval at 3, dropout so the RNG state matters.
SETTINGS = {"max_steps": 6, "save_every": 2, "eval_every": 3, "keep_checkpoints": 2, "dropout": 0.1}


def quiet(*_: object) -> None:
    pass


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "adapter_model.safetensors")


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def metric_steps(run: Path) -> list[tuple[int, str]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r.get("split", "train")) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The data and an uninterrupted run of SETTINGS to compare with."""
    folder = tmp_path_factory.mktemp("interrupts")
    data = write_chat_data(folder / "train.jsonl", n=24)
    run_training(build_config(tiny_config(tiny_model_dir, data, folder / "whole", **SETTINGS)), log=quiet)
    return data, folder / "whole"


def config_file(tiny_model_dir, data: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_model_dir, data, folder / "run", **SETTINGS)), encoding="utf-8")
    return path


def no_leftovers(run: Path) -> None:
    hidden = [p.name for p in (run / "checkpoints").glob(".*")] if (run / "checkpoints").is_dir() else []
    assert hidden == [] and not (run / ".final-staging").exists() and not list(run.glob("*.tmp"))


# --- in-process: Ctrl-C, a full disk, the identity, a cut-short metrics line ------------------------------------


@pytest.mark.slow  # test_every_interruption_resumes_exactly covers it
def test_ctrl_c_inside_a_checkpoint_save_exits_130_and_resumes(tiny_model_dir, setup, tmp_path, monkeypatch, capsys):
    data, whole = setup
    cfg = config_file(tiny_model_dir, data, tmp_path)
    faults._hits.clear()
    monkeypatch.setenv(ENV, "checkpoint:optimizer#2=SIGINT")  # inside the save of step 4
    assert main(["train", str(cfg)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
    no_leftovers(tmp_path / "run")
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-2"]
    monkeypatch.delenv(ENV)
    assert main(["train", str(cfg), "--resume"]) == 0
    assert_same(adapter(whole), adapter(tmp_path / "run"))
    assert metric_steps(tmp_path / "run") == metric_steps(whole)


def test_a_full_disk_is_one_line_leaves_no_staging_and_resumes(tiny_model_dir, setup, tmp_path, monkeypatch, capsys):
    data, whole = setup
    cfg = config_file(tiny_model_dir, data, tmp_path)
    faults._hits.clear()
    monkeypatch.setenv(ENV, "checkpoint:weights#2=ENOSPC")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("train:")]  # not the bar
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device: ") and "Traceback" not in err, err
    assert str(tmp_path / "run" / "checkpoints") in err
    no_leftovers(tmp_path / "run")
    monkeypatch.delenv(ENV)
    assert main(["train", str(cfg), "--resume"]) == 0
    assert_same(adapter(whole), adapter(tmp_path / "run"))


@pytest.mark.slow  # test_every_interruption_resumes_exactly covers it
@pytest.mark.parametrize("then", ["fresh", "resume"])
def test_a_stop_between_config_and_manifest_restarts_either_way(tiny_model_dir, setup, tmp_path, monkeypatch, then):
    data, whole = setup
    cfg = config_file(tiny_model_dir, data, tmp_path)
    faults._hits.clear()
    monkeypatch.setenv(ENV, "config=SIGINT")
    assert main(["train", str(cfg)]) == 130
    assert (tmp_path / "run" / "config.yaml").is_file() and not (tmp_path / "run" / "manifest.json").exists()
    monkeypatch.delenv(ENV)
    assert main(["train", str(cfg), *(["--resume"] if then == "resume" else [])]) == 0
    assert_same(adapter(whole), adapter(tmp_path / "run"))
    assert metric_steps(tmp_path / "run") == metric_steps(whole)


def test_a_cut_short_metrics_line_does_not_block_resume(tiny_model_dir, setup, tmp_path):
    data, whole = setup
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", **SETTINGS))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, log=quiet, crash_after_step=5)
    with open(tmp_path / "run" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 5, "loss": 0.12')  # the disk filled up mid-line
    notes: list[str] = []
    run_training(cfg, resume=True, log=notes.append)
    assert any("dropped 1 unreadable line" in n for n in notes)
    assert_same(adapter(whole), adapter(tmp_path / "run"))
    assert metric_steps(tmp_path / "run") == metric_steps(whole)


def test_a_moved_run_resumes(tiny_model_dir, setup, tmp_path):
    data, whole = setup
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", **SETTINGS))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, log=quiet, crash_after_step=3)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = build_config(tiny_config(tiny_model_dir, data, tmp_path / "moved", **SETTINGS))
    run_training(moved, resume=True, log=quiet)
    assert_same(adapter(whole), adapter(tmp_path / "moved"))


def test_after_an_audit_refusal_a_fresh_start_and_resume_agree(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    held_out = tmp_path / "eval.jsonl"
    held_out.write_text("".join(data.read_text().splitlines(keepends=True)[:4]), encoding="utf-8")  # leaked rows
    raw = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=1)
    raw["data"]["eval"] = [{"path": str(held_out)}]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(cfg)]) == 2
    assert "leakage" in capsys.readouterr().err and (tmp_path / "run" / "audit.json").is_file()
    # --resume has nothing to continue: it starts the run, and the audit refuses it again for the same reason.
    assert main(["train", str(cfg), "--resume"]) == 2
    captured = capsys.readouterr()
    assert "starting it from the beginning" in captured.out and "leakage" in captured.err
    assert "--resume" not in captured.err
    # A fresh start needs no overwrite: the refused run never started.
    assert main(["train", str(cfg), "audit.allow=[leakage]"]) == 0
    assert (tmp_path / "run" / "final").is_dir()


def test_overwrite_refused_by_the_audit_keeps_the_old_run(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    cfg = tmp_path / "cfg.yaml"
    raw = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=1)
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(cfg)]) == 0
    before = (tmp_path / "run" / "final" / "adapter_model.safetensors").read_bytes()
    held_out = tmp_path / "eval.jsonl"
    held_out.write_text("".join(data.read_text().splitlines(keepends=True)[:4]), encoding="utf-8")
    assert main(["train", str(cfg), "output.overwrite=true", f"data.eval=[{{path: {held_out}}}]"]) == 2
    assert "left as it was" in capsys.readouterr().err
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").read_bytes() == before


# --- checkpoints: re-saving a step that exists -------------------------------------------------------------------

RESAVE = """
import sys, torch
from pathlib import Path
from tunesmith.training.checkpoint import Position, save_checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(4, 4)
opt = torch.optim.AdamW(model.parameters())
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
folder = Path(sys.argv[1])
save_checkpoint(folder, model, opt, sched, Position(2, 0, 2, 16, 100, "f"), keep=3)
with torch.no_grad():
    model.weight.add_(1.0)
save_checkpoint(folder, model, opt, sched, Position(2, 0, 2, 16, 100, "f"), keep=3)
"""


@pytest.mark.parametrize("point", ["checkpoint:staged#2", "checkpoint:aside", "checkpoint:renamed#2"])
def test_a_kill_while_re_saving_a_step_leaves_a_complete_one(tmp_path, point):
    env = {**os.environ, ENV: f"{point}=SIGKILL"}
    done = subprocess.run([sys.executable, "-c", RESAVE, str(tmp_path)], env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    clean_staging(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["step-2"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2"]
    weights = load_file(tmp_path / "step-2" / "trainable.safetensors")["weight"]
    torch.manual_seed(0)
    first = torch.nn.Linear(4, 4).weight.detach()
    # Before the new copy is in place the old one is back; once it is, the new one stays.
    expected = first + 1.0 if point == "checkpoint:renamed#2" else first
    torch.testing.assert_close(weights, expected)


# --- the real CLI killed at every kind of point -----------------------------------------------------------------

# Named points (tunesmith/faults.py) and the hit that stops the run; see SETTINGS for what happens when.
POINTS = [
    "setup",
    "audit",
    "config",
    "manifest",
    "eval#1",  # the base model's eval
    "metrics#1",  # the base model's metrics line
    "metrics#3",  # step 2
    "checkpoint:weights#1",
    "checkpoint:optimizer#1",
    "checkpoint:staged#2",
    "checkpoint:renamed#2",
    "eval#2",  # the held-out eval at step 3
    "metrics#6",  # step 4
    "checkpoint:pruned#1",  # step-2 removed after step-6 was saved
    "final:staged",
    "final:renamed",
    "eval#3",  # the tuned model's eval
    "tuned",
    "metrics#9",  # the final record
    "card",
]


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["HF_HUB_OFFLINE"] = "1"
    if fault:
        env[ENV] = fault
    return subprocess.run([*TUNESMITH, *args], capture_output=True, text=True, env=env, timeout=600)


def _kill_and_resume(tiny_model_dir, setup, tmp_path: Path, fault: str) -> None:
    data, whole = setup
    cfg = config_file(tiny_model_dir, data, tmp_path)
    stopped = _cli(["train", str(cfg)], fault)
    expected_rc = 130 if fault.endswith("SIGINT") else -signal.SIGKILL
    assert stopped.returncode == expected_rc, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    resumed = _cli(["train", str(cfg), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(adapter(whole), adapter(tmp_path / "run"))
    assert metric_steps(tmp_path / "run") == metric_steps(whole)
    no_leftovers(tmp_path / "run")


@pytest.mark.slow  # test_every_interruption_resumes_exactly covers it
def test_kill_9_inside_a_checkpoint_save_resumes_exactly(tiny_model_dir, setup, tmp_path):
    _kill_and_resume(tiny_model_dir, setup, tmp_path, "checkpoint:optimizer#2=SIGKILL")


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("point", POINTS)
def test_every_interruption_resumes_exactly(tiny_model_dir, setup, tmp_path, point, signal_name):
    _kill_and_resume(tiny_model_dir, setup, tmp_path, f"{point}={signal_name}")
