"""`tunesmith eval RUN_OR_MODEL`: score a finished run (against its own base) or any model on held-out data.

    tunesmith eval runs/sst2-sentiment                                                 # the rows it was trained for
    tunesmith eval runs/sst2-sentiment --config examples/sst2-sentiment.yaml          # the config's eval data + task
    tunesmith eval runs/gsm8k-lora --data ../shared/data/gsm8k/test.jsonl --fields question=prompt answer=completion
    tunesmith eval smollm2-135m-instruct --config examples/sst2-sentiment.yaml        # one model, no comparison

For a run, the base it was tuned from answers the same rows with the same prompts, and every metric is reported
base vs tuned (task metrics with a paired-bootstrap 95% interval against the strongest baseline: eval/baselines.py),
plus forgetting on the bundled general probes.
The rows are chosen as `train` chooses them (data.eval_max_rows per eval dataset, or the run's held-out split), and
both models are prompted as the run was trained and scored in one dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.config import Config, DatasetSpec, Kind, load_config
from tunesmith.data.check import parse_fields
from tunesmith.data.formats import Example
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.baselines import score_baselines, tuned_comparison
from tunesmith.eval.chat import load_final
from tunesmith.eval.general import general_ability
from tunesmith.eval.runner import evaluate_loss
from tunesmith.eval.scoring import score_task
from tunesmith.eval.tasks import task_result
from tunesmith.models.loading import load_base, pick_device
from tunesmith.models.registry import is_run_dir
from tunesmith.models.trained import TrainedSettings
from tunesmith.rundir import write_json
from tunesmith.training.objectives import CausalLMObjective
from tunesmith.training.prepare import Prepared, prepare_data


def _score(model, renderer: Renderer, pairs, cfg: Config, device: torch.device) -> dict:
    encoded = [e for e in (renderer.encode(ex, spec.system) for ex, spec in pairs) if isinstance(e, Encoded)]
    pad = renderer.tokenizer.pad_token_id
    result: dict = {
        "metrics": evaluate_loss(model, encoded, CausalLMObjective(), cfg.eval.batch_size, pad, device).as_dict()
    }
    if cfg.task.type != "none":
        result["task"] = score_task(model, renderer, pairs, cfg, device)
    if cfg.eval.general:
        result["general"] = general_ability(model, renderer, cfg.eval.batch_size, device).as_dict()
    return result


Pairs = list[tuple[Example, DatasetSpec]]


def held_out(cfg: Config, renderer: Renderer, prepared: Prepared | None = None) -> Pairs:
    """The rows a run is scored on, chosen as `train` chooses them: the first data.eval_max_rows of each eval
    dataset, or, with no eval data, the run's own held-out split of its training data (`prepared`, when the
    caller has already prepared cfg's data)."""
    if not cfg.data.eval:
        if not cfg.data.train:
            raise TunesmithError("no held-out data: give --data FILE or a --config whose data.eval lists datasets")
        return (prepared or prepare_data(cfg, renderer)).eval_examples
    pairs = []
    for spec in cfg.data.eval:
        loaded = load_dataset(spec)
        for error in loaded.errors:
            print(f"skipped: {error}")
        for example in loaded.examples[: cfg.data.eval_max_rows]:
            encoded = renderer.encode(example, spec.system)
            if isinstance(encoded, Encoded):
                pairs.append((example, spec))
            else:
                print(f"skipped: {encoded}")
    return pairs


def evaluate_target(target: str, cfg: Config) -> dict:
    """Scores of `target` (and of its base, when it is a run) on cfg's held-out rows, as eval/*.json hold them.
    A run and its base are prompted as the run was trained and scored in one dtype (models/trained.py)."""
    if cfg.task.objective == "head":
        raise TunesmithError("classification-head runs are scored by `tunesmith predict --file`; eval is generative")
    device = pick_device()
    run = Path(target)
    out: dict = {"target": target}
    if is_run_dir(run):
        settings = TrainedSettings.of_run(run)
        dtype = settings.weight_dtype(device)
        model, tokenizer = load_final(run, device, dtype)
        renderer = settings.renderer(tokenizer)
        # The training rows give the few-shot baselines their examples and the trivial baseline its answers.
        prepared = prepare_data(cfg, renderer) if cfg.data.train else None
        pairs = held_out(cfg, renderer, prepared)
        out["rows"] = len(pairs)
        out["tuned"] = _score(model, renderer, pairs, cfg, device)
        del model
        base = load_base(load_config(run / "config.yaml").model, device, dtype)
        out["base"] = _score(base.model, renderer, pairs, cfg, device)
        if cfg.task.type != "none":  # as `train` does: the baselines, and tuned vs the strongest of them
            train = prepared.train_examples if prepared else []
            args = (cfg.task, task_result(out["base"]["task"]), cfg.eval.batch_size, device, cfg.train.seed)
            out["base"] |= score_baselines(base.model, renderer, pairs, train, *args, cfg.data.slice_field)
            out |= tuned_comparison(out["base"], out["tuned"]["task"], cfg.task, cfg.train.seed)
    else:
        cfg.model.base = target
        settings = TrainedSettings.of_config(cfg)
        base = load_base(cfg.model, device, settings.weight_dtype(device))
        renderer = settings.renderer(base.tokenizer)
        pairs = held_out(cfg, renderer)
        out["rows"] = len(pairs)
        out["model"] = _score(base.model, renderer, pairs, cfg, device)
    return out


def eval_command(
    target: str, config: str | None, data: list[str], kind: str, fields: list[str], out: str | None
) -> dict:
    run_config = Path(target) / "config.yaml"
    if config:
        cfg = load_config(config)
    elif is_run_dir(Path(target)) and run_config.is_file():
        cfg = load_config(run_config)  # by default a run is scored on the rows and task it was trained for
    else:
        cfg = Config()
    if data:
        cfg.data.eval = [DatasetSpec(path=p, kind=Kind(kind), fields=parse_fields(fields)) for p in data]
    result = evaluate_target(target, cfg)
    path = (
        Path(out) if out else (Path(target) / "eval" / "eval.json" if is_run_dir(Path(target)) else Path("eval.json"))
    )
    write_json(path, result)
    result["written_to"] = str(path)
    return result
