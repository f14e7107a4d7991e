"""The classification-head side of a run (task.objective: head): classifier, loss, and base-vs-tuned evaluation.

    tunesmith train examples/davidson-head.yaml     # task: {type: classification, objective: head, labels: [...]}

`recipe.run_training` calls these where a head run differs from a causal-LM run; the loop, checkpoints and resume
are shared. The base is measured twice on the same held-out rows: with its untrained head (chance level: where the
loss curve starts) and as the plain causal LM, by generation and by label likelihood, zero- and few-shot
(eval/baselines.py); the strongest of those is the baseline the tuned head's accuracy is compared with (paired
bootstrap), since an untrained head is no baseline at all. The majority class is shown beside it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import Config, DatasetSpec, Kind, TaskConfig
from tunesmith.data.classify import head_text
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.baselines import score_baselines, tuned_comparison
from tunesmith.eval.metrics import compute
from tunesmith.eval.predict import evaluate_head
from tunesmith.eval.tasks import INPUT_CHARS, TaskResult, run_task
from tunesmith.models.loading import LoadedBase, load_classifier, save_classifier_base
from tunesmith.models.registry import is_run_dir
from tunesmith.training.objectives import ClassificationObjective
from tunesmith.training.prepare import Prepared

ZERO_SHOT = (
    "zero-shot generation: the base causal LM answers each held-out input, followed by the list of labels, greedily; "
    "the label is read from its answer"
)
HEAD = "classification head: the tuned model's most probable label"


def zero_shot_suffix(labels: list[str]) -> str:
    """Appended to each input for the zero-shot baseline: a generative model must be told the label words."""
    return f"\n\nAnswer with one of: {', '.join(labels)}."


def balanced_weights(classes: list[int], labels: list[str]) -> list[float]:
    """n / (K * count_k) per class (scikit-learn's "balanced"): every class then carries the same total weight."""
    counts = Counter(classes)
    missing = [label for i, label in enumerate(labels) if not counts[i]]
    if missing:
        raise TunesmithError(
            f"task.class_weights=balanced: label(s) {', '.join(missing)} have no training rows, so n / (K * count) "
            "is undefined; add rows for them, drop them from task.labels, or set task.class_weights=none"
        )
    return [len(classes) / (len(labels) * counts[i]) for i in range(len(labels))]


def build_objective(
    task: TaskConfig, train: list[Encoded], log: Callable[[str], object]
) -> tuple[ClassificationObjective, dict[str, float] | None]:
    """The head's loss from the config; balanced class weights are computed from the training labels and logged."""
    weights = None
    if task.class_weights == "balanced":
        weights = balanced_weights([r.target for r in train], task.labels)
        shown = ", ".join(f"{label} {w:.4f}" for label, w in zip(task.labels, weights, strict=True))
        log(f"class weights (balanced, n / (K * count)): {shown}")
    objective = ClassificationObjective(
        torch.tensor(weights) if weights else None, task.loss, task.focal_gamma, task.label_smoothing
    )
    return objective, dict(zip(task.labels, weights, strict=True)) if weights else None


def build_classifier(cfg: Config, base: LoadedBase, out: Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The base weights as a K-way classifier; for LoRA also `out/base`, the folder the adapter is saved against
    (the recipe has already written the merged weights there when the base is a finished run)."""
    source = out / "base" if is_run_dir(base.resolved.path) else base.weights_dir
    pad_id = base.tokenizer.pad_token_id
    model = load_classifier(source, cfg.task.labels, pad_id, device, dtype, cfg.model.trust_remote_code)
    if cfg.adapter.method == "lora":
        save_classifier_base(model, source, out / "base", base.tokenizer)
    return model


def _task_rows(prepared: Prepared, task: TaskConfig) -> list[tuple[Example, DatasetSpec]]:
    return prepared.eval_examples[: task.max_rows]


def _input_text(example: Example) -> str:
    return head_text(example)[0]


def base_eval(
    model: nn.Module,
    causal_lm: nn.Module,
    renderer: Renderer,
    prepared: Prepared,
    cfg: Config,
    objective: ClassificationObjective,
    class_weights: dict[str, float] | None,
    pad_id: int,
    device: torch.device,
) -> dict:
    """eval/base.json of a head run: the untrained head's metrics, the zero-shot generation baseline (`task`) and
    the causal LM's other baselines (eval/baselines.py: label likelihood, few-shot, trivial)."""
    metrics = evaluate_head(
        model, prepared.eval, objective, cfg.task.labels, cfg.eval.batch_size, pad_id, device
    ).metrics
    suffix = zero_shot_suffix(cfg.task.labels)
    prompts = _as_prompts(_task_rows(prepared, cfg.task), suffix)
    zero_shot = run_task(causal_lm, renderer, prompts, cfg.task, cfg.eval.batch_size, device)
    zero_shot.add_slices(_task_rows(prepared, cfg.task), cfg.data.slice_field, cfg.task)
    # The causal LM's other baselines (label likelihood, few-shot) on the same prompts; shots from training rows.
    train = _as_prompts(prepared.train_examples, suffix)
    batch, seed, slice_field = cfg.eval.batch_size, cfg.train.seed, cfg.data.slice_field
    baselines = score_baselines(
        causal_lm, renderer, prompts, train, cfg.task, zero_shot, batch, device, seed, slice_field
    )
    samples = [
        {"prompt": _input_text(ex), "reference": ref, "answer": answer}
        for (ex, _), ref, answer in zip(
            prepared.eval_examples, zero_shot.references, zero_shot.generations, strict=False
        )
    ][: cfg.eval.samples]
    return {
        "model": cfg.model.base,
        "objective": "head",
        "metrics": metrics,
        "metrics_method": "the base model with its untrained (randomly initialised) head: chance level",
        "task": zero_shot.to_json(),
        "task_method": ZERO_SHOT,
        "task_prompt_suffix": suffix,
        **baselines,
        "head": _head_settings(cfg.task, class_weights),
        "samples": samples,
    }


def tuned_eval(
    model: nn.Module,
    prepared: Prepared,
    cfg: Config,
    objective: ClassificationObjective,
    base: dict,
    final: Path,
    pad_id: int,
    device: torch.device,
) -> dict:
    """eval/tuned.json of a head run: its metrics, its predictions on the baseline's rows, and the comparison."""
    labels = cfg.task.labels
    scored = evaluate_head(model, prepared.eval, objective, labels, cfg.eval.batch_size, pad_id, device)
    rows = _task_rows(prepared, cfg.task)
    probs = scored.logits[: len(rows)].softmax(-1)
    predictions = [labels[i] for i in probs.argmax(-1).tolist()]
    references = [head_text(ex)[1] for ex, _ in rows]
    metrics = compute("classification", predictions, references, labels)
    task = TaskResult(
        "classification",
        metrics,
        generations=predictions,
        predictions=predictions,
        references=references,
        inputs=[_input_text(ex)[:INPUT_CHARS] for ex, _ in rows],
    ).add_slices(rows, cfg.data.slice_field, cfg.task)
    samples = [
        {"prompt": _input_text(ex), "reference": ref, "answer": f"{pred} (p={float(p.max()):.2f})"}
        for (ex, _), ref, pred, p in zip(rows, references, predictions, probs, strict=True)
    ][: cfg.eval.samples]
    return {
        "model": str(final),
        "objective": "head",
        "metrics": scored.metrics,
        "task": task.to_json(),
        "task_method": HEAD,
        **tuned_comparison(base, task.to_json(), cfg.task, cfg.train.seed),
        "comparison_method": f"tuned = {HEAD}; base = the strongest of the base's baselines (eval/base.json)",
        "head": base.get("head"),
        "samples": samples,
    }


def _as_prompts(rows: list[tuple[Example, DatasetSpec]], suffix: str) -> list[tuple[Example, DatasetSpec]]:
    """Classification rows as the prompt the causal LM is asked (the input and the label list) and its label."""
    out = []
    for example, spec in rows:
        text, label, _ = head_text(example)
        # replace() keeps the source row, which slices read.
        prompt = dataclasses.replace(example, kind=Kind.completion, prompt=text + suffix, completion=label)
        out.append((prompt, spec))
    return out


def _head_settings(task: TaskConfig, class_weights: dict[str, float] | None) -> dict:
    return {
        "labels": task.labels,
        "loss": task.loss,
        "focal_gamma": task.focal_gamma if task.loss == "focal" else None,
        "label_smoothing": task.label_smoothing,
        "class_weights": class_weights,
    }
