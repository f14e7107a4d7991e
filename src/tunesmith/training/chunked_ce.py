"""Cross-entropy of a linear output projection, computed in chunks of positions with no logits tensor kept.

    loss_sum, correct = linear_cross_entropy(hidden, lm_head.weight, targets, chunk=1024)

Autograd would keep the (N, V) logits of every trained position for the backward pass (N x 49,152 floats for the
default model: 200 MB for 1,000 positions). Here each chunk's logits live only while that chunk is processed: the
forward pass also forms the chunk's gradients with respect to the hidden states (and to the weight, when it is
trained), and the backward pass only scales them by the incoming gradient. The FLOPs are those of the plain path
(one matmul forward, two backward); what goes away is the memory and its traffic.

Positions may also carry a teacher distribution (`Soft`: data.replay.kl on replay rows): the base model's top-K next
tokens with their log-probabilities. Their loss adds `kl x KL(teacher || model)` over K + 1 outcomes, the K tokens and
"any other token" (teacher mass 1 - sum p_k, model mass 1 - sum q_k), so it is zero, with zero gradient, exactly
when the model gives those tokens the teacher's probabilities. Its gradient with respect to the logits, formed in
the same pass, is `q - p` on the K tokens and `q x (1 - p_rest / q_rest)` on every other one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CE_CHUNK = 1024  # positions per chunk: 1024 x 49,152 fp32 logits = 200 MB at most alive at once


@dataclass
class Soft:
    """Teacher distributions at some positions: (N, K) token ids (-1 in the first column: none at that position),
    their log-probabilities under the teacher, and the weight of the KL term."""

    ids: torch.Tensor
    logp: torch.Tensor
    kl: float

    def rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(positions within [start, end) that carry a teacher, relative to start; their ids; their log-probs)."""
        ids = self.ids[start:end]
        where = (ids[:, 0] >= 0).nonzero().squeeze(1)
        if where.numel() == 0:
            return None
        return where, ids[where], self.logp[start:end][where].float()

    def terms(self, logits: torch.Tensor, lse: torch.Tensor, start: int = 0):
        """For rows start.. of the whole: None when none of them has a teacher, else (kl x the summed KL, where,
        ids, p, c) with the teacher probabilities p and c = 1 - p_rest / q_rest per position (the gradient's
        factor off the K tokens). `logits` minus `lse` are the model's log-probabilities (lse 0: already so)."""
        taught = self.rows(start, start + logits.shape[0])
        if taught is None:
            return None
        where, ids, logp = taught
        log_q = logits[where].gather(1, ids) - lse[where, None]
        p = logp.exp()
        p_rest = (1 - p.sum(1)).clamp(min=0)
        log_q_rest = torch.log1p(-log_q.exp().sum(1).clamp(max=1 - 1e-6))
        rest = torch.where(p_rest > 0, p_rest * (p_rest.clamp(min=1e-30).log() - log_q_rest), 0.0)
        total = (p * (logp - log_q)).sum() + rest.sum()
        return self.kl * total, where, ids, p, 1 - p_rest / log_q_rest.exp()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, want_h: bool, want_w: bool, soft: Soft | None):
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        device = hidden.device.type
        if torch.is_autocast_enabled(device) and weight.dtype == torch.float32:
            # Autocast would cast the (vocab x hidden) weight again for both matmuls of every chunk: cast it once.
            # The same rounding either way, so the numbers are identical.
            low = weight.detach().to(torch.get_autocast_dtype(device))
        else:
            low = weight
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]
            t = targets[start : start + chunk]
            logits = (h @ low.T).float()
            correct += (logits.argmax(-1) == t).sum()
            lse = torch.logsumexp(logits, -1)
            loss += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            taught = soft.terms(logits, lse, start) if soft is not None else None
            if taught is not None:
                loss += taught[0]
            if want_h or want_w:
                # d(sum of CE)/d(logits) = softmax - one_hot(target), formed in place over the logits.
                grad = logits.sub_(lse[:, None]).exp_()
                if taught is not None:  # + kl x the KL term's gradient where a teacher is given
                    _, where, ids, p, c = taught
                    q = grad[where]
                    grad[where] = q + soft.kl * (q * c[:, None]).scatter_(1, ids, q.gather(1, ids) - p)
                grad[torch.arange(t.shape[0], device=t.device), t] -= 1
                if want_h:
                    grad_h[start : start + chunk] = (grad.to(low.dtype) @ low).to(hidden.dtype)
                if want_w:
                    grad_w.addmm_(grad.T, h.float())
        ctx.save_for_backward(grad_h if want_h else None, grad_w if want_w else None)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_correct: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        dh = None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype)
        dw = None if grad_w is None else (grad_w * grad_loss).to(ctx.weight_dtype)
        return dh, dw, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk: int = CE_CHUNK,
    soft: Soft | None = None,
) -> tuple[torch.Tensor, int]:
    """(sum over positions of CE(hidden @ weight.T, targets), plus the teacher KL term of `soft`, and the positions
    whose argmax is the target).

    `hidden` is (N, D) for the trained positions only, `weight` the (V, D) output projection, `targets` (N,)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0, 0
    grad = torch.is_grad_enabled()  # under no_grad (evaluation) no gradient is formed at all
    want_h, want_w = grad and hidden.requires_grad, grad and weight.requires_grad
    loss, correct = _LinearCrossEntropy.apply(hidden, weight, targets, chunk, want_h, want_w, soft)
    return loss, int(correct)
