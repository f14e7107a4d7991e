"""`tunesmith sweep` on the tiny Llama: the space is checked before any trial, trials see a validation split and
never the test split, pruning stops trials, failures are recorded with their reason, a stopped sweep continues, and
two worker processes share one study.

pytest tests/unit/test_sweep.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.data.templates import Renderer
from tunesmith.models.loading import load_tokenizer
from tunesmith.recipes.sweep import Sweep, SweepError, lora_space, objective_of, run_sweep
from tunesmith.recipes.sweep_space import apply_params, config_params
from tunesmith.training.prepare import prepare_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("sweep") / "train.jsonl", n=48)


def _settings(tiny_model_dir, data, out, space=None, **sweep):
    settings = tiny_config(tiny_model_dir, data, out, max_steps=6)
    settings["sweep"] = {"space": space or {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}}, **sweep}
    return settings


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lrr": {"choices": [0.1]}}, r"sweep.space.train.lrr: 0.1 is refused: train.lrr: unknown key"),
        ({"output.dir": {"choices": ["x"]}}, r"sweep.space.output.dir: the sweep sets this key"),
        ({"data.validation_fraction": {"choices": [0.2]}}, r"the sweep sets this key"),
        ({"train.batch_size": {"choices": [8, 6]}}, r"sweep.space.train.batch_size: 6 is refused: .*multiple"),
        ({"adapter.r": {"type": "int", "low": 0, "high": 8}}, r"sweep.space.adapter.r: 0 is refused"),
        ({"adapter.alpha/r": {"choices": [2, -1]}}, r"alpha/r values must be positive"),
    ],
    ids=["unknown-key", "reserved", "reserved-validation", "bad-choice", "bad-range-end", "bad-derived"],
)
def test_a_bad_space_is_refused_by_key_before_any_trial(tiny_model_dir, data, tmp_path, space, message):
    cfg = build_config(_settings(tiny_model_dir, data, tmp_path / "run", space))
    with pytest.raises(SweepError, match=message):
        run_sweep(cfg, tmp_path / "sweep", trials=2, log=lambda *_: None)
    assert not (tmp_path / "sweep").exists()


def test_objective_follows_the_task_and_refuses_what_cannot_be_scored(tiny_model_dir, data, tmp_path):
    plain = build_config(_settings(tiny_model_dir, data, tmp_path / "run"))
    assert objective_of(plain).names == ("loss",) and objective_of(plain).directions == ("minimize",)
    with pytest.raises(SweepError, match="no task to score"):
        objective_of(build_config(_settings(tiny_model_dir, data, tmp_path / "run", objective="task")))
    settings = _settings(tiny_model_dir, data, tmp_path / "run", objective="task+forgetting")
    settings["task"] = {"type": "qa"}
    two = objective_of(build_config(settings))
    assert two.names == ("exact_match", "forgetting") and two.directions == ("maximize", "minimize")
    settings["sweep"]["metric"] = "bleu"
    with pytest.raises(SweepError, match=r"sweep.metric 'bleu': a qa task reports exact_match, f1"):
        objective_of(build_config(settings))


def test_the_default_space_is_lora_aware_and_every_value_is_valid(tiny_model_dir, data, tmp_path):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=6)
    cfg = build_config(settings)
    space = lora_space(cfg)
    assert space["train.lr"].log and space["train.lr"].low <= 2e-4 <= space["train.lr"].high
    assert {"adapter.r", "adapter.alpha/r", "adapter.dora", "adapter.init", "adapter.lora_plus_ratio"} <= set(space)
    assert space["train.max_steps"].low == 3 and space["train.max_steps"].high == 12
    assert all(b % cfg.train.micro_batch_size == 0 for b in space["train.batch_size"].choices)
    Sweep.plan(cfg, tmp_path / "sweep", 4, 1, None)  # check_space accepts every default value
    full = lora_space(build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", method="full")))
    assert "adapter.r" not in full and full["train.lr"].high < space["train.lr"].high
    # With LoRA+ the drawn rate is B's, the fastest any weight gets: A trains at drawn / ratio.
    drawn = {"train.lr": 1.6e-3, "adapter.r": 8, "adapter.alpha/r": 2}
    assert apply_params(settings, {**drawn, "adapter.lora_plus_ratio": 16.0})["train"]["lr"] == pytest.approx(1e-4)
    plain = apply_params(settings, {**drawn, "adapter.lora_plus_ratio": None})
    assert plain["train"]["lr"] == 1.6e-3 and plain["adapter"]["alpha"] == 16.0
    # The config as written, in the space's terms: lr 5e-3 is outside the default range and is left to the sampler.
    start = config_params(cfg, space)
    assert "train.lr" not in start and start["adapter.r"] == 4 and start["adapter.alpha/r"] == 2
    assert start["train.max_steps"] == 6 and start["train.batch_size"] == 8 and start["adapter.lora_plus_ratio"] is None
    assert apply_params(settings, start)["adapter"]["alpha"] == settings["adapter"]["alpha"]
    # The drawn alpha/r is the adapter's scale under either rule: rsLoRA divides alpha by sqrt(r), not r.
    wide = {"train.lr": 1e-3, "adapter.r": 32, "adapter.alpha/r": 4}
    assert apply_params(settings, {**wide, "adapter.rslora": False})["adapter"]["alpha"] == 128.0
    assert apply_params(settings, {**wide, "adapter.rslora": True})["adapter"]["alpha"] == pytest.approx(4 * 32**0.5)


def test_trials_read_a_validation_split_never_the_test_split(tiny_model_dir, data, tmp_path):
    """With data.validation_fraction the held-out rows come from the training rows that remain once the test split
    (here: the config's own held-out share of train) is set aside, and that test split is read by nobody."""
    renderer = Renderer(load_tokenizer(tiny_model_dir), "auto", 128)
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run")
    settings["data"]["eval_fraction"] = 0.25
    plain = prepare_data(build_config(settings), renderer)
    settings["data"]["validation_fraction"] = 0.2
    trial = prepare_data(build_config(settings), renderer)
    test_lines = {r.line for r in plain.eval}
    # 25% of 48, then 20% of the remaining 36 (a repeated question keeps its copies on one side, so a few more)
    assert len(test_lines) == 12 and 7 <= len(trial.eval) <= 9
    assert not test_lines & {r.line for r in trial.eval}
    assert not test_lines & {r.line for r in trial.train}
    assert len(trial.train) + len(trial.eval) + len(test_lines) == 48 and trial.rows == 48


def test_a_sweep_prunes_tests_the_winner_once_and_continues_after_a_stop(tiny_model_dir, data, tmp_path):
    space = {"train.lr": {"low": 1e-4, "high": 5e-2, "log": True}, "adapter.r": {"choices": [2, 4]}}
    settings = _settings(tiny_model_dir, data, tmp_path / "run", space, evaluations=2, sampler="random")
    settings["data"]["eval_fraction"] = 0.2
    cfg = build_config(settings)
    lines: list[str] = []
    first = run_sweep(cfg, tmp_path / "sweep", trials=3, log=lines.append)
    assert first["trials_run"] == 3 and first["finished"] + first["pruned"] == 3
    assert first["trials"][0]["params"] == {"train.lr": 5e-3, "adapter.r": 4}  # trial 0 is the config as written
    assert any(line.startswith("[sweep 3/3]") for line in lines)
    kept = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / "trials").glob("*/final")}

    summary = run_sweep(cfg, tmp_path / "sweep", trials=7, log=lambda *_: None)  # the same study, four more
    assert summary["trials_run"] == 7 and [t["number"] for t in summary["trials"]] == list(range(7))
    assert summary["pruned"] >= 1, summary["trials"]  # median pruning on the held-out loss stopped someone
    for t in summary["trials"]:
        saved = yaml.safe_load((tmp_path / "sweep" / t["run_dir"] / "config.yaml").read_text())
        assert saved["data"]["validation_fraction"] == 0.1 and saved["train"]["eval_every"] == 2
    after = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / "trials").glob("*/final")}
    assert kept and all(after[name] == mtime for name, mtime in kept.items())  # finished trials were not run again
    logs = [(tmp_path / "sweep" / "trials" / f"{n:04d}.log").read_text() for n in range(7)]
    assert "base model:" in logs[0] and not any("base model:" in log for log in logs[1:])  # evaluated once, shared
    bases = {(tmp_path / "sweep" / "trials" / f"{n:04d}" / "eval" / "base.json").read_text() for n in range(7)}
    assert len(bases) == 1
    finished = [t for t in summary["trials"] if t["state"] == "complete"]
    best = min(finished, key=lambda t: t["values"][0])
    assert summary["best"]["trial"] == best["number"]

    winner = tmp_path / "sweep" / "winner"
    saved = yaml.safe_load((winner / "config.yaml").read_text())
    assert saved["data"]["validation_fraction"] is None and saved["train"]["lr"] == best["params"]["train.lr"]
    tuned = json.loads((winner / "eval" / "tuned.json").read_text())
    assert summary["test"]["metrics"]["loss"] == tuned["metrics"]["loss"] != best["values"][0]
    assert tuned["metrics"]["rows"] == 10  # the test split: 20% of 48, not a validation split
    assert "sweep" not in yaml.safe_load(summary["best"]["config"])
    page = (tmp_path / "sweep" / "sweep.html").read_text()
    assert "Optimisation history" in page and "<svg" in page and "winner/report.html" in page


def test_trials_of_any_length_and_batch_report_at_the_same_amounts_of_training(tiny_model_dir, data, tmp_path):
    """The pruner compares trials at equal numbers of training examples: every trial evaluates after each 16 examples
    (the config's 6 steps of 8 in three parts), whatever its batch size and steps, and reports the count of those."""
    import optuna

    space = {"train.batch_size": {"choices": [4, 16]}, "train.max_steps": {"choices": [4, 12]}}
    settings = _settings(tiny_model_dir, data, tmp_path / "run", space, evaluations=2, sampler="random", pruner="none")
    run_sweep(build_config(settings), tmp_path / "sweep", trials=4, log=lambda *_: None)
    study = optuna.load_study(study_name="tunesmith-sweep", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    seen = set()
    for trial in study.trials:
        batch, steps = trial.params["train.batch_size"], trial.params["train.max_steps"]
        saved = yaml.safe_load((tmp_path / "sweep" / trial.user_attrs["run_dir"] / "config.yaml").read_text())
        assert saved["train"]["eval_every"] * batch == 16
        evaluated = [s for s in range(1, steps) if s % saved["train"]["eval_every"] == 0]  # not the last step
        assert sorted(trial.intermediate_values) == [s * batch // 16 for s in evaluated], (batch, steps)
        seen.add(batch)
    assert seen == {4, 16}  # both batch sizes were tried, and reported on one scale


def test_a_failing_trial_is_recorded_with_its_reason(tiny_model_dir, data, tmp_path):
    """Every trial diverges (lr 1e30): each is recorded as failed with why, and the sweep says there is no winner."""
    space = {"train.lr": {"choices": [1.0e30]}, "adapter.r": {"choices": [2, 4]}}
    cfg = build_config(_settings(tiny_model_dir, data, tmp_path / "run", space))
    lines: list[str] = []
    with pytest.raises(SweepError, match=r"no trial finished, so there is no winner.*DivergedError: .*loss"):
        run_sweep(cfg, tmp_path / "sweep", trials=2, log=lines.append)
    assert sum("failed: DivergedError" in line for line in lines) == 2


def test_a_sweep_whose_trials_all_fail_the_same_way_stops_early(tiny_model_dir, data, tmp_path):
    """A problem of the data or config (here: every row is longer than data.max_length) fails every trial alike: the
    sweep stops after three such trials instead of spending its whole budget on them."""
    settings = _settings(tiny_model_dir, data, tmp_path / "run")
    settings["data"]["max_length"] = 8
    lines: list[str] = []
    with pytest.raises(SweepError, match=r"stopped after 3 trials failed the same way.*DataRefused"):
        run_sweep(build_config(settings), tmp_path / "sweep", trials=20, log=lines.append)
    assert sum("failed: DataRefused" in line for line in lines) == 3


def test_two_worker_processes_share_one_study(tiny_model_dir, data, tmp_path):
    """No trial lost or run twice: every trial number once, each with its own run folder, one best."""
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(_settings(tiny_model_dir, data, tmp_path / "run")), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "160"}
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "sweep", str(config), "--trials", "4", "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "run-sweep" / "sweep.json").read_text())
    numbers = [t["number"] for t in summary["trials"]]
    assert numbers == list(range(len(numbers))) and 4 <= len(numbers) <= 5  # a worker may start one before the stop
    assert all(t["state"] in ("complete", "pruned") for t in summary["trials"])
    folders = [t["run_dir"] for t in summary["trials"]]
    assert len(set(folders)) == len(folders) and all((tmp_path / "run-sweep" / f).is_dir() for f in folders)
    assert "[worker 1]" in done.stdout
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    assert summary["best"]["trial"] == min(complete, key=lambda t: t["values"][0])["number"]


def test_a_study_database_that_cannot_be_used_is_one_error(tiny_model_dir, data, tmp_path):
    cfg = build_config(_settings(tiny_model_dir, data, tmp_path / "run"))
    with pytest.raises(SweepError, match=r"study storage sqlite:////nonexistent/x.db: cannot use it: .*unable to open"):
        run_sweep(cfg, tmp_path / "sweep", trials=2, storage="sqlite:////nonexistent/x.db", log=lambda *_: None)
    run_sweep(cfg, tmp_path / "loss", trials=1, log=lambda *_: None)
    settings = _settings(tiny_model_dir, data, tmp_path / "run", objective="task")
    settings["task"] = {"type": "qa"}
    with pytest.raises(SweepError, match="holds a study of loss, not exact_match"):  # the same study, another objective
        run_sweep(build_config(settings), tmp_path / "loss", trials=2, log=lambda *_: None)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_stopped_by_ctrl_c_runs_again_and_does_not_count(tiny_model_dir, data, tmp_path):
    """Ctrl-C marks the running trial failed with no reason of its own: the next sweep queues it again with the same
    parameters, and it is not counted against --trials."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    cfg = build_config(_settings(tiny_model_dir, data, tmp_path / "run"))
    sweep = Sweep.plan(cfg, tmp_path / "sweep", trials=2, workers=1, storage=None)
    (tmp_path / "sweep").mkdir()
    study = sweep.open_study()
    stopped = study.ask({"train.lr": FloatDistribution(1e-3, 3e-2, log=True)})
    study.tell(stopped, state=TrialState.FAIL)
    lines: list[str] = []
    summary = run_sweep(cfg, tmp_path / "sweep", trials=2, log=lines.append)
    assert "sweep: trial 0 was stopped; it runs again with its parameters" in lines
    trials = {t["number"]: t for t in summary["trials"]}
    assert trials[0]["state"] == "fail" and trials[1]["retry_of"] == 0
    assert trials[1]["params"]["train.lr"] == stopped.params["train.lr"]
    assert summary["trials_run"] == 3 and summary["finished"] + summary["pruned"] == 2  # two counted, plus the stop
