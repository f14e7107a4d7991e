"""Decode a batch of prompts together, each with its own sampling settings, stop strings and seed.

transformers' generate() takes one set of sampling settings per call and one RNG for the batch; requests that
arrive together differ in temperature, top_p, max_tokens, stop and seed, and a streaming client wants its text as
it is made. So this is a plain KV-cached loop: one forward pass over the left-padded prompts, then one token per
live row per step, each row choosing its token with its own settings and its own torch.Generator (a seeded
request gives the same answer however it was batched, up to float rounding). Greedy rows (temperature 0) match
generate(do_sample=False) token for token (tests/unit/test_serve_decode.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tunesmith.models.loading import cache_keyword


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Sequence:
    """One answer being written. `emit` receives text as it becomes final (never a piece that a stop string or an
    unfinished UTF-8 character could still take back); `cancelled` says the client went away; `error` is what made
    this one answer fail (the other rows of its batch go on)."""

    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[str], None] = lambda text: None
    cancelled: Callable[[], bool] = lambda: False
    streaming: bool = False  # text sent through emit has reached the client and cannot be taken back
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # the answer so far, as sent through emit
    finish_reason: str | None = None  # stop | length
    error: Exception | None = None
    # An unseeded answer draws its seed once, so that decoding it again (see restart) samples the same tokens.
    drawn_seed: int = field(default_factory=lambda: secrets.randbits(63))

    def generator(self, device: torch.device) -> torch.Generator:
        seed = self.sampling.seed if self.sampling.seed is not None else self.drawn_seed
        return torch.Generator(device=device).manual_seed(seed)

    def restart(self) -> None:
        """Forget a failed attempt, to be decoded again. A streamed answer keeps the text already sent: the new
        attempt (same seed, same tokens) stays silent until it has written past it."""
        self.tokens, self.finish_reason, self.error = [], None, None
        if not self.streaming:
            self.text = ""

    def fail(self, error: Exception) -> None:
        self.error, self.finish_reason = error, None


def choose(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """The next token from one row's logits: argmax at temperature 0, else nucleus sampling."""
    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest head whose mass reaches top_p: a token stays if the mass before it is below top_p.
        keep = (sorted_probs.cumsum(-1) - sorted_probs) < sampling.top_p
        sorted_probs = sorted_probs * keep
        pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def _held_back(text: str, stops: list[str]) -> int:
    """Characters at the end of `text` that could still become a stop string or a whole character."""
    hold = len(text) - len(text.rstrip("\ufffd"))  # an unfinished multi-byte character decodes as U+FFFD
    body = text[: len(text) - hold]
    for stop in stops:
        for k in range(min(len(stop) - 1, len(body)), 0, -1):
            if body.endswith(stop[:k]):
                return hold + k
    return hold


class _Row:
    def __init__(self, seq: Sequence, tokenizer, stop_ids: set[int], device: torch.device):
        self.seq, self.tokenizer, self.stop_ids = seq, tokenizer, stop_ids
        self.rng = seq.generator(device) if seq.sampling.temperature > 0 else None

    def push(self, token: int) -> bool:
        """Take one token; return True when the answer is finished."""
        seq = self.seq
        if seq.cancelled():
            seq.finish_reason = seq.finish_reason or "stop"
            return True
        if token in self.stop_ids:
            return self._finish(self._decoded(), "stop")
        seq.tokens.append(token)
        text = self._decoded()
        cuts = [i for i in (text.find(s) for s in seq.sampling.stop if s) if i >= 0]
        if cuts:
            return self._finish(text[: min(cuts)], "stop")
        if len(seq.tokens) >= seq.sampling.max_tokens:
            return self._finish(text, "length")
        safe = text[: len(text) - _held_back(text, seq.sampling.stop)]
        if len(safe) > len(seq.text) and safe.startswith(seq.text):
            seq.emit(safe[len(seq.text) :])
            seq.text = safe
        return False

    def _decoded(self) -> str:
        return self.tokenizer.decode(self.seq.tokens, skip_special_tokens=True)

    def _finish(self, text: str, reason: str) -> bool:
        seq = self.seq
        if text.startswith(seq.text) and len(text) > len(seq.text):
            seq.emit(text[len(seq.text) :])
        seq.text = text if text.startswith(seq.text) else seq.text
        seq.finish_reason = reason
        return True


def _select(cache, keep: torch.Tensor) -> bool:
    """Drop finished rows from the KV cache so later steps compute only live rows; False if the cache cannot."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "batch_select_indices") for layer in layers):
        return False
    for layer in layers:
        layer.batch_select_indices(keep)
    return True


@torch.no_grad()
def decode(
    model: nn.Module, tokenizer, sequences: list[Sequence], stop_ids: set[int], pad_id: int, device: torch.device
) -> None:
    """Write every sequence's answer (in place), calling each one's `emit` as text becomes final. What goes wrong
    with one row (its seed, its sampling, its text, its client) fails that sequence alone (`Sequence.error`); only
    a failure of the model's forward pass raises."""
    rows = []
    for s in sequences:
        if s.sampling.max_tokens <= 0:
            s.finish_reason = "length"
            continue
        try:
            rows.append(_Row(s, tokenizer, stop_ids, device))
        except Exception as err:  # e.g. a seed torch refuses: that request's fault, not its neighbours'
            s.fail(err)
    if not rows:
        return
    width = max(len(r.seq.prompt_ids) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r.seq.prompt_ids)) + r.seq.prompt_ids for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r.seq.prompt_ids)) + [1] * len(r.seq.prompt_ids) for r in rows])
    mask = mask.to(device)
    # Left padding shifts every real token right; positions count real tokens only, as generate() computes them.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1, :]
    keyword = cache_keyword(model)  # `cache` in transformers 5.2x on, `past_key_values` before
    batch = list(range(len(rows)))  # which row each batch position holds
    active = [True] * len(batch)
    while True:
        tokens = []
        for i, r in enumerate(batch):
            token = pad_id
            if active[i]:
                try:
                    token = choose(logits[i], rows[r].seq.sampling, rows[r].rng)
                    active[i] = not rows[r].push(token)
                except Exception as err:  # this row's sampling, decoding or client failed; the others go on
                    rows[r].seq.fail(err)
                    token, active[i] = pad_id, False
            tokens.append(token)
        if not any(active):
            return
        keep = [i for i, a in enumerate(active) if a]
        # Finished rows ride along (their tokens ignored) only when the cache cannot drop them.
        if len(keep) < len(batch) and _select(cache, torch.tensor(keep, device=device)):
            batch, tokens, active = [batch[i] for i in keep], [tokens[i] for i in keep], [True] * len(keep)
            mask, positions = mask[keep], positions[keep]
        mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
        positions = positions[:, -1:] + 1
        step = torch.tensor(tokens, device=device).unsqueeze(1)
        out = model(input_ids=step, attention_mask=mask, position_ids=positions, use_cache=True, **{keyword: cache})
        cache, logits = out.past_key_values, out.logits[:, -1, :]
