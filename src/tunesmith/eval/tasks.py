"""Task scores on held-out rows for the base and the tuned model, with the difference and its 95% interval.

    task: {type: classification, labels: [negative, positive]}     # in a run config

The same rows, the same prompts (as inference renders them) and greedy decoding for both models; predictions are
read out of the generated text by `eval.parse` and scored by `eval.metrics`; unreadable answers count as wrong.
Every gold answer of a row counts (`Example.references`: EM/F1 and ROUGE take the best, BLEU/chrF use them all),
except for classification, whose reference is the one label. With `parse: number`, qa answers compare as numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tunesmith.config import DatasetSpec, TaskConfig
from tunesmith.data.formats import Example
from tunesmith.data.templates import Renderer
from tunesmith.eval.bootstrap import bootstrap_metric
from tunesmith.eval.metrics import compute
from tunesmith.eval.parse import extract_number, first_line, match_label, number_text, number_value, strip_prefix
from tunesmith.eval.runner import generate_sorted
from tunesmith.eval.slices import task_slices

INPUT_CHARS = 300  # enough of each input to recognise it in the report, without copying long documents around
HEADLINE = {
    "classification": ("accuracy", "macro_f1"),
    "summarization": ("rouge1", "rouge2", "rougeL"),
    "qa": ("exact_match", "f1"),
    "translation": ("bleu", "chrf"),
}


@dataclass
class TaskResult:
    task: str
    metrics: dict[str, float]
    generations: list[str]
    predictions: list[str | None]
    references: list[str | list[str]]  # per row: its answer, or the list of its gold answers when it has several
    slices: dict[str, dict] = field(default_factory=dict)  # eval/slices.py: per slice column, metrics and gaps
    inputs: list[str] = field(default_factory=list)  # what each row asked (its last user turn, cut to INPUT_CHARS)
    # parse: number on qa: the value each side was scored as ("18.00" -> "18", None: no number); empty otherwise.
    reference_numbers: list[str | list[str | None] | None] = field(default_factory=list)
    prediction_numbers: list[str | None] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def add_slices(self, pairs: Sequence[tuple[Example, DatasetSpec]], slice_field: str | None, task: TaskConfig):
        """Fill `slices` from the scored rows (`pairs`, in prediction order)."""
        self.slices = task_slices(
            self.task,
            HEADLINE[self.task],
            self.predictions,
            self.references,
            pairs,
            slice_field,
            task.labels or None,
            numeric=numeric(task),
        )
        return self


def task_result(saved: dict) -> TaskResult:
    """A TaskResult back from its eval/*.json section (which may hold more, e.g. prompt_sensitivity). Files written
    before rows could have several references or numbers hold one string per row and no numbers: both still read."""
    names = {f.name for f in dataclasses.fields(TaskResult)}
    return TaskResult(**{k: v for k, v in saved.items() if k in names})


def read_prediction(text: str, task: TaskConfig) -> str | None:
    parse = task.parse
    if parse == "auto":
        parse = {"classification": "label", "qa": "first_line"}.get(task.type, "text")
    if parse == "label":
        return match_label(strip_prefix(text), task.labels)
    if parse == "number":
        return extract_number(text)
    if parse == "first_line":
        return strip_prefix(first_line(text))
    return text.strip()


def numeric(task: TaskConfig) -> bool:
    """Whether the task's answers are scored as numbers (`metrics.numeric_match`) rather than as text."""
    return task.type == "qa" and task.parse == "number"


def _reference(answers: Sequence[str], task: TaskConfig) -> str | list[str]:
    """What a row's prediction is scored against: its gold answers (with parse: number, the number in each), each
    once, in order; one string when there is one, else the list. Classification keeps the first: one label."""
    refs = [a.strip() for a in (answers[:1] if task.type == "classification" else answers)]
    if task.parse == "number":
        refs = [extract_number(r) or r for r in refs]
    refs = list(dict.fromkeys(refs))
    return refs[0] if len(refs) == 1 else refs


def _number(reference: str | list[str]) -> str | list[str | None] | None:
    if isinstance(reference, str):
        return number_text(number_value(reference))
    return [number_text(number_value(r)) for r in reference]


def run_task(
    model: nn.Module | None,
    renderer: Renderer,
    pairs: list[tuple[Example, DatasetSpec]],
    task: TaskConfig,
    batch_size: int,
    device: torch.device | None,
    generate: Callable[[list[list[int]], int, list[int]], list[str]] | None = None,
    progress: str | None = None,
) -> TaskResult:
    """Generate an answer for each held-out row (its first assistant turn) and score the predictions against every
    gold answer the row has (that turn's content, then the rest of `Example.references`). `generate(prompts,
    max_new_tokens, stop_ids)` answers instead of `model` where the model is not a torch module (an exported GGUF
    read by llama.cpp). `progress`: a bar of that name over the rows (eval/progress.batch_starts)."""
    pairs = pairs[: task.max_rows]
    prompts, references, inputs = [], [], []
    for example, spec in pairs:
        # The first assistant turn is both what is asked and what is scored, also for multi-turn rows.
        prompt, answer = renderer.first_turn(example, spec.system)
        prompts.append(renderer.prompt_ids(prompt))
        inputs.append(prompt[-1]["content"][:INPUT_CHARS])
        references.append(_reference([answer, *(example.references or [])], task))
    if generate is not None:
        generations = generate(prompts, task.max_new_tokens, renderer.stop_ids())
    else:
        generations = generate_sorted(
            model, renderer.tokenizer, prompts, task.max_new_tokens, batch_size, device, renderer.stop_ids(), progress
        )
    predictions = [read_prediction(g, task) for g in generations]
    labels = task.labels or None
    metrics = compute(task.type, predictions, references, labels, numeric(task))
    result = TaskResult(task.type, metrics, generations, predictions, references, inputs=inputs)
    if numeric(task):
        result.reference_numbers = [_number(r) for r in references]
        result.prediction_numbers = [number_text(number_value(p)) if p is not None else None for p in predictions]
    return result


def compare(base: TaskResult, tuned: TaskResult, task: TaskConfig, seed: int = 0) -> dict[str, dict]:
    """Tuned minus base for each headline metric, with a paired-bootstrap 95% interval and one-sided p-value."""
    out = {}
    for metric in HEADLINE[task.type]:
        diff = bootstrap_metric(
            task.type,
            metric,
            base.predictions,
            tuned.predictions,
            base.references,
            task.labels or None,
            n_resamples=task.bootstrap_resamples,
            seed=seed,
            numeric=numeric(task),
        )
        out[metric] = diff.as_dict()
    return out
