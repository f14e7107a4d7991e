"""Hyperparameter search with Optuna: every trial an ordinary run, the study in a database, the winner tested once.

    tunesmith sweep examples/sst2-head.yaml --trials 12 [--timeout 60] [--workers 2] [--storage URL] [--out DIR]

- The `sweep:` section (config_sweep.py) names the space (default: sweep_space.lora_space), the objective and the
  pruner; the space is checked whole against the config before any trial starts.
- Trials are compared on a validation split of the training rows (data.validation_fraction); the test split (data.eval,
  or the share of train held out without it) is scored once, by the winner, in DIR/winner, against the base with
  paired intervals. What the search selected on is never the number it reports as the result.
- The study lives in DIR/study.db (or --storage, a database URL several machines share). A killed sweep continues:
  finished trials count, a trial that was running is failed by the heartbeat and retried once with its parameters.
- Pruning judges the held-out loss at each of `sweep.evaluations` evaluations of a trial (median or successive
  halving); a trial that fails (out of memory, diverged, a refused setting) is recorded with its reason and the
  search goes on.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Config, ForgettingBudget, build_config
from tunesmith.config_sweep import ParamSpec
from tunesmith.config_yaml import ConfigError
from tunesmith.errors import TunesmithError
from tunesmith.eval.general import budget_share
from tunesmith.eval.tasks import HEADLINE
from tunesmith.recipes.sweep_space import (
    SweepError,
    apply_params,
    check_space,
    config_params,
    decode,
    lora_space,
    sample,
)
from tunesmith.rundir import config_changes, read_json, write_json, write_text

STUDY = "tunesmith-sweep"


@dataclass(frozen=True)
class Objective:
    names: tuple[str, ...]  # what each value is: a task metric, "loss" or "forgetting"
    directions: tuple[str, ...]  # maximize | minimize, per value
    metric: str | None  # the task metric, when one is optimised

    @property
    def multi(self) -> bool:
        return len(self.names) > 1


def eval_unit(cfg: Config) -> int | None:
    """Training examples between two of a trial's evaluations: the config's own length of training (max_steps times
    the batch) in `sweep.evaluations + 1` parts; a config counted in epochs keeps its own train.eval_every (its step
    count is known only once its data is read), and without one its trials are not evaluated during training."""
    train = cfg.train
    if train.max_steps:
        return max(1, math.ceil(train.max_steps * train.batch_size / (cfg.sweep.evaluations + 1)))
    return train.eval_every * train.batch_size or None


def objective_of(cfg: Config) -> Objective:
    kind = cfg.sweep.objective
    if kind == "auto":
        kind = "task" if cfg.task.type != "none" else "loss"
    if kind == "loss":
        return Objective(("loss",), ("minimize",), None)
    if cfg.task.type == "none":
        raise SweepError(f"sweep.objective {kind}: the config has no task to score (set task.type, or objective: loss)")
    headline = HEADLINE[cfg.task.type]
    metric = cfg.sweep.metric or headline[0]
    if metric not in headline:
        raise SweepError(f"sweep.metric {metric!r}: a {cfg.task.type} task reports {', '.join(headline)}")
    if kind == "task":
        return Objective((metric,), ("maximize",), metric)
    if cfg.method.type != "sft":
        raise SweepError(
            "sweep.objective task+forgetting: forgetting is measured for causal-LM runs (method.type: sft)"
        )
    return Objective((metric, "forgetting"), ("maximize", "minimize"), metric)


@dataclass
class Sweep:
    """What every worker process of one sweep shares: the config, the space, the objective and where things go."""

    cfg: Config
    raw: dict  # the config as a plain dict, every default explicit
    space: dict[str, ParamSpec]
    objective: Objective
    folder: Path
    storage: str
    trials: int
    workers: int

    @property
    def eval_unit(self) -> int | None:
        """Training examples between two evaluations, the same for every trial (None: none)."""
        return eval_unit(self.cfg)

    @classmethod
    def plan(cls, cfg: Config, folder: Path, trials: int, workers: int, storage: str | None) -> Sweep:
        raw = cfg.model_dump(mode="json")
        space = cfg.sweep.space if cfg.sweep.space is not None else lora_space(cfg)
        check_space(raw, space)
        objective = objective_of(cfg)
        url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
        return cls(cfg, raw, space, objective, folder, url, trials, workers)

    def trial_config(self, params: dict[str, Any], folder: Path) -> Config:
        raw = apply_params(self.raw, params)
        train = raw["train"]
        # Every trial evaluates after the same numbers of training examples, whatever its steps and batch size, so
        # that the pruner compares trials at equal amounts of training (Optuna compares values reported at one step).
        train["eval_every"] = max(1, round(self.eval_unit / train["batch_size"])) if self.eval_unit else 0
        train["threads"] = max(1, (train.get("threads") or os.cpu_count() or 1) // self.workers)
        raw["data"]["validation_fraction"] = self.cfg.sweep.validation_fraction
        raw["eval"]["samples"] = 0  # side-by-side answers are for people reading the winner's report
        raw["task"]["baselines"] = []  # trials are compared with each other; the winner's test run scores them all
        raw["eval"]["general"] = "forgetting" in self.objective.names
        if not raw["eval"]["general"]:
            raw["eval"]["forgetting_budget"] = None  # checked on the probes, which trials skip unless optimised
        raw["output"] = {"dir": str(folder), "overwrite": True}
        return build_config(raw)

    def shared_base(self, cfg: Config) -> dict | None:
        """The base's evaluation from an earlier trial, when it evaluated the base as `cfg` will: the space changes
        only training and adapter keys (not the seed, which draws few-shot rows and a head's start), and the earlier
        trial's config equals `cfg` outside those (a sweep folder reused with another config shares nothing). Any
        worker's trial will do."""
        if not all(key.startswith(("train.", "adapter.")) and key != "train.seed" for key in self.space):
            return None
        for path in sorted((self.folder / "trials").glob("*/eval/base.json")):
            try:
                saved = yaml.safe_load((path.parent.parent / "config.yaml").read_text(encoding="utf-8"))
                changed = config_changes(saved, cfg)
                if any(not k.startswith(("train.", "adapter.")) or k == "train.seed" for k in changed):
                    continue
                return read_json(path)
            except (OSError, ValueError, yaml.YAMLError):
                continue  # another worker is writing it
        return None

    def winner_config(self, params: dict[str, Any]) -> Config:
        raw = apply_params(self.raw, params)
        raw["output"] = {"dir": str(self.folder / "winner"), "overwrite": True}
        return build_config(raw)

    def study(self, seed_offset: int = 0):
        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # The heartbeat and its retry are marked experimental; the warning says so on every process start.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        kwargs: dict[str, Any] = {}
        if self.storage.startswith("sqlite:"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # workers wait for each other's writes
        storage = RDBStorage(
            self.storage,
            # A trial whose heartbeat is older than the grace period is taken for a killed worker's, failed and retried.
            # Under load a live worker's heartbeat can wait behind another's SQLite write (up to the 120 s timeout
            # above), so the grace period leaves that much room: a live trial is never run twice.
            heartbeat_interval=15,
            grace_period=180,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            **kwargs,
        )
        seed = self.cfg.sweep.seed + seed_offset  # workers with one seed would draw the same first trials
        sampler = (
            optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=min(5, max(2, self.trials // 3)))
            if self.cfg.sweep.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed)
        )
        pruner = {
            "median": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            "halving": optuna.pruners.SuccessiveHalvingPruner(),
            "none": optuna.pruners.NopPruner(),
        }[self.cfg.sweep.pruner]
        study = optuna.create_study(
            study_name=STUDY,
            storage=storage,
            load_if_exists=True,
            directions=list(self.objective.directions),
            sampler=sampler,
            pruner=pruner,
        )
        names = study.user_attrs.get("objective")
        if names is None:
            study.set_user_attr("objective", list(self.objective.names))
        elif names != list(self.objective.names):
            raise ValueError(
                f"it holds a study of {' and '.join(names)}, not {' and '.join(self.objective.names)}; "
                "give the sweep another --out or --storage"
            )
        return study

    def open_study(self, seed_offset: int = 0):
        """study(), with a database that cannot be opened (a bad URL, a missing folder, no permission, a study of
        other objectives) said in one line."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.study(seed_offset)
        except (SQLAlchemyError, ImportError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            reason = reason.split(" (Background on this error")[0]
            raise SweepError(f"study storage {self.storage}: cannot use it: {reason}") from None


def best_config_yaml(raw: dict, params: dict[str, Any]) -> str:
    """The config as the user wrote it plus the winning values, without the sweep section: a run config to copy."""
    best = apply_params(raw, params)
    best.pop("sweep", None)
    return yaml.safe_dump(best, sort_keys=False)


def sweep_folder(cfg: Config) -> Path:
    """Where a sweep writes by default: beside the config's run folder."""
    return Path(str(Path(cfg.output.dir)) + "-sweep")


def _interrupted(trial) -> bool:
    """A trial that failed because its process was stopped (Ctrl-C, kill -9), not for a reason of its own."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "reason" not in trial.user_attrs


def _retry_of(trial) -> int | None:
    return trial.user_attrs.get("retry_of", trial.system_attrs.get("failed_trial"))


def counted(study) -> int:
    """Trials that used up the budget: finished, pruned or failed for a reason of their own. A trial whose process
    was stopped does not count: it is run again (requeue_interrupted, or Optuna's heartbeat retry)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in done and not _interrupted(t))


SAME_FAILURES = 3  # trials that failed the same way, with none finished, before a sweep stops


def hopeless(study) -> bool:
    """No trial has finished and the first SAME_FAILURES failed for the same reason: a problem of the data or the
    config, not of the values tried (a row longer than data.max_length fails every trial), so more trials would
    only repeat it."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return False
    reasons = [t.user_attrs.get("reason") for t in trials if t.state == TrialState.FAIL and not _interrupted(t)]
    return len(reasons) >= SAME_FAILURES and len(set(reasons[:SAME_FAILURES])) == 1


def requeue_interrupted(study, log: Callable[[str], object]) -> None:
    """Queue again, with their parameters, the trials a stopped sweep left failed without a reason of their own
    (Ctrl-C marks the running trial failed; the heartbeat retries a killed one itself). Done once, by the first
    process, before any worker starts."""
    trials = study.get_trials(deepcopy=False)
    retried = {_retry_of(t) for t in trials} - {None}
    for trial in trials:
        if _interrupted(trial) and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            log(f"sweep: trial {trial.number} was stopped; it runs again with its parameters")


def _trial_values(objective: Objective, tuned: dict, cfg: Config) -> list[float]:
    limits = cfg.eval.forgetting_budget or ForgettingBudget()
    budget = (limits.max_drop, limits.max_nll_increase)
    values = []
    for name in objective.names:
        if name == "loss":
            values.append(float(tuned["metrics"]["loss"]))
        elif name == "forgetting":
            values.append(budget_share(tuned["forgetting"], *budget))  # the worst family's share of the budget
        else:
            values.append(float(tuned["task"]["metrics"][name]))
    return values


CAUGHT: tuple[type[BaseException], ...] = (TunesmithError, MemoryError, RuntimeError, ValueError, OSError)


def run_trial(sweep: Sweep, trial, log: Callable[[str], object]) -> float | list[float]:
    """One trial: an ordinary run in DIR/trials/NNNN, pruned on its held-out loss, its values read from its eval."""
    import optuna
    import torch

    from tunesmith.recipes.train import run_training

    params = sample(trial, sweep.space)
    folder = sweep.folder / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(folder.relative_to(sweep.folder)))
    started = time.perf_counter()
    try:
        cfg = sweep.trial_config(params, folder)
    except ConfigError as err:
        trial.set_user_attr("reason", str(err).replace("\n", " "))
        raise
    sign = 1.0 if sweep.objective.directions[0] == "minimize" else -1.0

    def report(step: int, metrics: dict[str, float]) -> None:
        if sweep.objective.multi or not sweep.eval_unit:
            return  # Optuna prunes single-objective studies only
        # Reported at the number of evaluation units trained (the same examples for every trial), not the step.
        # The held-out loss is signed to the study's direction.
        at = max(1, round(step * cfg.train.batch_size / sweep.eval_unit))
        trial.report(sign * float(metrics["loss"]), at)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", step)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            raise optuna.TrialPruned(f"held-out loss {metrics['loss']:.4f} at step {step}")

    trial_log = _file_log(folder)
    try:
        result = run_training(cfg, log=trial_log, on_eval=report, known_base=sweep.shared_base(cfg))
    except optuna.TrialPruned:
        raise
    except (*CAUGHT, torch.OutOfMemoryError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        trial.set_user_attr("reason", f"{type(err).__name__}: {reason}"[:500])
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        raise
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
    trial.set_user_attr("train_seconds", result.tuned.get("train_seconds"))
    values = _trial_values(sweep.objective, result.tuned, cfg)
    trial.set_user_attr("loss", float(result.tuned["metrics"]["loss"]))
    return values if sweep.objective.multi else values[0]


def _file_log(folder: Path) -> Callable[[str], None]:
    """A trial's own messages go to trials/NNNN.log beside its folder, not to the terminal the progress lines use."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f"{folder.name}.log"

    def log(message: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{message}\n")

    return log


def work(sweep: Sweep, deadline: float | None, worker: int, log: Callable[[str], object]) -> None:
    """One worker: take trials from the shared study until the budget of trials (or time) is spent."""
    study = sweep.open_study(seed_offset=worker)

    def budget_spent(study, _trial) -> None:
        if counted(study) >= sweep.trials or (deadline is not None and time.time() >= deadline):
            study.stop()
        progress_line(study, sweep, log)
        if hopeless(study):
            study.stop()

    if counted(study) >= sweep.trials or hopeless(study):
        log(f"nothing left to run: {counted(study)} of {sweep.trials} trials counted")
        return
    timeout = None if deadline is None else max(1.0, deadline - time.time())
    catch = (*CAUGHT, __import__("torch").OutOfMemoryError)
    study.optimize(
        lambda trial: run_trial(sweep, trial, log),
        n_trials=sweep.trials,
        timeout=timeout,
        callbacks=[budget_spent],
        catch=catch,
        gc_after_trial=True,
    )


def progress_line(study, sweep: Sweep, log: Callable[[str], object]) -> None:
    """running, pruned, finished, failed, and the best value so far (on the validation split)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
    last = max((t for t in trials if t.state.is_finished()), key=lambda t: t.datetime_complete, default=None)
    what = ""
    if last is not None:
        if last.state == TrialState.PRUNED:
            what = f"trial {last.number} pruned at step {last.user_attrs.get('pruned_at', '?')}"
        elif last.state == TrialState.FAIL:
            what = f"trial {last.number} failed: {last.user_attrs.get('reason', 'see its log')}"
        else:
            shown = ", ".join(f"{n} {v:.4f}" for n, v in zip(sweep.objective.names, last.values, strict=True))
            what = f"trial {last.number}: {shown}"
    best = ""
    if count[TrialState.COMPLETE] and not sweep.objective.multi:
        top = study.best_trial
        best = f" | best {sweep.objective.names[0]} {top.value:.4f} (trial {top.number})"
    elif count[TrialState.COMPLETE]:
        best = f" | Pareto front: {len(study.best_trials)} trial(s)"
    log(
        f"[sweep {counted(study)}/{sweep.trials}] {what}{best} | {count[TrialState.COMPLETE]} finished, "
        f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed, {count[TrialState.RUNNING]} running"
    )


def winner(study, objective: Objective):
    """The best trial on the validation split; in a Pareto search the front's best task metric (said so)."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        reasons = sorted({t.user_attrs.get("reason", t.state.name.lower()) for t in study.get_trials(deepcopy=False)})
        stopped = f" (stopped after {SAME_FAILURES} trials failed the same way)" if hopeless(study) else ""
        raise SweepError(f"no trial finished{stopped}, so there is no winner to test: " + "; ".join(reasons[:5]))
    if not objective.multi:
        return study.best_trial
    return max(study.best_trials, key=lambda t: t.values[0])


def run_sweep(
    cfg: Config,
    folder: Path,
    trials: int,
    timeout_minutes: float | None = None,
    workers: int = 1,
    storage: str | None = None,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    log: Callable[[str], object] = print,
) -> dict:
    """The whole sweep: workers share the study until the budget is spent; then the winner is trained again with the
    test split and reported (DIR/sweep.json, DIR/sweep.html)."""
    sweep = Sweep.plan(cfg, folder, trials, workers, storage)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + timeout_minutes * 60 if timeout_minutes else None
    write_text(
        folder / "space.yaml", yaml.safe_dump({k: v.model_dump(exclude_none=True) for k, v in sweep.space.items()})
    )
    log(
        f"sweep: {trials} trial(s), {workers} worker(s), objective {' and '.join(sweep.objective.names)} on a "
        f"validation split ({cfg.sweep.validation_fraction:.0%} of train), {len(sweep.space)} key(s) searched; "
        f"study in {sweep.storage}"
    )
    study = sweep.open_study()  # created (or found) once, before any worker: a bad URL stops here
    requeue_interrupted(study, log)
    if cfg.sweep.start_from_config and not study.trials:
        start = config_params(cfg, sweep.space)
        study.enqueue_trial(start)
        log(f"trial 0 trains the config as written ({len(start)} of {len(sweep.space)} searched keys at its values)")
    children = [_spawn_worker(config_path, overrides, folder, sweep, deadline, i) for i in range(1, workers)]
    try:
        work(sweep, deadline, 0, log)
    finally:
        for index, child in enumerate(children, start=1):
            if child.wait() != 0:  # its trials are in the study as it left them; say so rather than pass it by
                log(f"[worker {index}] stopped with exit code {child.returncode}; its trials are in the study")
    study = sweep.open_study()
    best = winner(study, sweep.objective)
    params = decode(sweep.space, best.params)
    log(f"winner: trial {best.number} on the validation split; training it again to score it once on the test split")
    from tunesmith.recipes.train import run_training

    tested = run_training(sweep.winner_config(params), log=log)
    summary = summarize(study, sweep, best, params, tested, time.time() - started)
    write_json(folder / "sweep.json", summary)
    from tunesmith.report.sweep_html import write_sweep_report

    write_sweep_report(folder, summary, study)
    return summary


def _spawn_worker(config_path, overrides, folder: Path, sweep: Sweep, deadline: float | None, index: int):
    """Another process on the same study (`tunesmith sweep --worker`), with the same config and overrides."""
    if config_path is None:
        raise SweepError("--workers above 1 needs the config file the other workers read")
    args = [sys.executable, "-m", "tunesmith.cli", "sweep", str(config_path), *(overrides or [])]
    args += ["--trials", str(sweep.trials), "--out", str(folder), "--storage", sweep.storage]
    args += ["--workers", str(sweep.workers), "--worker-index", str(index)]
    if deadline is not None:
        args += ["--deadline", str(deadline)]
    return subprocess.Popen(args)


def run_worker(cfg: Config, folder: Path, trials: int, workers: int, storage: str, index: int, deadline: float | None):
    """The body of an extra worker process (tunesmith sweep --worker-index N): trials only, no winner run."""
    sweep = Sweep.plan(cfg, folder, trials, workers, storage)
    work(sweep, deadline, index, lambda message: print(f"[worker {index}] {message}", flush=True))


def summarize(study, sweep: Sweep, best, params: dict, tested, seconds: float) -> dict:
    from optuna.trial import TrialState

    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "params": t.params,
                "values": t.values if t.state == TrialState.COMPLETE else None,  # a pruned one's is its last report
                "loss": t.user_attrs.get("loss"),
                "pruned_at": t.user_attrs.get("pruned_at"),
                "reason": t.user_attrs.get("reason"),
                "seconds": t.user_attrs.get("seconds"),
                "run_dir": t.user_attrs.get("run_dir"),
                "retry_of": _retry_of(t),
            }
        )
    states = [t["state"] for t in trials]
    test = {"run_dir": "winner", "metrics": tested.tuned["metrics"]}
    if "task" in tested.tuned:
        test["task"] = {k: v for k, v in tested.tuned["task"]["metrics"].items() if not isinstance(v, dict)}
        test["comparison"] = tested.tuned.get("comparison")
        test["comparison_base"] = tested.tuned.get("comparison_base")
        test["versus_trivial"] = tested.tuned.get("versus_trivial")
    if "forgetting" in tested.tuned:
        test["forgetting"] = tested.tuned["forgetting"]
    return {
        "objective": list(sweep.objective.names),
        "directions": list(sweep.objective.directions),
        "split": {
            "trials": f"validation: {sweep.cfg.sweep.validation_fraction:.0%} of the training rows",
            "winner": "test: the config's held-out rows, which no trial read",
        },
        "trials_run": len(trials),
        "finished": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("fail"),
        "seconds": round(seconds, 1),
        "best": {
            "trial": best.number,
            "validation": dict(zip(sweep.objective.names, best.values, strict=True)),
            "params": params,
            "config": best_config_yaml(sweep.raw, params),
        },
        "pareto": [t.number for t in study.best_trials] if sweep.objective.multi else None,
        "test": test,
        "trials": trials,
    }
