"""`tunesmith eval RUN_OR_MODEL`: score a finished run (against its own base) or any model on held-out data.

    tunesmith eval runs/sst2-sentiment                                                 # the rows it was trained for
    tunesmith eval runs/sst2-sentiment --config examples/sst2-sentiment.yaml          # the config's eval data + task
    tunesmith eval runs/gsm8k-lora --data ../shared/data/gsm8k/test.jsonl --fields question=prompt answer=completion
    tunesmith eval smollm2-135m-instruct --config examples/sst2-sentiment.yaml        # one model, no comparison

For a run, the base it was tuned from answers the same rows with the same prompts, and every metric is reported
base vs tuned (task metrics with a paired-bootstrap 95% interval against the strongest baseline: eval/baselines.py),
plus forgetting on the bundled general probes. Both are evaluated by the run's training method exactly as `train`
evaluates them (methods/*.py: base_eval, tuned_eval), so eval.json holds what eval/base.json and eval/tuned.json do.
The rows are chosen as `train` chooses them (data.eval_max_rows per eval dataset, or the run's held-out split), and
both models are prompted as the run was trained and scored in one dtype. The base's evaluation is kept under
eval.reuse_base (recipes/base_cache.py), so scoring a run again on the same rows reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tunesmith.config import Config, DatasetSpec, Kind, load_config, load_saved_config
from tunesmith.data.check import parse_fields
from tunesmith.data.formats import Example
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, Renderer, RowEncoder
from tunesmith.errors import TunesmithError
from tunesmith.methods import build_method
from tunesmith.methods.base import EvalContext, Method
from tunesmith.models.loading import LoadedBase, load_base, pick_device
from tunesmith.models.registry import is_run_dir
from tunesmith.models.trained import TrainedSettings, load_run
from tunesmith.recipes import base_cache
from tunesmith.rundir import RunDir, write_json
from tunesmith.training.prepare import Prepared, prepare_data

Pairs = list[tuple[Example, DatasetSpec]]
COMPARISON = ("comparison", "comparison_base", "versus_trivial")  # also at the top of eval.json, as before


def held_out(cfg: Config, encoder: RowEncoder, prepared: Prepared | None = None) -> Pairs:
    """The rows a run is scored on, chosen as `train` chooses them: the first data.eval_max_rows of each eval
    dataset, or, with no eval data, the run's own held-out split of its training data (`prepared`, when the
    caller has already prepared cfg's data). Rows the encoder refuses are skipped and printed."""
    if not cfg.data.eval:
        if not cfg.data.train:
            raise TunesmithError("no held-out data: give --data FILE or a --config whose data.eval lists datasets")
        return (prepared or prepare_data(cfg, encoder)).eval_examples
    return [pair for pair, _ in _eval_data(cfg, encoder)]


def _eval_data(cfg: Config, encoder: RowEncoder) -> list[tuple[tuple[Example, DatasetSpec], Encoded]]:
    """data.eval's rows, each with its encoding (tagged with its dataset's index), the first data.eval_max_rows of
    each dataset; rows that do not load or encode are printed and skipped."""
    out = []
    for index, spec in enumerate(cfg.data.eval):
        loaded = load_dataset(spec)
        for error in loaded.errors:
            print(f"skipped: {error}")
        for example in loaded.examples[: cfg.data.eval_max_rows]:
            encoded = encoder.encode(example, spec.system)
            if isinstance(encoded, Encoded):
                encoded.dataset = index
                out.append(((example, spec), encoded))
            else:
                print(f"skipped: {encoded}")
    return out


def _context(cfg: Config, method: Method, renderer: Renderer, device: torch.device) -> EvalContext:
    """The held-out rows as the method evaluates them, and the training rows (the few-shot baselines' examples, the
    trivial baseline's answers, a head's class weights) when the config has training data. Each row is encoded once."""
    encoder = method.encoder(renderer)
    prepared = prepare_data(cfg, encoder) if cfg.data.train else None
    if not cfg.data.eval:
        held_out(cfg, encoder, prepared)  # no eval data and no training data: says so
        return EvalContext(cfg, renderer, prepared, device, log=lambda *_: None)
    rows = _eval_data(cfg, encoder)
    view = Prepared(
        train=prepared.train if prepared else [],
        eval=[encoded for _, encoded in rows],
        eval_examples=[pair for pair, _ in rows],
        files=[],
        rows=len(rows),
        eval_names=[spec.display_name for spec in cfg.data.eval],
        train_examples=prepared.train_examples if prepared else [],
    )
    return EvalContext(cfg, renderer, view, device, log=lambda *_: None)


def evaluate_target(target: str, cfg: Config) -> dict:
    """Scores of `target` (and of its base, when it is a run) on cfg's held-out rows, as eval/*.json hold them.
    A run and its base are prompted as the run was trained and scored in one dtype (models/trained.py)."""
    device = pick_device()
    run = Path(target)
    out: dict = {"target": target}
    if is_run_dir(run):
        saved = RunDir(run).config()
        cfg.method = saved.method  # the run's own method evaluates it, whatever config gives the rows and the task
        method = build_method(cfg)
        settings = TrainedSettings.of_run(run)
        dtype = settings.weight_dtype(device)
        base = load_base(saved.model, device, dtype)
        ctx = _context(cfg, method, settings.renderer(base.tokenizer), device)
        out["rows"] = len(ctx.prepared.eval_examples)
        method.objective(ctx.prepared.train, ctx.log)

        def score_base() -> dict:
            torch.manual_seed(cfg.train.seed)  # a method that trains a new head starts it from the run's seed
            return method.base_eval(method.build_model(base, None, device, dtype), base.model, ctx)

        out["base"] = _reused(cfg, base, ctx, f"{device.type}:{dtype}:eval", score_base)
        del base
        tuned = load_run(RunDir.at(run), device, dtype)  # a causal LM or a classifier: what final/ holds
        ctx.renderer = settings.renderer(tuned.tokenizer)
        out["tuned"] = method.tuned_eval(tuned.model, out["base"], RunDir.at(run).final, ctx)
        out |= {key: out["tuned"][key] for key in COMPARISON if key in out["tuned"]}
    else:
        cfg.model.base = target
        method = build_method(cfg)
        settings = TrainedSettings.of_config(cfg)
        dtype = settings.weight_dtype(device)
        base = load_base(cfg.model, device, dtype)
        ctx = _context(cfg, method, settings.renderer(base.tokenizer), device)
        out["rows"] = len(ctx.prepared.eval_examples)
        method.objective(ctx.prepared.train, ctx.log)
        model = base.model
        out["model"] = _reused(
            cfg, base, ctx, f"{device.type}:{dtype}:eval", lambda: method.base_eval(model, model, ctx)
        )
    return out


def _reused(cfg: Config, base: LoadedBase, ctx: EvalContext, precision: str, score: Callable[[], dict]) -> dict:
    """A base model's evaluation, read back when `tunesmith eval` scored the same model on the same rows with the same
    settings and code before (eval.reuse_base, recipes/base_cache.py), else scored now and kept."""
    if not cfg.eval.reuse_base:
        return score()
    return base_cache.evaluation(cfg, base, ctx.prepared, precision, score, print)


def eval_command(
    target: str, config: str | None, data: list[str], kind: str, fields: list[str], out: str | None
) -> dict:
    run_config = RunDir.at(target).config_file
    if config:
        cfg = load_config(config)
    elif is_run_dir(Path(target)) and run_config.is_file():
        cfg = load_saved_config(run_config)  # by default a run is scored on the rows and task it was trained for
    else:
        cfg = Config()
    if data:
        cfg.data.eval = [DatasetSpec(path=p, kind=Kind(kind), fields=parse_fields(fields)) for p in data]
    result = evaluate_target(target, cfg)
    path = (
        Path(out) if out else (RunDir.at(target).eval_file("eval") if is_run_dir(Path(target)) else Path("eval.json"))
    )
    write_json(path, result)
    result["written_to"] = str(path)
    return result
