"""`train.report_to: [tensorboard, mlflow]`: both trackers get what metrics.jsonl gets, the config as parameters and
the report and card as artifacts, locally; a killed and resumed run leaves each step once in TensorBoard and one
MLflow run; a tracker that is not installed is refused before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_runs import tiny_config, write_chat_data

from tunesmith.cli import main
from tunesmith.config import build_config
from tunesmith.recipes.train import run_training
from tunesmith.training import trackers
from tunesmith.training.trackers import scalars

pytest.importorskip("tensorboard", reason="tunesmith[trackers] is not installed")
pytest.importorskip("mlflow", reason="tunesmith[trackers] is not installed")
quiet = {"log": lambda *_: None}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _mlflow(run: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run.parent / 'mlflow.db'}")
    return client, client.get_run((run / "mlflow_run_id").read_text().strip())


def _config(tiny_model_dir, root: Path, name: str, **train) -> dict:
    cfg = tiny_config(tiny_model_dir, write_chat_data(root / "data.jsonl", n=24), root / "runs" / name, **train)
    cfg["train"]["report_to"] = ["tensorboard", "mlflow"]
    cfg["train"]["eval_every"] = 2
    return cfg


def test_both_trackers_mirror_metrics_jsonl_and_keep_the_report(tiny_model_dir, tmp_path):
    cfg = _config(tiny_model_dir, tmp_path, "tracked", max_steps=4)
    run_training(build_config(cfg), **quiet)
    run = tmp_path / "runs" / "tracked"
    records = _records(run)
    train = [(r["step"], r["loss"]) for r in records if "split" not in r]
    assert len(train) == 4
    board = _tensorboard(run)
    assert [(s, pytest.approx(v)) for s, v in board["train/loss"]] == train
    evals = [(r["step"], r["loss"]) for r in records if r.get("split") == "eval" and not r.get("final")]
    assert [(s, pytest.approx(v)) for s, v in board["eval/loss"]] == evals  # the base's at 0, then every 2 steps
    assert "final/loss" in board
    client, mlrun = _mlflow(run)
    history = client.get_metric_history(mlrun.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(v)) for s, v in train]
    assert mlrun.data.params["train.lr"] == str(cfg["train"]["lr"]) and mlrun.data.params["adapter.r"] == "4"
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "tracked"
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"report.html", "MODEL_CARD.md"} <= artifacts
    assert (tmp_path / "runs" / "mlflow-artifacts").is_dir()  # local: nothing left the machine


def test_a_resumed_run_is_one_mlflow_run_and_each_step_once(tiny_model_dir, tmp_path):
    cfg = _config(tiny_model_dir, tmp_path, "resumed", max_steps=6, save_every=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(build_config(cfg), crash_after_step=3, **quiet)
    run = tmp_path / "runs" / "resumed"
    first_id = (run / "mlflow_run_id").read_text()
    run_training(build_config(cfg), resume=True, **quiet)
    assert (run / "mlflow_run_id").read_text() == first_id
    train = [(r["step"], r["loss"]) for r in _records(run) if "split" not in r]
    steps = [s for s, _ in _tensorboard(run)["train/loss"]]
    assert steps == [1, 2, 3, 4, 5, 6] == [s for s, _ in train]  # step 3, redone after the resume, once
    client, mlrun = _mlflow(run)
    assert mlrun.info.status == "FINISHED"
    assert len(client.search_runs([mlrun.info.experiment_id])) == 1


def test_a_tracker_that_is_not_installed_is_refused_before_training(tiny_model_dir, tmp_path, capsys, monkeypatch):
    cfg = _config(tiny_model_dir, tmp_path, "untracked", max_steps=2)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(trackers, "_installed", lambda package: package != "mlflow")  # as if it were not installed
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.report_to: mlflow is not installed" in err[0] and "tunesmith[trackers]" in err[0]
    assert not (tmp_path / "runs" / "untracked").exists()  # refused before the run folder was made


def test_scalars_flattens_a_record_and_leaves_out_what_is_not_a_number():
    record = {"step": 4, "split": "forgetting", "loss": 1.5, "families": {"chat": {"diff": 0.1, "worse": True}},
              "note": "x", "nan": float("nan")}  # fmt: skip
    assert scalars(record) == ("forgetting", 4, {"loss": 1.5, "families.chat.diff": 0.1})
