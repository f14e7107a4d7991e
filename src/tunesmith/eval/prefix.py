"""Shared-prefix reading: prompts that begin alike are read once, through the model's key/value cache.

    if worth_sharing(model, [row.input_ids for row in rows]):
        scored = shared_logprobs(model, rows, device)        # what sequence_logprobs computes, row by row
        answers = shared_generate(model, tokenizer, prompts, max_new_tokens, device, stop_ids)

A few-shot baseline puts the same k training rows in front of every held-out row, and label likelihood scores every
label after the same prompt. Read as independent sequences, those shared tokens are read again for each row and each
label: pubmedqa's label-likelihood few-shot baseline is 3 labels after prompts of up to 3,000 tokens, nearly all of
them the same four shots, and it was most of the hour its base evaluation took on one core.

Here the rows are visited in token order, so that neighbours share their longest prefix, one row at a time. The
cache holds the tokens read so far; each row reads only what it does not share with the one before, and the cache is
cut back to the common part first (transformers' DynamicCache.crop). A causal model's states at a position depend only
on the tokens before it, so this is the same arithmetic as reading each row whole, split into other matmuls: equal up
to float rounding (tests/unit/test_prefix.py checks it against the batched path, on a Llama and on a Gemma 3 whose
sliding window is shorter than the rows).

One row at a time gives up batching, so it is chosen only where the tokens it saves pay for that: when it reads at
most half the tokens the batched path would (`worth_sharing`). Not for a sharded model (FSDP): every rank must run
the same forwards, and the batched path already splits the work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.eval.progress import batch_starts
from tunesmith.models.loading import cache_keyword, unwrap
from tunesmith.training.distributed import is_sharded
from tunesmith.training.objectives import backbone_and_head

SAVING = 2.0  # the batched path must read at least this many times the tokens for the shared path to be taken
# Layers whose keys and values a plain cache holds whole and can cut back (the sliding window is applied by the mask);
# a model with recurrent or linear-attention layers keeps a state that cannot be cut, and is read whole.
ATTENTION = {"full_attention", "sliding_attention", "chunked_attention"}


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def shared_tokens(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens the shared path reads: each sequence, in token order, less what it shares with the one before."""
    ordered = sorted(sequences)
    return sum(len(s) - common_length(p, s) for p, s in zip([[], *ordered[:-1]], ordered, strict=True))


def worth_sharing(model: nn.Module, sequences: Sequence[Sequence[int]]) -> bool:
    """Whether reading `sequences` through a shared prefix reads at most 1 / SAVING of the tokens of reading each
    whole, for a model whose cache can be cut back (attention layers only, not sharded, decoder only)."""
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    layers = set(getattr(config, "layer_types", None) or ["full_attention"])
    if is_sharded(inner) or getattr(config, "is_encoder_decoder", False) or not layers <= ATTENTION:
        return False
    total = sum(len(s) for s in sequences)
    return total > 0 and shared_tokens(sequences) * SAVING <= total


class PrefixReader:
    """A model reading sequences one at a time, keeping in its cache the tokens the next one may share."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.model, self.device = model, device
        self.parts = backbone_and_head(model)
        self.cache = DynamicCache()
        self.keyword = cache_keyword(model)
        self.ids: list[int] = []  # the tokens whose keys and values the cache holds

    def cut(self, keep: int) -> None:
        """Forget every cached token from position `keep` on."""
        if len(self.ids) > keep:
            self.cache.crop(keep - len(self.ids))  # a negative count removes that many: the same in every 5.x
            del self.ids[keep:]

    def read(self, ids: Sequence[int], start: int) -> torch.Tensor:
        """Logits (float32) of positions start .. len(ids) - 1 of `ids`, reading only what the cache does not hold
        (at least those positions themselves). The cache then holds all of `ids`."""
        keep = min(common_length(self.ids, ids), start)
        self.cut(keep)
        new = torch.tensor([list(ids[keep:])], device=self.device)
        if self.parts is None:  # logits post-processed by the model (soft-capping): the plain forward
            logits = self.model(input_ids=new, use_cache=True, **{self.keyword: self.cache}).logits[0, start - keep :]
        else:  # only the positions asked for are projected onto the vocabulary
            backbone, head = self.parts
            hidden = backbone(input_ids=new, use_cache=True, **{self.keyword: self.cache}).last_hidden_state
            logits = head(hidden[0, start - keep :])
        self.ids = list(ids)
        return logits.float()


@torch.no_grad()
def shared_logprobs(
    model: nn.Module, rows: list[Encoded], device: torch.device, progress: str | None = None
) -> list[tuple[float, int]]:
    """(sum of log-probabilities, tokens) of each row's trained tokens, in the order of `rows`: what
    eval/likelihood.sequence_logprobs returns, read through a shared prefix."""
    was_training = model.training
    model.eval()
    reader = PrefixReader(model, device)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: rows[i].input_ids)
    for start in batch_starts(len(order), 1, progress):
        row = rows[order[start]]
        trained = [t for t, label in enumerate(row.labels) if label != IGNORE and t > 0]
        if not trained:  # nothing to score: (0.0, 0), as the batched path gives
            continue
        first = trained[0] - 1  # the position whose logits predict the first trained token
        logits = reader.read(row.input_ids, first)
        where = torch.tensor([t - 1 - first for t in trained], device=logits.device)
        targets = torch.tensor([row.labels[t] for t in trained], device=logits.device)
        logp = F.log_softmax(logits[where], -1).gather(1, targets[:, None])
        out[order[start]] = (float(logp.sum()), len(trained))
    model.train(was_training)
    return out


@torch.no_grad()
def shared_generate(
    model: nn.Module,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    device: torch.device,
    stop_ids: list[int] | None = None,
    progress: str | None = None,
) -> list[str]:
    """Greedy answers to `prompts` (token ids), in their order: what eval/runner.generate_sorted returns, each prompt
    generated from the cache of the prompt before it, cut back to what they share."""
    was_training = model.training
    model.eval()
    reader = PrefixReader(model, device)
    answers = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    for start in batch_starts(len(order), 1, progress):
        prompt = prompts[order[start]]
        reader.cut(min(common_length(reader.ids, prompt), len(prompt) - 1))  # generate() reads the rest
        out = model.generate(
            input_ids=torch.tensor([prompt], device=device),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device),
            **{reader.keyword: reader.cache},
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids or tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )[0].tolist()
        reader.ids = out[: reader.cache.get_seq_length()]
        answers[order[start]] = tokenizer.decode(out[len(prompt) :], skip_special_tokens=True).strip()
    model.train(was_training)
    return answers
