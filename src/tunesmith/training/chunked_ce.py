"""Cross-entropy of a linear output projection, computed in chunks of positions with no logits tensor kept.

    loss_sum, correct = linear_cross_entropy(hidden, lm_head.weight, targets, chunk=1024)

Autograd would keep the (N, V) logits of every trained position for the backward pass (N x 49,152 floats for the
default model: 200 MB for 1,000 positions). Here each chunk's logits live only while that chunk is processed: the
forward pass also forms the chunk's gradients with respect to the hidden states (and to the weight, when it is
trained), and the backward pass only scales them by the incoming gradient. The FLOPs are those of the plain path
(one matmul forward, two backward); what goes away is the memory and its traffic.
"""

from __future__ import annotations

import torch

CE_CHUNK = 1024  # positions per chunk: 1024 x 49,152 fp32 logits = 200 MB at most alive at once


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, want_h: bool, want_w: bool):
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
            if want_h or want_w:
                # d(sum of CE)/d(logits) = softmax - one_hot(target), formed in place over the logits.
                grad = logits.sub_(lse[:, None]).exp_()
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
        return dh, dw, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = CE_CHUNK
) -> tuple[torch.Tensor, int]:
    """(sum over positions of CE(hidden @ weight.T, targets), positions whose argmax is the target).

    `hidden` is (N, D) for the trained positions only, `weight` the (V, D) output projection, `targets` (N,)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0, 0
    grad = torch.is_grad_enabled()  # under no_grad (evaluation) no gradient is formed at all
    want_h, want_w = grad and hidden.requires_grad, grad and weight.requires_grad
    loss, correct = _LinearCrossEntropy.apply(hidden, weight, targets, chunk, want_h, want_w)
    return loss, int(correct)
