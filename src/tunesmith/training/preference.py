"""Preference objectives on the one loop: DPO (sigmoid, IPO, hinge), SimPO and ORPO, over pair batches.

A pair batch holds both sides of every pair as sequences of one ordinary batch (padded or packed, so pairs pack like
SFT rows with no cross-talk): sequence 2i is pair i's chosen answer, 2i + 1 its rejected one. The model's summed
log-probability of each sequence's answer tokens is read from the output projection on answer positions only; with
`chunk` set the projection runs a chunk of positions at a time and no (tokens, vocab) logits tensor is kept
(`token_logprobs`), `chunk=None` is the plain computation (tunesmith verify compares the two).

Per pair, with policy log-probabilities c, r (chosen, rejected; summed over answer tokens), their token counts nc,
nr, and the reference model's c0, r0 (read once before training, methods/preference.py):

- dpo sigmoid: h = (c - c0) - (r - r0); loss = -(1 - e) log s(beta h) - e log s(-beta h)   (e: label_smoothing)
- dpo ipo:     h' = (c - c0) / nc - (r - r0) / nr; loss = (h' - 1 / (2 beta))^2         (per-token log-ratios)
- dpo hinge:   loss = max(0, 1 - beta h)
- simpo:       z = beta (c / nc - r / nr) - gamma; loss = -(1 - e) log s(z) - e log s(-z)
- orpo:        loss = -c / nc + beta x -log s(log odds(c / nc) - log odds(r / nr)), odds(p) = p / (1 - p)
- kto:         a row is one answer y (sequence 2i) and its prompt with another row's answer y' (2i + 1, the KL side);
               r = c - c0, z0 = max(0, mean over the batch of (r' - r0')) (no gradient), then
               desirable: lambda_D (1 - s(beta (r - z0))), undesirable: lambda_U (1 - s(beta (z0 - r)))

The loop normalises by the pairs of the step (a pair batch counts pairs as its trained units), so the logged loss
is the mean loss per pair; `correct` counts pairs whose implicit reward ranks the chosen answer first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.config import DPOMethod, KTOMethod, ORPOMethod, SimPOMethod
from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.training.chunked_ce import CE_CHUNK
from tunesmith.training.objectives import Batch, LossParts, backbone_and_head, collate

PreferenceConfig = DPOMethod | SimPOMethod | ORPOMethod | KTOMethod


@dataclass
class PairBatch(Batch):
    """A batch of 2 x pairs sequences (chosen, rejected, chosen, ...): `seq_of` gives each position's sequence
    (-1: padding; None for a packed batch a head scores through `pool`), `reference` the (pairs, 2) reference
    log-probabilities when the method uses them."""

    seq_of: torch.Tensor | None = None
    pairs: int = 0
    reference: torch.Tensor | None = None
    desirable: torch.Tensor | None = None  # KTO: (pairs,) bool, whether each row's answer is desirable

    @property
    def trained_tokens(self) -> int:
        return self.pairs  # the loop averages over pairs

    def to(self, device: torch.device) -> PairBatch:
        moved = super().to(device)
        reference = None if self.reference is None else self.reference.to(device)
        desirable = None if self.desirable is None else self.desirable.to(device)
        return PairBatch(
            **vars(moved),
            seq_of=None if self.seq_of is None else self.seq_of.to(device),
            pairs=self.pairs,
            reference=reference,
            desirable=desirable,
        )


def sequences(pairs: list[Encoded]) -> list[Encoded]:
    """Both sides of every pair, in batch order."""
    return [side for pair in pairs for side in (pair, pair.rejected)]


def make_scored_pair_batch(pairs: list[Encoded], pad_id: int, pack_to: int | None = None) -> PairBatch:
    """Both sides of `pairs` for a head that scores each at its last token (a reward model): padded, or packed with
    `pool` indexing every side's last token in pair order (chosen, rejected, chosen, ...)."""
    if pack_to is None:
        return make_pair_batch(pairs, pad_id)
    from tunesmith.training.packing import pack_scored

    batch = pack_scored(sequences(pairs), pad_id, pack_to)
    return PairBatch(**vars(batch), pairs=len(pairs))


def make_pair_batch(pairs: list[Encoded], pad_id: int, pack_to: int | None = None) -> PairBatch:
    """Both sides of `pairs` padded to the longest, or packed into sequences of at most `pack_to` tokens."""
    rows = sequences(pairs)
    if pack_to is not None:
        from tunesmith.training.packing import pack_placed

        batch, placed = pack_placed(rows, pad_id, pack_to)
    else:
        batch, placed = collate(rows, pad_id), [(i, 0, row) for i, row in enumerate(rows)]
    seq_of = torch.full(batch.labels.shape, -1, dtype=torch.long)
    index = {id(row): k for k, row in enumerate(rows)}
    for b, start, row in placed:
        seq_of[b, start : start + len(row.input_ids)] = index[id(row)]
    reference = None
    if all(p.reference is not None for p in pairs):
        reference = torch.tensor([p.reference for p in pairs], dtype=torch.float32)
    desirable = None
    if all(p.desirable is not None for p in pairs):
        desirable = torch.tensor([p.desirable for p in pairs], dtype=torch.bool)
    return PairBatch(**vars(batch), seq_of=seq_of, pairs=len(pairs), reference=reference, desirable=desirable)


class _TokenLogprobs(torch.autograd.Function):
    """log softmax(hidden @ weight.T)[target] per position, a chunk of positions at a time; the backward pass
    recomputes each chunk's logits instead of keeping them."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int):
        device = hidden.device.type
        low_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        low = weight.detach().to(low_dtype)  # cast once for every chunk (autocast would cast it per matmul)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        for start in range(0, hidden.shape[0], chunk):
            logits = (hidden[start : start + chunk].detach().to(low_dtype) @ low.T).float()
            lse[start : start + chunk] = torch.logsumexp(logits, -1)
            picked = logits.gather(1, targets[start : start + chunk, None]).squeeze(1)
            out[start : start + chunk] = picked - lse[start : start + chunk]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk, ctx.low_dtype = chunk, low_dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets, lse = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        low = weight.detach().to(ctx.low_dtype)
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        for start in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[start : start + ctx.chunk].detach()
            g = grad_out[start : start + ctx.chunk].float()
            logits = (h.to(ctx.low_dtype) @ low.T).float()
            # d log p[t] / d logits = one_hot(t) - softmax, scaled by each position's incoming gradient.
            grad = logits.sub_(lse[start : start + ctx.chunk, None]).exp_().mul_(-g[:, None])
            grad[torch.arange(h.shape[0], device=h.device), targets[start : start + ctx.chunk]] += g
            if want_h:
                grad_h[start : start + ctx.chunk] = (grad.to(ctx.low_dtype) @ low).to(hidden.dtype)
            if want_w:
                grad_w.addmm_(grad.T, h.float())
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None


def token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = CE_CHUNK
) -> torch.Tensor:
    """(N,) log-probabilities of `targets` under the (V, D) output projection `weight` of (N, D) `hidden`."""
    if hidden.shape[0] == 0:
        return hidden.sum(1) * 0.0
    return _TokenLogprobs.apply(hidden, weight, targets, chunk)


def answer_logprobs(
    model: nn.Module, batch: PairBatch, chunk: int | None = CE_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability, answer tokens) of every sequence of the batch: two (pairs, 2) tensors, columns
    chosen and rejected."""
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE
    wanted = targets[keep]
    parts = backbone_and_head(model)
    if parts is None:
        logits = model(**batch.model_inputs()).logits[:, :-1][keep]
        logp = F.log_softmax(logits.float(), -1).gather(1, wanted[:, None]).squeeze(1)
    else:
        backbone, head = parts
        hidden = backbone(**batch.model_inputs()).last_hidden_state[:, :-1][keep]
        if chunk is not None and isinstance(head, nn.Linear) and head.bias is None:
            logp = token_logprobs(hidden, head.weight, wanted, chunk)
        else:
            logp = F.log_softmax(head(hidden).float(), -1).gather(1, wanted[:, None]).squeeze(1)
    seq = batch.seq_of[:, 1:][keep]
    n = 2 * batch.pairs
    sums = torch.zeros(n, dtype=torch.float32, device=logp.device).index_add(0, seq, logp.float())
    counts = torch.bincount(seq, minlength=n).to(torch.float32)
    return sums.view(-1, 2), counts.view(-1, 2)


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of p = exp(mean_logp), stable as p approaches 1."""
    return mean_logp - torch.log1p(-torch.exp(mean_logp).clamp(max=1 - 1e-7))


def pair_losses(
    method: PreferenceConfig,
    logp: torch.Tensor,
    counts: torch.Tensor,
    reference: torch.Tensor | None,
    desirable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per pair, implicit reward margin per pair: positive when the chosen answer ranks first; for KTO when
    the row's implicit reward sides with its label)."""
    mean = logp / counts.clamp(min=1)
    if method.type == "kto":
        if reference is None or desirable is None:
            raise ValueError("kto needs the reference log-probabilities and the label of every row")
        ratio = logp - reference
        z0 = ratio[:, 1].mean().clamp(min=0).detach()
        margin = torch.where(desirable, ratio[:, 0] - z0, z0 - ratio[:, 0])
        weight = torch.where(desirable, method.desirable_weight, method.undesirable_weight)
        return weight * (1 - torch.sigmoid(method.beta * margin)), margin
    if method.type == "dpo":
        if reference is None:
            raise ValueError("dpo needs the reference log-probabilities of every pair")
        ratio = logp - reference
        h = ratio[:, 0] - ratio[:, 1]
        if method.loss == "ipo":
            per_token = ratio / counts.clamp(min=1)
            margin = per_token[:, 0] - per_token[:, 1]
            return (margin - 1 / (2 * method.beta)) ** 2, margin
        z = method.beta * h
        if method.loss == "hinge":
            return torch.relu(1 - z), z
        e = method.label_smoothing
        return -(1 - e) * F.logsigmoid(z) - e * F.logsigmoid(-z), z
    if method.type == "simpo":
        z = method.beta * (mean[:, 0] - mean[:, 1]) - method.gamma
        e = method.label_smoothing
        return -(1 - e) * F.logsigmoid(z) - e * F.logsigmoid(-z), z + method.gamma
    odds = _log_odds(mean[:, 0]) - _log_odds(mean[:, 1])  # orpo
    return -mean[:, 0] - method.beta * F.logsigmoid(odds), odds


class PreferenceObjective:
    """The loss of a preference method over pair batches, as summed per-pair losses (the loop averages them)."""

    def __init__(self, method: PreferenceConfig, chunk: int | None = CE_CHUNK):
        self.method = method
        self.chunk = chunk

    def __call__(self, model: nn.Module, batch: PairBatch) -> LossParts:
        logp, counts = answer_logprobs(model, batch, self.chunk)
        losses, margin = pair_losses(self.method, logp, counts, batch.reference, batch.desirable)
        return LossParts(losses.sum(), batch.pairs, int((margin.detach() > 0).sum()))


@torch.no_grad()
def read_logprobs(
    model: nn.Module,
    pairs: list[Encoded],
    pad_id: int,
    device: torch.device,
    autocast: torch.dtype | None,
    batch: int = 8,
    pack_to: int | None = None,
) -> list[tuple[tuple[float, float], tuple[int, int]]]:
    """Per pair: ((chosen, rejected) summed log-probabilities, (chosen, rejected) answer tokens) under `model` as it
    is now, in eval mode and the run's precision (what training computes)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        for start in range(0, len(pairs), batch):
            chunk = [replace(p, reference=None, desirable=None) for p in pairs[start : start + batch]]
            logp, counts = answer_logprobs(model, make_pair_batch(chunk, pad_id, pack_to).to(device))
            out += [
                ((float(a), float(b)), (int(x), int(y)))
                for (a, b), (x, y) in zip(logp.tolist(), counts.tolist(), strict=True)
            ]
    model.train(was_training)
    return out
