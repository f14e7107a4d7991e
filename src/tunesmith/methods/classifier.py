"""A classification head (`method: {type: classifier}`): the base as a K-way sequence classifier, trained on
(text, label) rows with cross-entropy or focal loss.

    tunesmith train examples/davidson-head.yaml     # method: {type: classifier}; task: {type: classification, ...}

Rows are encoded as (input ids, class index) (data/classify.py); a batch counts rows, not tokens. With
train.packing (the default) a micro-batch's rows are packed into sequences of data.max_length tokens, each row
attending only to itself, and the head reads each row's last token; evaluation runs padded batches through the
model's own forward, as `final/` does with plain transformers.
The loop, checkpoints and resume are shared with every method. The base is measured twice on the same held-out
rows: with its untrained head (chance level: where the loss curve starts) and as the plain causal LM, by generation
and by label likelihood, zero- and few-shot (eval/baselines.py); the strongest of those is the baseline the tuned
head's accuracy is compared with (paired bootstrap), since an untrained head is no baseline at all. The majority
class is shown beside it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import ClassifierMethod, Config, DatasetSpec, Kind, TrainConfig
from tunesmith.data.classify import HeadEncoder, head_text
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.baselines import baseline_line, score_baselines, tuned_comparison
from tunesmith.eval.metrics import compute
from tunesmith.eval.predict import evaluate_head
from tunesmith.eval.tasks import INPUT_CHARS, TaskResult, run_task
from tunesmith.faults import fault
from tunesmith.methods.base import EvalContext
from tunesmith.models.loading import LoadedBase, load_classifier, save_classifier_base, save_weights
from tunesmith.models.registry import is_run_dir
from tunesmith.rundir import RunDir
from tunesmith.training.objectives import Batch, ClassificationObjective, collate_classes
from tunesmith.training.packing import pack_classes

ZERO_SHOT = (
    "zero-shot generation: the base causal LM answers each held-out input, followed by the list of labels, greedily; "
    "the label is read from its answer"
)
HEAD = "classification head: the tuned model's most probable label"
# How reports name a head's held-out metrics: "accuracy" is per row, and no perplexity is shown.
METRIC_NAMES = {"loss": "head eval loss (cross-entropy)", "token_accuracy": "head accuracy (rows)"}


def zero_shot_suffix(labels: list[str]) -> str:
    """Appended to each input for the zero-shot baseline: a generative model must be told the label words."""
    return f"\n\nAnswer with one of: {', '.join(labels)}."


def balanced_weights(classes: list[int], labels: list[str]) -> list[float]:
    """n / (K * count_k) per class (scikit-learn's "balanced"): every class then carries the same total weight."""
    counts = Counter(classes)
    missing = [label for i, label in enumerate(labels) if not counts[i]]
    if missing:
        raise TunesmithError(
            f"method.class_weights=balanced: label(s) {', '.join(missing)} have no training rows, so n / (K * count) "
            "is undefined; add rows for them, drop them from the labels, or set method.class_weights=none"
        )
    return [len(classes) / (len(labels) * counts[i]) for i in range(len(labels))]


class Classifier:
    generative = False
    peft_task_type = "SEQ_CLS"
    # The causal LM's speed options that apply to a decoder read by a K-wide head (it has no vocabulary loss to chunk).
    speed_options = ("packing", "activation_checkpointing", "compile")
    trains_every_row = True  # every row that encodes carries a class; rows that do not stop the run before the audit

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.settings: ClassifierMethod = cfg.method  # type: ignore[assignment]
        self.labels = self.settings.labels
        self.class_weights: dict[str, float] | None = None  # balanced weights, once the objective is built

    def encoder(self, renderer: Renderer) -> HeadEncoder:
        return HeadEncoder(renderer, self.labels)

    def packs(self, train: TrainConfig) -> bool:
        # Packed rows, the head reading each row's last token (training/objectives.ClassificationObjective). FSDP
        # gathers weights only through the model's own forward, which pools one row per sequence.
        return train.packing and train.distributed != "fsdp"

    def make_batch(self, rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> Batch:
        return collate_classes(rows, pad_id) if pack_to is None else pack_classes(rows, pad_id, pack_to)

    def attach(self, prepared, base: LoadedBase, device: torch.device, autocast, log) -> None:
        """Nothing to read before training: the rows are complete."""

    def build_model(self, base: LoadedBase, out: RunDir | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """The base weights as a K-way classifier (a fresh head, drawn from torch's seed). Continuing from a finished
        run, its merged weights are written to out/base first (the classifier is loaded from a folder); for LoRA
        out/base is also the folder the adapter is saved against."""
        from_run = is_run_dir(base.resolved.path)
        if out is not None and from_run:
            base.model.save_pretrained(out.base)
            base.tokenizer.save_pretrained(out.base)
            base.model.name_or_path = str(out.base.resolve())
            base.model.config._name_or_path = base.model.name_or_path
        source = out.base if out is not None and from_run else base.weights_dir
        pad_id = base.tokenizer.pad_token_id
        model = load_classifier(source, self.labels, pad_id, device, dtype, self.cfg.model.trust_remote_code)
        if out is not None and self.cfg.adapter.method == "lora":
            save_classifier_base(model, source, out.base, base.tokenizer)
        return model

    def objective(
        self, train: list[Encoded], log: Callable[[str], object], chunk: int | None = None
    ) -> ClassificationObjective:
        """The head's loss from the config; balanced class weights are computed from the training labels and logged."""
        method, weights = self.settings, None
        if method.class_weights == "balanced":
            weights = balanced_weights([r.target for r in train], self.labels)
            shown = ", ".join(f"{label} {w:.4f}" for label, w in zip(self.labels, weights, strict=True))
            log(f"class weights (balanced, n / (K * count)): {shown}")
            self.class_weights = dict(zip(self.labels, weights, strict=True))
        self._objective = ClassificationObjective(
            torch.tensor(weights) if weights else None, method.loss, method.focal_gamma, method.label_smoothing
        )
        return self._objective

    def _scored(self, model: nn.Module, ctx: EvalContext):
        batch = ctx.cfg.eval.batch_size
        return evaluate_head(model, ctx.prepared.eval, self._objective, self.labels, batch, ctx.pad_id, ctx.device)

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict:
        fault("eval")
        return self._scored(model, ctx).metrics

    def base_eval(self, model: nn.Module, base_lm: nn.Module, ctx: EvalContext) -> dict:
        """eval/base.json of a head run: the untrained head's metrics, the zero-shot generation baseline (`task`)
        and the causal LM's other baselines (eval/baselines.py: label likelihood, few-shot, trivial)."""
        cfg, prepared = ctx.cfg, ctx.prepared
        metrics = self._scored(model, ctx).metrics
        suffix = zero_shot_suffix(self.labels)
        rows = _task_rows(ctx)
        prompts = _as_prompts(rows, suffix)
        zero_shot = run_task(base_lm, ctx.renderer, prompts, cfg.task, cfg.eval.batch_size, ctx.device)
        zero_shot.add_slices(rows, cfg.data.slice_field, cfg.task)
        # The causal LM's other baselines (label likelihood, few-shot) on the same prompts; shots from training rows.
        train = _as_prompts(prepared.train_examples, suffix)
        batch, seed, slice_field = cfg.eval.batch_size, cfg.train.seed, cfg.data.slice_field
        baselines = score_baselines(
            base_lm, ctx.renderer, prompts, train, cfg.task, zero_shot, batch, ctx.device, seed, slice_field
        )
        samples = [
            {"prompt": _input_text(ex), "reference": ref, "answer": answer}
            for (ex, _), ref, answer in zip(
                prepared.eval_examples, zero_shot.references, zero_shot.generations, strict=False
            )
        ][: cfg.eval.samples]
        result = {
            "model": cfg.model.base,
            "objective": "head",
            "metrics": metrics,
            "metric_names": METRIC_NAMES,
            "metrics_method": "the base model with its untrained (randomly initialised) head: chance level",
            "task": zero_shot.to_json(),
            "task_method": ZERO_SHOT,
            "task_prompt_suffix": suffix,
            **baselines,
            "head": self._head_settings(),
            "samples": samples,
        }
        ctx.log(
            f"base model: untrained head eval loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}; "
            f"zero-shot generation accuracy {result['task']['metrics']['accuracy']:.4f}"
        )
        ctx.log(baseline_line(result, "classification"))
        return result

    def tuned_eval(self, model: nn.Module, base_eval: dict, final: Path, ctx: EvalContext) -> dict:
        """eval/tuned.json of a head run: its metrics, its predictions on the baseline's rows, and the comparison."""
        cfg, labels = ctx.cfg, self.labels
        scored = self._scored(model, ctx)
        rows = _task_rows(ctx)
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
            "metric_names": METRIC_NAMES,
            "task": task.to_json(),
            "task_method": HEAD,
            **tuned_comparison(base_eval, task.to_json(), cfg.task, cfg.train.seed),
            "comparison_method": f"tuned = {HEAD}; base = the strongest of the base's baselines (eval/base.json)",
            "head": base_eval.get("head"),
            "samples": samples,
        }

    def write_final(
        self,
        model: nn.Module,
        tokenizer,
        folder: Path,
        stop_ids: list[int],
        initial: Path | None = None,
        state: dict | None = None,
    ) -> None:
        """The classifier (or its adapter over out/base) and the tokenizer; a head generates nothing."""
        save_weights(model, folder, initial, state)
        tokenizer.save_pretrained(folder)

    def _head_settings(self) -> dict:
        method = self.settings
        return {
            "labels": self.labels,
            "loss": method.loss,
            "focal_gamma": method.focal_gamma if method.loss == "focal" else None,
            "label_smoothing": method.label_smoothing,
            "class_weights": self.class_weights,
        }


def _task_rows(ctx: EvalContext) -> list[tuple[Example, DatasetSpec]]:
    return ctx.prepared.eval_examples[: ctx.cfg.task.max_rows]


def _input_text(example: Example) -> str:
    return head_text(example)[0]


def _as_prompts(rows: list[tuple[Example, DatasetSpec]], suffix: str) -> list[tuple[Example, DatasetSpec]]:
    """Classification rows as the prompt the causal LM is asked (the input and the label list) and its label."""
    out = []
    for example, spec in rows:
        text, label, _ = head_text(example)
        # replace() keeps the source row, which slices read.
        prompt = dataclasses.replace(example, kind=Kind.completion, prompt=text + suffix, completion=label)
        out.append((prompt, spec))
    return out
