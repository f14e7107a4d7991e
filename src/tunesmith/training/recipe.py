"""A fine-tuning run from one config: setup -> evaluate base -> fit -> save -> evaluate tuned -> card.

    tunesmith train examples/gsm8k-lora.yaml [key.sub=value ...] [--resume]

`--resume` continues the same run from its last complete checkpoint and ends where an uninterrupted run would.
Training further on *new* data is a different operation: point `model.base` at the finished run.
With `task.objective: head` the same run trains a classification head instead (training/head.py): the rows are
encoded as (input, class), the model is the base as a sequence classifier, and the base is scored as a causal LM.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tunesmith.config import Config
from tunesmith.data.audit_cli import preflight_audit
from tunesmith.data.templates import Renderer
from tunesmith.eval.baselines import NAMES, score_baselines, tuned_comparison
from tunesmith.eval.general import general_ability
from tunesmith.eval.predict import evaluate_head
from tunesmith.eval.runner import evaluate_loss, generate_answers
from tunesmith.eval.scoring import score_task
from tunesmith.eval.tasks import HEADLINE, task_result
from tunesmith.eval.variants import check_variants
from tunesmith.faults import fault
from tunesmith.models.loading import (
    count_parameters,
    default_threads,
    load_base,
    pick_device,
    training_precision,
)
from tunesmith.models.registry import is_run_dir
from tunesmith.report.model_card import model_card
from tunesmith.report.run_html import write_run_report
from tunesmith.rundir import (
    RunDirError,
    build_manifest,
    check_output,
    claim,
    clear_run,
    config_changes,
    read_json,
    write_errors,
    write_json,
    write_text,
)
from tunesmith.training import head as head_run
from tunesmith.training.checkpoint import Position, clean_staging, list_checkpoints, load_checkpoint, save_checkpoint
from tunesmith.training.loop import Loop, MetricsLog, build_optimizer, data_fingerprint, fit, total_steps
from tunesmith.training.objectives import CausalLMObjective
from tunesmith.training.prepare import Prepared, describe_errors, encoder_for, packs, prepare_data, train_order
from tunesmith.training.speed import make_trainable


@dataclass
class RunResult:
    run_dir: Path
    base: dict  # eval/base.json
    tuned: dict  # eval/tuned.json
    steps: int


def _protected(cfg: Config, config_path: Path | None) -> list[Path]:
    """Files the run reads, which replacing the output folder must never delete: config, data, id lists, model."""
    paths = [Path(spec.path) for spec in (*cfg.data.train, *cfg.data.eval)]
    paths += [Path(spec.ids.file) for spec in (*cfg.data.train, *cfg.data.eval) if spec.ids is not None]
    if Path(cfg.model.base).expanduser().exists():
        paths.append(Path(cfg.model.base).expanduser())
    return paths + ([config_path] if config_path is not None else [])


def _check_resume(cfg: Config, out: Path, state: str, log) -> bool:
    """Whether there is a started run to continue; a run whose identity was never completed starts afresh."""
    if state != "started":
        log(f"--resume: {out} holds no started run yet (no manifest.json); starting it from the beginning")
        return False
    changed = config_changes(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")), cfg)
    if changed:
        raise RunDirError(
            f"--resume: the config differs from the run's saved config in {', '.join(changed)}; "
            "a resume must continue the same run (to train on from its result, set model.base to the run)"
        )
    claim(out)  # a run written before the marker existed gets it now
    return True


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
    write_text(out / "config.yaml", cfg.to_yaml())
    fault("config")
    write_json(out / "manifest.json", manifest)
    fault("manifest")


def _samples(model, renderer: Renderer, prepared: Prepared, cfg: Config, device) -> list[dict]:
    """Greedy answers to the first held-out prompts: what a user of the model would ask, answered."""
    prompts, references = [], []
    for ex, spec in prepared.eval_examples[: cfg.eval.samples]:
        prompt, reference = renderer.first_turn(ex, spec.system)
        prompts.append(prompt)
        references.append(reference)
    answers = generate_answers(
        model,
        renderer.tokenizer,
        [renderer.prompt_ids(p) for p in prompts],
        cfg.eval.max_new_tokens,
        device,
        renderer.stop_ids(),
    )
    return [
        {"prompt": p[-1]["content"], "reference": ref, "answer": ans}
        for p, ref, ans in zip(prompts, references, answers, strict=True)
    ]


def _evaluate(model, prepared: Prepared, cfg: Config, objective, pad_id: int, device) -> dict:
    fault("eval")
    if cfg.task.objective == "head":
        labels, batch_size = cfg.task.labels, cfg.eval.batch_size
        return evaluate_head(model, prepared.eval, objective, labels, batch_size, pad_id, device).metrics
    pack_to = cfg.data.max_length if packs(cfg) else None
    batch = cfg.eval.batch_size
    metrics = evaluate_loss(model, prepared.eval, objective, batch, pad_id, device, pack_to).as_dict()
    if len({row.dataset for row in prepared.eval}) > 1:  # several eval sets: each one's own numbers too
        metrics["datasets"] = {
            name: evaluate_loss(
                model, [r for r in prepared.eval if r.dataset == i], objective, batch, pad_id, device, pack_to
            ).as_dict()
            for i, name in enumerate(prepared.eval_names)
            if any(r.dataset == i for r in prepared.eval)
        }
    return metrics


def _baseline_line(base_eval: dict, task_type: str) -> str:
    """One log line: every baseline's first headline metric, the strongest named, and the trivial baseline."""
    metric = HEADLINE[task_type][0]
    scores = ", ".join(
        f"{NAMES[name]} {result['metrics'][metric]:.4f}" for name, result in base_eval["baselines"].items()
    )
    line = f"base model {metric}: {scores}; strongest: {NAMES[base_eval['strongest']]}"
    trivial = base_eval.get("trivial")
    return line + (f"; trivial ({trivial['method']}) {trivial['metrics'][metric]:.4f}" if trivial else "")


def _save_final(model, tokenizer, out: Path, cfg: Config, stop_ids: list[int]) -> None:
    """`final/` loads with transformers (+ peft for adapters) alone; written aside and renamed into place."""
    staging, aside = out / ".final-staging", out / ".final-aside"
    shutil.rmtree(staging, ignore_errors=True)
    generative = cfg.task.objective == "generate"  # a classification head generates nothing
    if generative:
        model.generation_config.eos_token_id = stop_ids
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if cfg.adapter.method == "lora" and generative:
            model.get_base_model().generation_config.save_pretrained(staging)
        fault("final:staged", staging)
        shutil.rmtree(aside, ignore_errors=True)
        if (out / "final").exists():  # the end of a resumed run is redone: the old final/ goes only once replaced
            (out / "final").rename(aside)
        staging.rename(out / "final")
        fault("final:renamed", out / "final")
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_training(
    cfg: Config,
    resume: bool = False,
    log=print,
    crash_after_step: int | None = None,
    config_path: Path | None = None,
) -> RunResult:
    """Run (or resume) the training job `cfg` describes. `crash_after_step` lets tests stop a run as a kill would;
    `config_path` is the file `cfg` came from, which replacing the output folder must never delete."""
    out = Path(cfg.output.dir)
    state = check_output(out, resume, cfg.output.overwrite, _protected(cfg, config_path))
    with write_errors(out):
        return _run(cfg, out, state, resume, log, crash_after_step)


def _run(cfg: Config, out: Path, state: str, resume: bool, log, crash_after_step: int | None) -> RunResult:
    if resume:
        resume = _check_resume(cfg, out, state, log)
    torch.set_num_threads(cfg.train.threads or default_threads())
    device = pick_device()
    dtype, autocast = training_precision(cfg.model.dtype, device)
    head = cfg.task.objective == "head"

    # --- setup: base, tokenizer, data (bad data fails here, before the model is even loaded) -----------------
    base = load_base(cfg.model, device, dtype, cfg.data.max_length, cfg.adapter)
    tokenizer = base.tokenizer
    renderer = Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length)
    # A head's rows are (input ids, [class index]) instead of (ids, per-token labels): data/classify.py.
    prepared = prepare_data(cfg, encoder_for(cfg, renderer))
    if prepared.errors:
        log(f"data.skip_invalid=true: skipped {len(prepared.errors)} bad row(s):\n{describe_errors(prepared.errors)}")
    check_variants(prepared.eval_examples[: cfg.task.max_rows], cfg.task.prompt_variants)
    if prepared.truncated:
        log(f"note: {prepared.truncated} row(s) were truncated to data.max_length={cfg.data.max_length} tokens")
    fault("setup")
    if not resume:
        manifest = build_manifest(cfg, base.resolved, prepared.files, tokenizer, sys.argv)
        # `auto` depends on the hardware, so the lineage says what it was here.
        manifest["precision"] = {"device": device.type, "weights": str(dtype), "autocast": autocast and str(autocast)}
        _start_run_dir(cfg, out, state, tokenizer, manifest, log)

    model = base.model
    if is_run_dir(base.resolved.path) and (cfg.adapter.method == "lora" or head):
        # Continuing from a run: its adapter was merged into the weights, which the new adapter must point at
        # (and which a head's classifier is loaded from).
        model.save_pretrained(out / "base")
        tokenizer.save_pretrained(out / "base")
        model.name_or_path = str((out / "base").resolve())
        model.config._name_or_path = model.name_or_path
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    causal_lm = None
    if head:  # the plain causal LM stays until the zero-shot baseline has been generated with it
        causal_lm, model = model, head_run.build_classifier(cfg, base, out, device, dtype)
    model = make_trainable(model, cfg.adapter, cfg.train, "SEQ_CLS" if head else "CAUSAL_LM")
    total_params, trainable = count_parameters(model)
    steps = total_steps(cfg.train, len(prepared.train))
    log(
        f"model {cfg.model.base}: {total_params:,} parameters, {trainable:,} trainable ({cfg.adapter.method}); "
        f"{len(prepared.train)} train rows, {len(prepared.eval)} eval rows; {steps} steps of "
        f"{cfg.train.batch_size} = {cfg.train.micro_batch_size} x {cfg.train.grad_accum} accumulation; "
        f"{device}, {dtype}" + (f" with {autocast} autocast" if autocast else "")
    )
    optimizer, scheduler = build_optimizer(model, cfg.train, steps)
    class_weights = None
    if head:
        objective, class_weights = head_run.build_objective(cfg.task, prepared.train, log)
    else:
        objective = CausalLMObjective()
    pad_id = tokenizer.pad_token_id
    metrics = MetricsLog(out / "metrics.jsonl")
    checkpoints = out / "checkpoints"
    fingerprint = data_fingerprint(prepared.train)
    position = Position(0, 0, 0, 0, 0, fingerprint)
    if resume:
        clean_staging(checkpoints)
        found = list_checkpoints(checkpoints)
        if found:
            position = load_checkpoint(found[-1], model, optimizer, scheduler)
            if position.data_fingerprint != fingerprint:
                raise RunDirError(f"--resume: the training data changed since {found[-1]} was saved")
            log(f"resuming from {found[-1]} (step {position.step} of {steps})")
        else:
            log("resume: no complete checkpoint yet, starting from step 0")
        unreadable = metrics.truncate_after(position.step)
        if unreadable:
            log(f"note: dropped {unreadable} unreadable line(s) of {metrics.path} (cut short when the run stopped)")
    saved_step = position.step if resume and position.step else None

    # --- the base model's numbers, on the same held-out rows the tuned model will face ----------------------
    base_file = out / "eval" / "base.json"
    if not base_file.is_file() or position.step == 0:
        if head:
            args = (renderer, prepared, cfg, objective, class_weights, pad_id, device)
            base_eval = head_run.base_eval(model, causal_lm, *args)
            base_metrics = base_eval["metrics"]
            log(
                f"base model: untrained head eval loss {base_metrics['loss']:.4f}, accuracy "
                f"{base_metrics['accuracy']:.4f}; zero-shot generation accuracy "
                f"{base_eval['task']['metrics']['accuracy']:.4f}"
            )
            log(_baseline_line(base_eval, "classification"))
        else:
            base_metrics = _evaluate(model, prepared, cfg, objective, pad_id, device)
            base_eval = {
                "model": cfg.model.base,
                "metrics": base_metrics,
                "samples": _samples(model, renderer, prepared, cfg, device),
            }
            if cfg.task.type != "none":
                base_eval["task"] = score_task(model, renderer, prepared.eval_examples, cfg, device)
                base_eval |= score_baselines(
                    model,
                    renderer,
                    prepared.eval_examples,
                    prepared.train_examples,
                    cfg.task,
                    task_result(base_eval["task"]),
                    cfg.eval.batch_size,
                    device,
                    cfg.train.seed,
                    cfg.data.slice_field,
                )
                log(_baseline_line(base_eval, cfg.task.type))
            if cfg.eval.general:
                base_eval["general"] = general_ability(model, renderer, cfg.eval.batch_size, device).as_dict()
            log(f"base model: eval loss {base_metrics['loss']:.4f}, perplexity {base_metrics['perplexity']:.2f}")
        write_json(base_file, base_eval)
        metrics.truncate_after(0)
        metrics.write({"step": 0, "split": "eval", **base_metrics})
    base_eval = read_json(base_file)
    causal_lm = base.model = None  # a head run needs the causal LM no longer; free its memory before training

    # --- fit ---------------------------------------------------------------------------------------------------
    started = time.perf_counter()
    loop = Loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        objective=objective,
        train=prepared.train,
        cfg=cfg.train,
        total_steps=steps,
        pad_id=pad_id,
        device=device,
        checkpoints=checkpoints,
        metrics=metrics,
        evaluate=lambda: _evaluate(model, prepared, cfg, objective, pad_id, device),
        crash_after_step=crash_after_step,
        order=train_order(cfg, prepared),
        pack_to=cfg.data.max_length if packs(cfg) else None,
        autocast=autocast,
    )
    position = fit(loop, position)
    train_seconds = time.perf_counter() - started
    if position.step != saved_step:  # resumed from the last step's checkpoint: it is already on disk
        save_checkpoint(checkpoints, model, optimizer, scheduler, position, cfg.train.keep_checkpoints)

    # --- save, evaluate the tuned model, write the card --------------------------------------------------------
    _save_final(model, tokenizer, out, cfg, renderer.stop_ids())
    if head:
        tuned_eval = head_run.tuned_eval(model, prepared, cfg, objective, base_eval, out / "final", pad_id, device)
    else:
        tuned_metrics = _evaluate(model, prepared, cfg, objective, pad_id, device)
        tuned_eval = {
            "model": str(out / "final"),
            "metrics": tuned_metrics,
            "samples": _samples(model, renderer, prepared, cfg, device),
        }
        if cfg.task.type != "none":
            tuned_eval["task"] = score_task(model, renderer, prepared.eval_examples, cfg, device)
            tuned_eval |= tuned_comparison(base_eval, tuned_eval["task"], cfg.task, cfg.train.seed)
        if cfg.eval.general and "general" in base_eval:
            general = general_ability(model, renderer, cfg.eval.batch_size, device).as_dict()
            tuned_eval["general"] = general
            tuned_eval["forgetting"] = {
                key: general[key] - base_eval["general"][key] for key in ("text_perplexity", "qa_accuracy")
            }
    tuned_eval["train_seconds"] = round(train_seconds, 1)  # this process's fit() only (a resumed run: since resume)
    write_json(out / "eval" / "tuned.json", tuned_eval)
    fault("tuned")
    # `final` marks the record a resume drops: the end of a run is redone after every stop.
    metrics.write({"step": position.step, "split": "eval", "final": True, **tuned_eval["metrics"]})
    params = {
        "total": total_params,
        "trainable": trainable,
        "steps": steps,
        "train_rows": len(prepared.train),
        "eval_rows": len(prepared.eval),
        "train_seconds": train_seconds,
    }
    write_text(out / "MODEL_CARD.md", model_card(cfg, read_json(out / "manifest.json"), base_eval, tuned_eval, params))
    fault("card")
    write_run_report(out)
    return RunResult(out, base_eval, tuned_eval, position.step)
