"""The base model's baselines on the held-out rows, and which one the tuned model is compared with.

    base_eval |= score_baselines(model, renderer, pairs, train_pairs, cfg.task, zero_shot, batch, device, seed)
    tuned_eval["comparison"] = compare(strongest_task(base_eval), tuned_task, cfg.task, seed)

A gain is only as good as the baseline it is measured against. The base is scored up to four ways on the same rows
(`task.baselines`), and the headline comparison is against the strongest on the task's first headline metric:

- generation, zero-shot: the base answers the prompt greedily and the prediction is read from its text (always);
- generation, few-shot: the same, after `task.few_shot` training rows as earlier user/assistant turns;
- label likelihood, zero- and few-shot (classification): the label word with the highest mean log-probability as
  the answer (eval/likelihood.py), which does not depend on the model answering in the expected words.

Taking the best of four on the held-out rows flatters the base a little (the choice is made on the rows it is
scored on); that errs against the tuned model, which is the safe side for a claimed gain. The trivial baseline
(eval/trivial.py: majority class, lead sentence, copied source, most common answer) is reported beside it, and
`versus_trivial` says when the tuned model does not beat it. Cost: every few-shot prompt is up to k rows longer,
so k is capped (task.few_shot <= 8), and shots that would push a prompt past (k + 1) x data.max_length tokens or the
model's context are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tunesmith.config import DatasetSpec, TaskConfig
from tunesmith.data.formats import Example
from tunesmith.data.templates import Renderer
from tunesmith.eval.fewshot import Messages, choose_shots, fit_shots
from tunesmith.eval.likelihood import label_scores
from tunesmith.eval.metrics import compute
from tunesmith.eval.parse import number_text, number_value
from tunesmith.eval.runner import generate_sorted
from tunesmith.eval.tasks import HEADLINE, INPUT_CHARS, TaskResult, compare, numeric, read_prediction, task_result
from tunesmith.eval.trivial import trivial_baseline

Pair = tuple[Example, DatasetSpec]
ORDER = ("likelihood_zero_shot", "likelihood_few_shot", "generation_zero_shot", "generation_few_shot")
NAMES = {
    "likelihood_zero_shot": "label likelihood, zero-shot",
    "likelihood_few_shot": "label likelihood, few-shot",
    "generation_zero_shot": "generation, zero-shot",
    "generation_few_shot": "generation, few-shot",
}


def score(task: TaskConfig, predictions: list[str | None], references: list) -> dict[str, float]:
    """The task's metrics, exactly as eval/tasks.run_task computes them for the generation baseline."""
    return compute(task.type, predictions, references, task.labels or None, numeric(task))


def _method(name: str, k: int, used: list[int]) -> str:
    how = (
        "the label word with the highest mean token log-probability as the answer"
        if name.startswith("likelihood")
        else "greedy answer, prediction read from its text"
    )
    if not name.endswith("few_shot"):
        return f"base model, zero-shot; {how}"
    mean = sum(used) / max(1, len(used))
    return f"base model, {k} training rows as earlier chat turns ({mean:.1f} per row fit the length limit); {how}"


def _likelihood(
    model: nn.Module,
    renderer: Renderer,
    prompts: list[Messages],
    task: TaskConfig,
    references: list,
    batch_size: int,
    device: torch.device,
    progress: str | None = None,
) -> TaskResult:
    scores = label_scores(model, renderer, prompts, task.labels, batch_size, device, progress)
    predictions: list[str | None] = [task.labels[max(range(len(row)), key=row.__getitem__)] for row in scores]
    generations = [" | ".join(f"{lab} {s:.3f}" for lab, s in zip(task.labels, row, strict=True)) for row in scores]
    return TaskResult(task.type, score(task, predictions, references), generations, predictions, references)


def _generation(
    model: nn.Module,
    renderer: Renderer,
    prompts: list[Messages],
    task: TaskConfig,
    references: list,
    batch_size: int,
    device: torch.device,
    progress: str | None = None,
) -> TaskResult:
    """Greedy answers as eval/tasks.run_task generates them (length-sorted batches), read and scored the same way."""
    ids = [renderer.prompt_ids(p) for p in prompts]
    generations = generate_sorted(
        model, renderer.tokenizer, ids, task.max_new_tokens, batch_size, device, renderer.stop_ids(), progress
    )
    predictions = [read_prediction(g, task) for g in generations]
    return TaskResult(task.type, score(task, predictions, references), generations, predictions, references)


def few_shot_limit(model: nn.Module, renderer: Renderer, task: TaskConfig) -> int:
    """Tokens a few-shot prompt may take: room for k training rows and the row itself at data.max_length each
    (data.max_length bounds one row, not a prompt of k + 1 rows), within the model's context window."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limit = (task.few_shot + 1) * renderer.max_length
    return min(limit, context) if isinstance(context, int) else limit


def score_baselines(
    model: nn.Module,
    renderer: Renderer,
    pairs: Sequence[Pair],
    train: Sequence[Pair],
    task: TaskConfig,
    zero_shot: TaskResult,
    batch_size: int,
    device: torch.device,
    seed: int,
    slice_field: str | None = None,
) -> dict:
    """eval/base.json's `baselines` (each a TaskResult section with its `method`), `strongest` (the name of the
    one with the highest first headline metric), `trivial` and `shots`. `zero_shot` is the base's generation
    result on the same rows (eval/scoring.score_task): its references are the ones every baseline is scored on."""
    pairs = list(pairs[: task.max_rows])
    prompts = [renderer.first_turn(ex, spec.system)[0] for ex, spec in pairs]
    references = list(zero_shot.references)
    inputs = zero_shot.inputs
    wanted = [n for n in ORDER if n == "generation_zero_shot" or n in task.baselines]
    if task.type != "classification":
        wanted = [n for n in wanted if not n.startswith("likelihood")]
    shots = choose_shots(train, pairs, renderer, task, task.few_shot, seed) if any("few" in n for n in wanted) else []
    room = 2 + max(
        (len(renderer.tokenizer(label, add_special_tokens=False)["input_ids"]) for label in task.labels), default=0
    )
    limit = few_shot_limit(model, renderer, task)
    results: dict[str, dict] = {}
    for name in wanted:
        used = [0] * len(prompts)
        if name.endswith("few_shot"):
            if not shots:
                continue
            spare = room if name.startswith("like") else task.max_new_tokens
            fitted = [fit_shots(p, shots, renderer, spare, limit) for p in prompts]
            rows, used = [m for m, _ in fitted], [n for _, n in fitted]
        else:
            rows = prompts
        if name == "generation_zero_shot":
            result = zero_shot
        elif name.startswith("likelihood"):
            result = _likelihood(model, renderer, rows, task, references, batch_size, device, f"base: {NAMES[name]}")
        else:
            result = _generation(model, renderer, rows, task, references, batch_size, device, f"base: {NAMES[name]}")
        result.inputs = inputs
        if numeric(task) and result is not zero_shot:  # the values each side was scored as, as run_task keeps them
            result.reference_numbers = zero_shot.reference_numbers
            result.prediction_numbers = [
                number_text(number_value(p)) if p is not None else None for p in result.predictions
            ]
        result.add_slices(pairs, slice_field, task)
        results[name] = {**result.to_json(), "method": _method(name, len(shots), used)}
    trivial = trivial_baseline(task, train, pairs, renderer, lambda p: score(task, p, references), references)
    return {
        "baselines": results,
        "strongest": pick_strongest(results, task.type),
        "trivial": trivial,
        "shots": [
            {"prompt": shot[-2]["content"][:INPUT_CHARS], "answer": shot[-1]["content"][:INPUT_CHARS]} for shot in shots
        ],
    }


def pick_strongest(results: dict[str, dict], task_type: str) -> str:
    """The baseline with the highest first headline metric; a tie goes to the one listed first in ORDER."""
    metric = HEADLINE[task_type][0]
    return max(results, key=lambda name: (results[name]["metrics"][metric], -ORDER.index(name)))


def strongest_task(base_eval: dict) -> TaskResult:
    """The base result the tuned model is compared with: the strongest baseline, or (a run written before
    baselines existed) the zero-shot generation in `task`."""
    name = base_eval.get("strongest")
    return task_result(base_eval["baselines"][name] if name else base_eval["task"])


def versus_trivial(tuned_task: dict, trivial: dict | None) -> dict | None:
    """The tuned model against the trivial baseline on each headline metric; `beats` is on the first one, and
    `message` says it in words when it does not (a tie does not beat it)."""
    if not trivial:
        return None
    metrics = HEADLINE[tuned_task["task"]][:]
    first = metrics[0]
    tuned, floor = tuned_task["metrics"][first], trivial["metrics"][first]
    beats = tuned > floor
    return {
        "name": trivial["name"],
        "method": trivial["method"],
        "metrics": {m: {"tuned": tuned_task["metrics"][m], "trivial": trivial["metrics"][m]} for m in metrics},
        "beats": beats,
        "message": None
        if beats
        else f"the tuned model does not beat the trivial baseline: {first} {tuned:.4f} vs {floor:.4f} for "
        f"{trivial['method']}",
    }


def tuned_comparison(base_eval: dict, tuned_task: dict, task: TaskConfig, seed: int) -> dict:
    """eval/tuned.json's comparison: tuned minus the strongest base (paired bootstrap), which base that is, and the
    tuned model against the trivial baseline."""
    return {
        "comparison": compare(strongest_task(base_eval), task_result(tuned_task), task, seed),
        "comparison_base": base_eval.get("strongest") or "generation_zero_shot",
        "versus_trivial": versus_trivial(tuned_task, base_eval.get("trivial")),
    }


def baseline_line(base_eval: dict, task_type: str) -> str:
    """One log line: every baseline's first headline metric, the strongest named, and the trivial baseline."""
    metric = HEADLINE[task_type][0]
    scores = ", ".join(
        f"{NAMES[name]} {result['metrics'][metric]:.4f}" for name, result in base_eval["baselines"].items()
    )
    line = f"base model {metric}: {scores}; strongest: {NAMES[base_eval['strongest']]}"
    trivial = base_eval.get("trivial")
    return line + (f"; trivial ({trivial['method']}) {trivial['metrics'][metric]:.4f}" if trivial else "")
