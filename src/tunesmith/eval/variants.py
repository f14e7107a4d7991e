"""Prompt sensitivity: the task scored again under paraphrased prompts, reported as mean and spread.

    task:
      prompt_variants:
        - "{prompt}\\n\\nAnswer in one word."             # {prompt}: the row's own prompt text
        - "Review: {sentence}\\nSentiment:"               # {column}: a source column, as in a dataset template

The configured prompt is the first template; each variant replaces the text of the row's first user turn (the
system message and chat template stay). A fine-tuned model's scores are known to move with the wording of the
prompt; a spread as large as the base-vs-tuned difference says the difference is not robust.
"""

from __future__ import annotations

import dataclasses
import statistics

import torch
from torch import nn

from tunesmith.config import DatasetSpec, Kind, TaskConfig
from tunesmith.data.formats import Example, is_str_list
from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.tasks import HEADLINE, TaskResult, run_task

CONFIGURED = "(configured prompt)"


class VariantError(TunesmithError, ValueError):
    """A prompt variant that cannot be filled from a row (a placeholder the row lacks)."""


def _prompt_text(example: Example) -> str:
    if example.kind is Kind.chat:
        return next(m["content"] for m in example.messages or [] if m["role"] == "user")
    if example.kind is Kind.classification:
        return example.text or ""
    return example.prompt or ""


def with_prompt(example: Example, variant: str) -> Example:
    """The row with its first user turn rewritten by `variant` ({prompt} and source columns)."""
    row = example.row or {}
    # As in dataset templates, a list of strings fills its placeholder line by line (other lists stay as they are).
    values = {k: "\n".join(v) if is_str_list(v) else v for k, v in row.items()}
    values["prompt"] = _prompt_text(example)
    try:
        text = variant.format_map(values)
    except KeyError as err:
        raise VariantError(
            f"task.prompt_variants: {variant!r} uses {{{err.args[0]}}}, which {example.source}:{example.line} "
            f"lacks (columns: {', '.join(values)})"
        ) from None
    if example.kind is Kind.chat:
        messages = [dict(m) for m in example.messages or []]
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first_user]["content"] = text
        return dataclasses.replace(example, messages=messages)
    if example.kind is Kind.classification:
        return dataclasses.replace(example, text=text)
    return dataclasses.replace(example, prompt=text)


def check_variants(pairs: list[tuple[Example, DatasetSpec]], variants: list[str]) -> None:
    """Fill every variant from every scored row now, so a bad placeholder stops the run before training."""
    for example, _ in pairs:
        for variant in variants:
            with_prompt(example, variant)


def prompt_sensitivity(
    model: nn.Module,
    renderer: Renderer,
    pairs: list[tuple[Example, DatasetSpec]],
    task: TaskConfig,
    configured: TaskResult,
    batch_size: int,
    device: torch.device,
) -> dict:
    """Headline metrics under the configured prompt (`configured`, already scored) and each variant."""
    templates = [CONFIGURED, *task.prompt_variants]
    scores = {metric: [configured.metrics[metric]] for metric in HEADLINE[task.type]}
    for variant in task.prompt_variants:
        rewritten = [(with_prompt(ex, variant), spec) for ex, spec in pairs[: task.max_rows]]
        result = run_task(model, renderer, rewritten, task, batch_size, device)
        for metric in scores:
            scores[metric].append(result.metrics[metric])
    return {
        "templates": templates,
        "scores": scores,
        "mean": {m: statistics.fmean(v) for m, v in scores.items()},
        "std": {m: statistics.pstdev(v) for m, v in scores.items()},
        "range": {m: max(v) - min(v) for m, v in scores.items()},
    }
