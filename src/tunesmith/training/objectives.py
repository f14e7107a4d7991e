"""Training objectives plug into the one loop through a small protocol: given a batch, return summed loss parts.

Returning *sums* (not means) lets the loop normalise by the number of trained tokens across a whole
accumulation window, so a batch of 8 equals 2 accumulated micro-batches of 4 however the tokens fall.
For a classification head the unit is the row: its batches carry one class per row, and the same normalisation
averages the loss over the rows of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import unwrap
from tunesmith.training.chunked_ce import CE_CHUNK, Soft, linear_cross_entropy
from tunesmith.training.distributed import is_sharded


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) long, right-padded
    attention_mask: torch.Tensor  # (B, T) long, 0 on padding
    labels: torch.Tensor  # (B, T) long, IGNORE where untrained; or (B,) class indices for a classification head
    position_ids: torch.Tensor | None = None  # packed batches: positions restart at 0 for every row in a sequence
    # (B, T, K) beside labels: the base's top-K next tokens (-1: no teacher here) and log-probs, for data.replay.kl
    teacher_ids: torch.Tensor | None = None
    teacher_logp: torch.Tensor | None = None
    # A packed batch of class rows: (N,) flat indices (bin * T + position) of each row's last token, where a head
    # reads it; labels are then the (N,) class indices in the same order (training/packing.pack_classes).
    pool: torch.Tensor | None = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for the model's forward. A packed batch gives its positions and no padding mask: the
        restarts mark where rows begin, and attention keeps each row to itself (training/packing.py). No KV cache:
        nothing is generated, and transformers reads packed rows from the positions only when there is none."""
        if self.position_ids is None:
            return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "use_cache": False}
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "use_cache": False}

    @property
    def trained_tokens(self) -> int:
        """The units the loss is averaged over: trained tokens, or rows when each row carries one class."""
        if self.labels.ndim == 1:
            return int((self.labels != IGNORE).sum())
        # Labels are shifted by one inside the objective: position 0 is never a target.
        return int((self.labels[:, 1:] != IGNORE).sum())

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            move(self.position_ids),
            move(self.teacher_ids),
            move(self.teacher_logp),
            move(self.pool),
        )

    def with_teacher(self, placed: list[tuple[int, int, Encoded]]) -> Batch:
        """This batch with the teacher tensors of its rows that carry one; `placed`: (batch row, start, row) for
        every row. Position `start + p` holds the distribution over the token labelled there (as labels do)."""
        taught = [(b, start, row) for b, start, row in placed if row.teacher is not None]
        if not taught:
            return self
        top = len(taught[0][2].teacher[0][0])
        ids = torch.full((*self.labels.shape, top), -1, dtype=torch.long)
        logp = torch.zeros((*self.labels.shape, top), dtype=torch.float32)
        for b, start, row in taught:
            where = [start + p for p in row.target_positions]
            ids[b, where] = torch.tensor(row.teacher[0], dtype=torch.long)
            logp[b, where] = torch.tensor(row.teacher[1], dtype=torch.float32)
        return replace(self, teacher_ids=ids, teacher_logp=logp)


def _padded(rows: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the mask of real tokens, as wide as the longest row of this batch (dynamic padding)."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
        mask[i, : len(r.input_ids)] = 1
    return ids, mask


def collate(rows: list[Encoded], pad_id: int) -> Batch:
    """Rows with per-token labels, padded to the longest row of this batch; padding is never trained."""
    if any(r.target is not None for r in rows):
        raise ValueError("collate takes rows with per-token labels; rows that carry a class go to collate_classes")
    ids, mask = _padded(rows, pad_id)
    labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        labels[i, : len(r.labels)] = torch.tensor(r.labels)
    return Batch(ids, mask, labels).with_teacher([(i, 0, r) for i, r in enumerate(rows)])


def collate_classes(rows: list[Encoded], pad_id: int) -> Batch:
    """Rows that carry one class index each (data/classify.py): (B,) labels, so the batch counts rows, not tokens."""
    if any(r.target is None for r in rows):
        raise ValueError("collate_classes takes rows that carry a class index; token-labelled rows go to collate")
    ids, mask = _padded(rows, pad_id)
    return Batch(ids, mask, torch.tensor([r.target for r in rows], dtype=torch.long))


def make_batch(rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> Batch:
    """A causal-LM micro-batch: packed into sequences of at most `pack_to` tokens (training/packing.py), or padded
    to its longest row."""
    if pack_to is not None:
        from tunesmith.training.packing import pack

        return pack(rows, pad_id, pack_to)
    return collate(rows, pad_id)


@dataclass
class LossParts:
    loss_sum: torch.Tensor  # sum of per-token losses, differentiable
    tokens: int  # trained tokens the sum covers
    correct: int  # trained tokens whose argmax prediction is right


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Batch) -> LossParts: ...


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The decoder stack and the output projection of a causal LM (through a peft wrapper), when the model's
    logits are a plain projection of its last hidden state; None for models that post-process logits."""
    inner = unwrap(model)
    if is_sharded(inner):  # FSDP: only the root's own forward gathers the embeddings and the head
        return None
    config = getattr(inner, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    backbone = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if head is None or backbone is None or backbone is inner:
        return None
    return backbone, head


def decoder_and_score(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack and the `score` head of a sequence classifier (through a peft wrapper, whose trainable copy
    of the head the wrapper module serves), for a packed forward; a model laid out otherwise cannot pack."""
    inner = unwrap(model)
    backbone = getattr(inner, getattr(inner, "base_model_prefix", "") or "model", None)
    score = getattr(inner, "score", None)
    if is_sharded(inner) or not isinstance(backbone, nn.Module) or not isinstance(score, nn.Module):
        raise TunesmithError(
            f"train.packing: {type(inner).__name__} has no decoder and `score` head to read packed rows from "
            "(or is sharded); set train.packing=false"
        )
    return backbone, score


def head_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """A sequence classifier's logits, one row per sequence: a padded batch through the model's own forward (which
    pools each row's last real token), a packed one through the decoder once with the head reading the tokens
    `batch.pool` names."""
    if batch.pool is None:
        return model(**batch.model_inputs()).logits
    backbone, score = decoder_and_score(model)
    hidden = backbone(**batch.model_inputs()).last_hidden_state
    return score(hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.pool))


class CausalLMObjective:
    """Next-token cross-entropy on trained positions only.

    The output projection runs only on hidden states whose next token is trained, so prompt and padding positions
    cost no vocabulary-sized matmul. With `chunk` set (the default), the projection and the cross-entropy run
    `chunk` positions at a time with their gradients formed on the spot (training/chunked_ce.py), so no
    (tokens, vocab) logits tensor is kept at all; `chunk=None` is the plain projection (tunesmith verify compares
    the two).
    """

    def __init__(self, chunk: int | None = CE_CHUNK, kl: float = 0.0):
        self.chunk = chunk
        self.kl = kl  # data.replay.kl: weight of KL(base || model) on positions that carry the base's distribution

    def __call__(self, model: nn.Module, batch: Batch) -> LossParts:
        targets = batch.labels[:, 1:]
        keep = targets != IGNORE
        wanted = targets[keep]
        soft = None
        if self.kl and batch.teacher_ids is not None:
            soft = Soft(batch.teacher_ids[:, 1:][keep], batch.teacher_logp[:, 1:][keep], self.kl)
        parts = backbone_and_head(model)
        if parts is None:
            logits = model(**batch.model_inputs()).logits[:, :-1][keep]
        else:
            backbone, head = parts
            hidden = backbone(**batch.model_inputs()).last_hidden_state[:, :-1][keep]
            if self.chunk is not None and isinstance(head, nn.Linear) and head.bias is None:
                loss_sum, correct = linear_cross_entropy(hidden, head.weight, wanted, self.chunk, soft)
                return LossParts(loss_sum, int(wanted.numel()), correct)
            logits = head(hidden)
        logits = logits.float()
        loss_sum = F.cross_entropy(logits, wanted, reduction="sum")
        if soft is not None:
            log_q = torch.log_softmax(logits, -1)
            taught = soft.terms(log_q, torch.zeros_like(log_q[:, 0]))
            loss_sum = loss_sum if taught is None else loss_sum + taught[0]
        correct = int((logits.detach().argmax(-1) == wanted).sum())
        return LossParts(loss_sum, int(wanted.numel()), correct)


class ClassificationObjective:
    """One class per row, from a sequence-classification model (transformers' *ForSequenceClassification, through
    a peft wrapper or not): cross-entropy or focal loss, with optional class weights and label smoothing.

    On a padded batch the model pools its own logits (the last token that is not the pad id), so the loss is
    computed on exactly what `final/` returns at inference with plain transformers. On a packed batch (several rows
    per sequence, positions restarting per row: training/packing.pack_classes) the decoder runs once over the packed
    rows, each attending only to itself, and the score head reads each row's last token (`Batch.pool`): the same
    hidden states and head as the padded forward, without computing the padding (`tunesmith verify` and the tests
    compare the two). The score head is K wide, so its logits cost nothing next to the decoder. Class weights scale
    each row's loss by the weight of its class (torch's `weight`); the loop divides the sum by the rows of the
    window, not by the summed weights, so accumulation stays exact and balanced weights (mean 1 over the training
    rows) keep the loss on the unweighted scale.
    """

    def __init__(
        self,
        class_weights: torch.Tensor | None = None,
        loss: Literal["ce", "focal"] = "ce",
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
    ):
        self.class_weights = class_weights
        self.loss = loss
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, batch: Batch) -> LossParts:
        return self.loss_parts(head_logits(model, batch), batch.labels)

    def loss_parts(self, logits: torch.Tensor, targets: torch.Tensor) -> LossParts:
        """Summed loss of (N, K) logits against (N,) class indices."""
        logits = logits.float()
        weight = None if self.class_weights is None else self.class_weights.to(logits.device, torch.float32)
        per_row = F.cross_entropy(
            logits, targets, weight=weight, label_smoothing=self.label_smoothing, reduction="none"
        )
        if self.loss == "focal":
            # Focal loss (Lin et al. 2017): scale each row's (weighted, smoothed) cross-entropy by (1 - p_true)^gamma,
            # so rows the model already gets right count less. gamma = 0 gives cross-entropy exactly (x^0 = 1).
            p_true = logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1).exp()
            per_row = (1 - p_true).pow(self.focal_gamma) * per_row
        correct = int((logits.detach().argmax(-1) == targets).sum())
        return LossParts(per_row.sum(), int(targets.numel()), correct)
