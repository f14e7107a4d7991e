"""Chat with a finished run: `tunesmith generate RUN --prompt "..."`, prompted as the run was trained."""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.errors import TunesmithError
from tunesmith.eval.runner import generate_answer
from tunesmith.models.loading import pick_device
from tunesmith.models.trained import TrainedSettings, load_run, model_kind
from tunesmith.rundir import RunDir


def load_final(run: str | Path, device: torch.device, dtype: torch.dtype | None = None):
    """(model, tokenizer) of a run's final/ folder: an adapter on its base, or a full model, in `dtype` (default:
    the run's own scoring dtype, the one its base is scored in too). A classifier run has no answers to generate."""
    run_dir = RunDir.at(run)
    if model_kind(run_dir.model_dir) == "classifier":
        raise TunesmithError(f"{run}: a classification run answers with labels; classify with `tunesmith predict`")
    trained = load_run(run_dir, device, dtype)
    return trained.model, trained.tokenizer


def chat_prompt_ids(run: str | Path, tokenizer, prompt: str, system: str | None = None) -> list[int]:
    """The prompt ids `generate` sends: the run's prompt format, and its training system message unless `system`
    replaces it."""
    renderer = TrainedSettings.of_run(RunDir.at(run)).renderer(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return renderer.prompt_ids(messages)


def chat_with_run(run: str, prompt: str, system: str | None = None, max_new_tokens: int = 256) -> str:
    device = pick_device()
    model, tokenizer = load_final(run, device)
    renderer = TrainedSettings.of_run(RunDir.at(run)).renderer(tokenizer)
    ids = chat_prompt_ids(run, tokenizer, prompt, system)
    return generate_answer(model, tokenizer, ids, max_new_tokens, device, renderer.stop_ids())
