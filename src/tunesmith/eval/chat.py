"""Chat with a finished run: `tunesmith generate RUN --prompt "..."`, prompted as the run was trained."""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.errors import TunesmithError
from tunesmith.eval.runner import generate_answer
from tunesmith.models.loading import load_tokenizer, loading, pick_device
from tunesmith.models.trained import TrainedSettings


def final_dir(run: str | Path) -> Path:
    """A run's final/ folder (or the folder itself when it is a finished model)."""
    path = Path(run)
    return path / "final" if (path / "final").is_dir() else path


def load_final(run: str | Path, device: torch.device, dtype: torch.dtype | None = None):
    """(model, tokenizer) of a run's final/ folder: an adapter on its base, or a full model, in `dtype` (default:
    the run's own scoring dtype, the one its base is scored in too)."""
    from transformers import AutoModelForCausalLM

    final = final_dir(run)
    if not (final / "config.json").is_file() and not (final / "adapter_config.json").is_file():
        raise TunesmithError(f"{run}: no finished model here (expected final/ with adapter_config.json or config.json)")
    dtype = dtype or TrainedSettings.of_run(final).weight_dtype(device)
    with loading(final):
        if (final / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(final, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(final, dtype=dtype)
    return model.to(device).eval(), load_tokenizer(final)


def chat_prompt_ids(run: str | Path, tokenizer, prompt: str, system: str | None = None) -> list[int]:
    """The prompt ids `generate` sends: the run's prompt format, and its training system message unless `system`
    replaces it."""
    renderer = TrainedSettings.of_run(final_dir(run)).renderer(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return renderer.prompt_ids(messages)


def chat_with_run(run: str, prompt: str, system: str | None = None, max_new_tokens: int = 256) -> str:
    device = pick_device()
    model, tokenizer = load_final(run, device)
    renderer = TrainedSettings.of_run(final_dir(run)).renderer(tokenizer)
    ids = chat_prompt_ids(run, tokenizer, prompt, system)
    return generate_answer(model, tokenizer, ids, max_new_tokens, device, renderer.stop_ids())
