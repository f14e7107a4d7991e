"""Training objectives plug into the one loop through a small protocol: given a batch, return summed loss parts.

Returning *sums* (not means) lets the loop normalise by the number of trained tokens across a whole
accumulation window, so a batch of 8 equals 2 accumulated micro-batches of 4 however the tokens fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.data.templates import IGNORE, Encoded


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) long, right-padded
    attention_mask: torch.Tensor  # (B, T) long, 0 on padding
    labels: torch.Tensor  # (B, T) long, IGNORE where untrained

    @property
    def trained_tokens(self) -> int:
        # Labels are shifted by one inside the objective: position 0 is never a target.
        return int((self.labels[:, 1:] != IGNORE).sum())

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(rows: list[Encoded], pad_id: int) -> Batch:
    """Pad to the longest row of this batch only (dynamic padding)."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(r.labels)
    return Batch(ids, mask, labels)


@dataclass
class LossParts:
    loss_sum: torch.Tensor  # sum of per-token losses, differentiable
    tokens: int  # trained tokens the sum covers
    correct: int  # trained tokens whose argmax prediction is right


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Batch) -> LossParts: ...


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The decoder stack and the output projection of a causal LM (through a peft wrapper), when the model's
    logits are a plain projection of its last hidden state; None for models that post-process logits."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    backbone = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if head is None or backbone is None or backbone is inner:
        return None
    return backbone, head


class CausalLMObjective:
    """Next-token cross-entropy on trained positions only.

    The output projection runs only on hidden states whose next token is trained, so prompt and padding positions
    cost no vocabulary-sized matmul and the full (B, T, V) logits tensor is never built.
    """

    def __call__(self, model: nn.Module, batch: Batch) -> LossParts:
        targets = batch.labels[:, 1:]
        keep = targets != IGNORE
        parts = _backbone_and_head(model)
        if parts is None:
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1][keep]
        else:
            backbone, head = parts
            hidden = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            logits = head(hidden[:, :-1][keep])
        logits = logits.float()
        wanted = targets[keep]
        loss_sum = F.cross_entropy(logits, wanted, reduction="sum")
        correct = int((logits.detach().argmax(-1) == wanted).sum())
        return LossParts(loss_sum, int(wanted.numel()), correct)
