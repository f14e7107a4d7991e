"""Chat with a finished run: `tunesmith generate RUN --prompt "..."`."""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.runner import generate_answer
from tunesmith.models.loading import load_tokenizer, loading, pick_device


def load_final(run: str | Path, device: torch.device):
    """(model, tokenizer) of a run's final/ folder: an adapter on its base, or a full model."""
    from transformers import AutoModelForCausalLM

    path = Path(run)
    final = path / "final" if (path / "final").is_dir() else path
    if not (final / "config.json").is_file() and not (final / "adapter_config.json").is_file():
        raise TunesmithError(f"{run}: no finished model here (expected final/ with adapter_config.json or config.json)")
    with loading(final):
        if (final / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(final)
        else:
            model = AutoModelForCausalLM.from_pretrained(final)
    return model.to(device).eval(), load_tokenizer(final)


def chat_with_run(run: str, prompt: str, system: str | None = None, max_new_tokens: int = 256) -> str:
    device = pick_device()
    model, tokenizer = load_final(run, device)
    renderer = Renderer(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return generate_answer(model, tokenizer, renderer.prompt_ids(messages), max_new_tokens, device, renderer.stop_ids())
