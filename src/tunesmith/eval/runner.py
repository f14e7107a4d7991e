"""Held-out evaluation: loss, perplexity and token accuracy on trained tokens, and side-by-side answers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tunesmith.data.templates import Encoded
from tunesmith.eval.prefix import shared_generate, worth_sharing
from tunesmith.eval.progress import batch_starts
from tunesmith.training.objectives import Objective, make_batch


@dataclass
class LossEval:
    loss: float  # mean cross-entropy per trained token
    perplexity: float
    token_accuracy: float
    tokens: int
    rows: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    rows: list[Encoded],
    objective: Objective,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    pack_to: int | None = None,
) -> LossEval:
    """Token-weighted over the whole set (not a mean of batch means), in a length-sorted order to pad little;
    with `pack_to`, each batch is packed as in training (the same loss, fewer padding tokens)."""
    was_training = model.training
    model.eval()
    ordered = sorted(rows, key=lambda r: len(r.input_ids))
    loss_sum, tokens, correct = 0.0, 0, 0
    for i in range(0, len(ordered), batch_size):
        parts = objective(model, make_batch(ordered[i : i + batch_size], pad_id, pack_to).to(device))
        loss_sum += float(parts.loss_sum)
        tokens += parts.tokens
        correct += parts.correct
    model.train(was_training)
    loss = loss_sum / max(1, tokens)
    return LossEval(loss, math.exp(min(loss, 50.0)), correct / max(1, tokens), tokens, len(rows))


@torch.no_grad()
def generate_answers(
    model: nn.Module,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    device: torch.device,
    stop_ids: list[int] | None = None,
) -> list[str]:
    """Greedy answers to prompts given as token ids (deterministic, so base and tuned compare fairly).

    All prompts go through generate() as one left-padded batch: on a CPU that costs little more than one prompt.
    """
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stop_ids or tokenizer.eos_token_id,
        pad_token_id=pad,
    )
    model.train(was_training)
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]


def generate_answer(
    model: nn.Module,
    tokenizer,
    prompt_ids: list[int],
    max_new_tokens: int,
    device: torch.device,
    stop_ids: list[int] | None = None,
) -> str:
    return generate_answers(model, tokenizer, [prompt_ids], max_new_tokens, device, stop_ids)[0]


def generate_sorted(
    model: nn.Module,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    stop_ids: list[int] | None = None,
    progress: str | None = None,
) -> list[str]:
    """`generate_answers` over many prompts in batches of similar length (left padding in a batch costs compute on
    every generated token); the answers come back in the prompts' order. `progress`: batch_starts's bar. Prompts
    that share most of their tokens (few-shot) are read through a shared prefix instead (eval/prefix.py)."""
    if worth_sharing(model, prompts):
        return shared_generate(model, tokenizer, prompts, max_new_tokens, device, stop_ids, progress)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers = [""] * len(prompts)
    for start in batch_starts(len(order), batch_size, progress):
        chunk = order[start : start + batch_size]
        batch = generate_answers(model, tokenizer, [prompts[i] for i in chunk], max_new_tokens, device, stop_ids)
        for i, answer in zip(chunk, batch, strict=True):
            answers[i] = answer
    return answers
