"""A fine-tuning run from one config: setup -> baseline -> fit -> finish, one function each.

    tunesmith train examples/gsm8k-lora.yaml [key.sub=value ...] [--resume]

`--resume` continues the same run from its last complete checkpoint and ends where an uninterrupted run would.
Training further on *new* data is a different operation: point `model.base` at the finished run.
What differs between training methods (how rows are encoded and batched, which model, the loss, how base and tuned
are evaluated, what final/ holds) is the method's (methods/*.py, chosen by the config's `method:`); this recipe
never asks which method it runs.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml
from torch import nn

from tunesmith.config import Config, upgrade_saved
from tunesmith.eval.general import forgetting, over_budget
from tunesmith.eval.variants import check_variants
from tunesmith.faults import fault
from tunesmith.methods import build_method
from tunesmith.methods.base import EvalContext, Method
from tunesmith.models.loading import count_parameters
from tunesmith.recipes import base_cache
from tunesmith.recipes.audit import preflight_audit
from tunesmith.recipes.setup import Loaded, build_loop, load, trainable_model
from tunesmith.report.model_card import model_card
from tunesmith.report.run_html import write_run_report
from tunesmith.rundir import (
    RunDir,
    RunDirError,
    build_manifest,
    check_output,
    claim,
    clear_run,
    config_changes,
    read_json,
    run_lock,
    write_errors,
    write_json,
    write_text,
)
from tunesmith.training import distributed
from tunesmith.training.checkpoint import Position, clean_staging, list_checkpoints, load_checkpoint, save_checkpoint
from tunesmith.training.distributed import SINGLE, World, barrier, full_state, is_sharded, main_only, quiet_unless
from tunesmith.training.loop import Loop, data_fingerprint, fit, total_steps
from tunesmith.training.prepare import describe_errors
from tunesmith.training.trackers import Trackers, check_installed


@dataclass
class RunResult:
    run_dir: Path
    base: dict  # eval/base.json
    tuned: dict  # eval/tuned.json
    steps: int
    params: dict = field(default_factory=dict)  # parameter counts (total, trainable), rows and steps of the run


def _protected(cfg: Config, config_path: Path | None) -> list[Path]:
    """Files the run reads, which replacing the output folder must never delete: config, data, id lists, model."""
    paths = [Path(spec.path) for spec in (*cfg.data.train, *cfg.data.eval)]
    paths += [Path(spec.ids.file) for spec in (*cfg.data.train, *cfg.data.eval) if spec.ids is not None]
    if Path(cfg.model.base).expanduser().exists():
        paths.append(Path(cfg.model.base).expanduser())
    return paths + ([config_path] if config_path is not None else [])


def _check_resume(cfg: Config, out: Path, state: str, log, world: World = SINGLE) -> bool:
    """Whether there is a started run to continue; a run whose identity was never completed starts afresh."""
    if state != "started":
        log(f"--resume: {out} holds no started run yet (no manifest.json); starting it from the beginning")
        return False
    saved = upgrade_saved(yaml.safe_load(RunDir(out).config_file.read_text(encoding="utf-8")))
    changed = config_changes(saved, cfg)
    if changed:
        raise RunDirError(
            f"--resume: the config differs from the run's saved config in {', '.join(changed)}; "
            "a resume must continue the same run (to train on from its result, set model.base to the run)"
        )
    if world.main:
        claim(out)  # a run written before the marker existed gets it now
    return True


def _recorded_precision(out: Path) -> dict | None:
    """The precision manifest.json says the run trained in; None for a manifest that predates the record."""
    try:
        recorded = read_json(RunDir(out).manifest_file).get("precision")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _start_run_dir(cfg: Config, out: Path, state: str, tokenizer, manifest: dict, log) -> None:
    """Called once config, model and data are validated: audit, then (only then) replace what a previous attempt
    wrote, and write the run's identity. config.yaml goes first and manifest.json last, so a stop in between
    leaves a run that has not started, which a fresh start or --resume simply starts again."""
    if state == "started":  # output.overwrite: a refused audit must leave the old run as it was
        report = preflight_audit(cfg, tokenizer, None, log)
        clear_run(out)
        claim(out)
        if report is not None:
            write_json(out / "audit.json", report.to_json())
    else:
        if state == "unstarted":
            log(f"{out}: replacing a run that never started (no manifest.json)")
            clear_run(out)
        claim(out)
        preflight_audit(cfg, tokenizer, out, log)  # writes audit.json; stops on what the config does not allow
    fault("audit")
    write_text(RunDir(out).config_file, cfg.to_yaml())
    fault("config")
    write_json(RunDir(out).manifest_file, manifest)
    fault("manifest")


def _save_final(
    method: Method, model: nn.Module, tokenizer, out: Path, stop_ids: list[int], state: dict | None = None
) -> None:
    """`final/` loads with transformers (+ peft for adapters) alone; written aside and renamed into place."""
    run_dir = RunDir(out)
    staging, aside, final = run_dir.final_staging, run_dir.final_aside, run_dir.final
    shutil.rmtree(staging, ignore_errors=True)
    try:
        initial = run_dir.initial_adapter if run_dir.initial_adapter.is_dir() else None
        method.write_final(model, tokenizer, staging, stop_ids, initial, state)
        fault("final:staged", staging)
        shutil.rmtree(aside, ignore_errors=True)
        if final.exists():  # the end of a resumed run is redone: the old final/ goes only once replaced
            final.rename(aside)
        staging.rename(final)
        fault("final:renamed", final)
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Run:
    """What setup builds and baseline, fit and finish share."""

    cfg: Config
    out: Path
    method: Method
    loaded: Loaded
    model: nn.Module  # the model the method trains (adapter and speed options applied)
    ctx: EvalContext
    loop: Loop
    position: Position  # where fit starts: step 0, or the last checkpoint of a resumed run
    resumed: bool
    params: dict = field(default_factory=dict)
    stopped: dict | None = None  # a forgetting-budget stop: where, why, and the checkpoint kept
    world: World = SINGLE  # the ranks torchrun started (training/distributed.py): rank 0 alone writes


def run_training(
    cfg: Config,
    resume: bool = False,
    log=print,
    crash_after_step: int | None = None,
    config_path: Path | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    known_base: dict | None = None,
) -> RunResult:
    """Run (or resume) the training job `cfg` describes. `crash_after_step` lets tests stop a run as a kill would;
    `config_path` is the file `cfg` came from, which replacing the output folder must never delete; `on_eval` is
    called with each train.eval_every evaluation (a search's progress report, which may stop the run by raising);
    `known_base` is the base's evaluation from a run with the same base, held-out rows and evaluation settings (a
    sweep's trials share one), used instead of evaluating the base again."""
    out = Path(cfg.output.dir)
    world = distributed.from_env()
    log = quiet_unless(world, log)
    check_installed(cfg)
    distributed.check_split(cfg.train.batch_size, cfg.train.micro_batch_size, world.size)
    distributed.start(world)
    state = check_output(out, resume, cfg.output.overwrite, _protected(cfg, config_path))
    barrier(world)  # every rank has seen the folder as it was before rank 0 writes to it
    with distributed.peers_watched(world), write_errors(out), main_only(world, run_lock(out)):
        run = setup(cfg, out, state, resume, log, crash_after_step, world)
        trackers = Trackers.open(cfg, out, run.position.step) if cfg.train.report_to and world.main else None
        if trackers is not None:
            run.loop.metrics.sinks.append(trackers.log)
        ok = False
        try:
            base_eval = baseline(run, known_base)
            if "perplexity" in base_eval["metrics"]:  # a per-token NLL, which a blown-up run leaves far behind
                run.loop.base_loss = base_eval["metrics"]["loss"]
            watch = forgetting_watch(run, base_eval, log)
            run.loop.on_eval = _both(watch, on_eval) if watch and on_eval else watch or on_eval
            try:
                position, seconds = fit_run(run)
            except BudgetExceeded as stop:
                position, seconds = keep_within_budget(run, stop, log)
            result = finish(run, base_eval, position, seconds)
            ok = True
            return result
        finally:
            if trackers is not None:
                trackers.finish(out, ok)


def _both(first: Callable[[int, dict], None], second: Callable[[int, dict], None]) -> Callable[[int, dict], None]:
    def call(step: int, metrics: dict) -> None:
        first(step, metrics)
        second(step, metrics)

    return call


class BudgetExceeded(Exception):
    """The forgetting budget was exceeded at an evaluation of a run configured to stop (eval.forgetting_budget)."""

    def __init__(self, step: int, over: list[str], started: float):
        super().__init__(f"step {step}: {'; '.join(over)}")
        self.step, self.over, self.started = step, over, started


def forgetting_watch(run: Run, base_eval: dict, log) -> Callable[[int, dict], None] | None:
    """At each train.eval_every evaluation: the forgetting probes on the model as it is, against the base, written to
    metrics.jsonl (split "forgetting"); a budget exceeded is said at once, and stops the run when configured."""
    budget = run.cfg.eval.forgetting_budget
    probe = getattr(run.method, "general", None)
    if budget is None or probe is None or "general" not in base_eval:
        return None
    started = time.perf_counter()

    def watch(step: int, metrics: dict) -> None:
        run.model.eval()
        try:
            result = forgetting(base_eval["general"], probe(run.model, run.ctx), run.cfg.train.seed)
        finally:
            run.model.train()
        over = over_budget(result, budget.max_drop, budget.max_nll_increase)
        families = {
            name: {k: f[k] for k in ("metric", "diff", "low", "high")} for name, f in result["families"].items()
        }
        record = {"step": step, "split": "forgetting", "loss": metrics["loss"], "families": families}
        run.loop.metrics.write(record | {"within_budget": not over})
        if over:
            log(f"step {step}: the forgetting budget is exceeded: {'; '.join(over)}")
            if budget.stop:
                raise BudgetExceeded(step, over, started)

    return watch


def keep_within_budget(run: Run, stop: BudgetExceeded, log) -> tuple[Position, float]:
    """After a budget stop: the kept checkpoint with the lowest held-out loss among the evaluations within budget,
    loaded into the model, which final/ is then written from."""
    barrier(run.world)  # rank 0 has written the evaluation that stopped the run
    records = [r for r in RunDir(run.out).metrics() if r.get("split") == "forgetting" and r.get("within_budget")]
    saved = {int(path.name.removeprefix("step-")): path for path in list_checkpoints(run.loop.checkpoints)}
    candidates = [r for r in records if r["step"] in saved and r["step"] < stop.step]
    if not candidates:
        raise RunDirError(
            f"the forgetting budget was exceeded at step {stop.step} ({'; '.join(stop.over)}) and no kept checkpoint "
            "is within it; lower train.lr or train.max_steps, evaluate earlier (train.eval_every), or raise "
            "eval.forgetting_budget"
        )
    best = min(candidates, key=lambda r: r["loss"])
    position = load_checkpoint(
        saved[best["step"]], run.loop.model, run.loop.optimizer, run.loop.scheduler, run.world, run.ctx.log
    )
    log(
        f"stopped at step {stop.step} (forgetting budget exceeded); final/ is step {best['step']}, the lowest "
        f"held-out loss ({best['loss']:.4f}) within the budget"
    )
    run.stopped = {"stopped_at": stop.step, "over": stop.over, "kept_step": best["step"], "kept_loss": best["loss"]}
    return position, time.perf_counter() - stop.started


def setup(
    cfg: Config, out: Path, state: str, resume: bool, log, crash_after_step: int | None, world: World = SINGLE
) -> Run:
    """Base, data (bad data fails here, before the run folder is touched), the run's identity, the model, the
    optimizer and the loop; a resumed run also its last checkpoint. Every rank of a data-parallel run builds the
    same; rank 0 alone writes the run folder."""
    recorded = None
    if resume:
        resume = _check_resume(cfg, out, state, log, world)
        if resume:
            recorded = _recorded_precision(out)
    method = build_method(cfg)
    loaded = load(cfg, method, log, world, recorded)
    prepared, tokenizer = loaded.prepared, loaded.base.tokenizer
    if prepared.errors:
        log(f"data.skip_invalid=true: skipped {len(prepared.errors)} bad row(s):\n{describe_errors(prepared.errors)}")
    check_variants(prepared.eval_examples[: cfg.task.max_rows], cfg.task.prompt_variants)
    if prepared.truncated:
        log(f"note: {prepared.truncated} row(s) were truncated to data.max_length={cfg.data.max_length} tokens")
    fault("setup")
    if not resume and world.main:  # the run's identity: rank 0 alone hashes the data and writes it
        manifest = build_manifest(cfg, loaded.base.resolved, prepared.files, tokenizer, sys.argv)
        # `auto` depends on the hardware, so the lineage says what it was here.
        autocast = loaded.autocast and str(loaded.autocast)
        manifest["precision"] = {"device": loaded.device.type, "weights": str(loaded.dtype), "autocast": autocast}
        if loaded.lineage is not None:
            manifest["parent"] = loaded.lineage  # the run this one continues from, and its config's sha256
        if world.distributed:
            manifest["distributed"] = {"ranks": world.size, "mode": cfg.train.distributed}
        _start_run_dir(cfg, out, state, tokenizer, manifest, log)
    barrier(world)  # an audit that refuses stops rank 0 here, and torchrun stops the others

    model = trainable_model(cfg, method, loaded, out if world.main else None)
    total_params, trainable = count_parameters(model)
    steps = total_steps(cfg.train, prepared.epoch_length())
    log(
        f"model {cfg.model.base}: {total_params:,} parameters, {trainable:,} trainable ({cfg.adapter.method}); "
        f"{len(prepared.train)} train rows, {len(prepared.eval)} eval rows; {steps} steps of "
        f"{cfg.train.batch_size} = {cfg.train.micro_batch_size} x {cfg.train.grad_accum} accumulation; "
        f"{loaded.device}, {loaded.dtype}"
        + (f" with {loaded.autocast} autocast" if loaded.autocast else "")
        + (f"; {world.size} ranks ({cfg.train.distributed})" if world.distributed else "")
    )
    ctx = EvalContext(cfg, loaded.renderer, prepared, loaded.device, log)
    evaluate = partial(method.evaluate, model, ctx)
    loop = build_loop(cfg, method, loaded, model, out, evaluate, log, crash_after_step, world)
    position = Position(0, 0, 0, 0, 0, data_fingerprint(prepared.train), world.size)
    if resume:
        position = _resume_position(loop, position.data_fingerprint, log, world)
    params = {"total": total_params, "trainable": trainable, "steps": steps}
    params |= {"train_rows": len(prepared.train), "eval_rows": len(prepared.eval)}
    resumed = resume and position.step > 0
    return Run(cfg, out, method, loaded, model, ctx, loop, position, resumed, params, world=world)


def _resume_position(loop: Loop, fingerprint: str, log, world: World = SINGLE) -> Position:
    """The last complete checkpoint, loaded into model and optimizer (step 0 if there is none yet), and the
    metrics log cut back to it."""
    position = Position(0, 0, 0, 0, 0, fingerprint, world.size)
    if world.main:
        clean_staging(loop.checkpoints)
    barrier(world)
    found = list_checkpoints(loop.checkpoints)
    if found:
        position = load_checkpoint(found[-1], loop.model, loop.optimizer, loop.scheduler, world, log)
        if position.data_fingerprint != fingerprint:
            raise RunDirError(f"--resume: the training data changed since {found[-1]} was saved")
        log(f"resuming from {found[-1]} (step {position.step} of {loop.total_steps})")
    else:
        log("resume: no complete checkpoint yet, starting from step 0")
    unreadable = loop.metrics.truncate_after(position.step)
    if unreadable:
        log(f"note: dropped {unreadable} unreadable line(s) of {loop.metrics.path} (cut short when the run stopped)")
    return position


def baseline(run: Run, known: dict | None = None) -> dict:
    """The base model's numbers on the same held-out rows the tuned model will face (eval/base.json), computed
    once per run (or `known` from an identical evaluation): a resumed run past step 0 reads them back. Then the base
    causal LM's memory is freed."""
    base_file = RunDir(run.out).eval_file("base")
    if not base_file.is_file() or run.position.step == 0:
        # Every rank evaluates (the same numbers), so that sharded weights are gathered together; rank 0 writes.
        base_eval = known if known is not None else _score_base(run)
        if run.world.main:
            write_json(base_file, base_eval)
        run.loop.metrics.truncate_after(0)
        run.loop.metrics.write({"step": 0, "split": "eval", **base_eval["metrics"]})
    barrier(run.world)
    run.loaded.base.model = None  # a method that trains another model (a head) needs the causal LM no longer
    return read_json(base_file)


def _score_base(run: Run) -> dict:
    """The base's evaluation: read back from the cache when an earlier run computed exactly this one
    (recipes/base_cache.py), else scored now and kept for the next. Not under torchrun: every rank must take the same
    path through an evaluation whose sharded weights are gathered together, and a file another run writes meanwhile
    could be there for one rank and not yet for another."""
    cfg, loaded = run.cfg, run.loaded
    if not cfg.eval.reuse_base or run.world.size > 1:
        return run.method.base_eval(run.model, loaded.base.model, run.ctx)
    precision = f"{loaded.device.type}:{loaded.dtype}:{loaded.autocast}"
    score = partial(run.method.base_eval, run.model, loaded.base.model, run.ctx)
    return base_cache.evaluation(cfg, loaded.base, run.ctx.prepared, precision, score, run.ctx.log)


def fit_run(run: Run) -> tuple[Position, float]:
    """The training loop from the run's position to its last step, and the last step's checkpoint."""
    started = time.perf_counter()
    loop = run.loop
    position = fit(loop, run.position)
    seconds = time.perf_counter() - started
    if not (run.resumed and position.step == run.position.step):  # resumed from the last step: already on disk
        save_checkpoint(
            loop.checkpoints,
            loop.model,
            loop.optimizer,
            loop.scheduler,
            position,
            run.cfg.train.keep_checkpoints,
            run.world,
        )
    return position, seconds


def finish(run: Run, base_eval: dict, position: Position, train_seconds: float) -> RunResult:
    """final/, the tuned model's numbers (eval/tuned.json, compared with the strongest baseline), the model card
    and the HTML report. Redone whole after any stop: a resume always ends here."""
    out, cfg, world = run.out, run.cfg, run.world
    whole = full_state(run.model, world) if is_sharded(run.model) else None  # every rank sends its shard
    if world.main:
        _save_final(run.method, run.model, run.loaded.base.tokenizer, out, run.loaded.renderer.stop_ids(), whole)
    tuned_eval = run.method.tuned_eval(run.model, base_eval, RunDir(out).final, run.ctx)
    tuned_eval["train_seconds"] = round(train_seconds, 1)  # this process's fit() only (a resumed run: since resume)
    budget = cfg.eval.forgetting_budget
    if budget is not None and "forgetting" in tuned_eval:
        over = over_budget(tuned_eval["forgetting"], budget.max_drop, budget.max_nll_increase)
        tuned_eval["forgetting"]["over_budget"] = over
        if over:
            run.ctx.log(f"final model: the forgetting budget is exceeded: {'; '.join(over)}")
    if run.stopped is not None:
        tuned_eval["budget_stop"] = run.stopped
    params = run.params | {"train_seconds": train_seconds}
    if not world.main:
        barrier(world)  # rank 0 writes the records, the card and the report
        return RunResult(out, base_eval, tuned_eval, position.step, params)
    write_json(RunDir(out).eval_file("tuned"), tuned_eval)
    fault("tuned")
    # `final` marks the record a resume drops: the end of a run is redone after every stop.
    run.loop.metrics.write({"step": position.step, "split": "eval", "final": True, **tuned_eval["metrics"]})
    manifest = read_json(RunDir(out).manifest_file)
    write_text(RunDir(out).model_card, model_card(cfg, manifest, base_eval, tuned_eval, params))
    fault("card")
    write_run_report(out)
    barrier(world)
    return RunResult(out, base_eval, tuned_eval, position.step, params)
