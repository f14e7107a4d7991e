"""The task section of eval/base.json and eval/tuned.json, the same for `tunesmith train` and `tunesmith eval`:
scores on the held-out rows, the same scores per slice, and (with task.prompt_variants) the prompt sensitivity."""

from __future__ import annotations

import torch
from torch import nn

from tunesmith.config import Config, DatasetSpec
from tunesmith.data.formats import Example
from tunesmith.data.templates import Renderer
from tunesmith.eval.tasks import run_task
from tunesmith.eval.variants import prompt_sensitivity


def score_task(
    model: nn.Module, renderer: Renderer, pairs: list[tuple[Example, DatasetSpec]], cfg: Config, device: torch.device
) -> dict:
    result = run_task(model, renderer, pairs, cfg.task, cfg.eval.batch_size, device, progress="task answers")
    result.add_slices(pairs, cfg.data.slice_field, cfg.task)
    out = result.to_json()
    if cfg.task.prompt_variants:
        out["prompt_sensitivity"] = prompt_sensitivity(
            model, renderer, pairs, cfg.task, result, cfg.eval.batch_size, device
        )
    return out
