"""Stop a run whose numbers stopped being numbers, with one line that says what to change.

    tunesmith train cfg.yaml train.lr=1e30     # error: training diverged at step 2: the training loss is nan; ...

fit() checks the training loss and the gradient norm of every step before the optimizer applies it, the held-out
loss of every evaluation, and the loss of the updated weights before a checkpoint or the end of training. The first
non-finite one raises DivergedError, and so does a held-out loss that blew up while staying finite (above
train.max_loss_ratio times the base's, for a per-token NLL: check_blowup), so nothing computed from it is saved: the
newest checkpoint on disk is the last good state, and final/ is never written. The CLI prints the message and exits 2;
a serve job ends `failed` with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tunesmith.config import TrainConfig
from tunesmith.errors import TunesmithError
from tunesmith.training.checkpoint import list_checkpoints
from tunesmith.training.distributed import whole


class DivergedError(TunesmithError):
    """Training produced a non-finite loss or gradient norm; the message names the step, the number and the fix."""


def advice(cfg: TrainConfig, half_precision: bool) -> str:
    """What to change, the likeliest cause first."""
    tips = []
    # Decoupled weight decay multiplies the weights by (1 - lr * weight_decay) every step: from 1 on it flips them.
    decay = cfg.lr * cfg.weight_decay
    if cfg.weight_decay > 0 and (not math.isfinite(decay) or decay >= 1):
        tips.append(f"lower train.weight_decay (now {cfg.weight_decay:g}; lr x weight_decay must stay well below 1)")
    tips.append(f"lower train.lr (now {cfg.lr:g})")
    if cfg.max_grad_norm is None:
        tips.append("set train.max_grad_norm (e.g. 1.0)")
    if half_precision:
        tips.append("train with model.dtype=float32")
    return ", or ".join(tips)


def _last_good(checkpoints: Path) -> str:
    found = list_checkpoints(checkpoints)
    if not found:
        return "no checkpoint was saved before it"
    return f"the last good checkpoint is {checkpoints.name}/{found[-1].name}"  # relative: no server path in job errors


def check_finite(
    value: float | None, what: str, step: int, cfg: TrainConfig, checkpoints: Path, half_precision: bool
) -> None:
    """Raise DivergedError if `value` (a loss or a gradient norm at optimizer step `step`) is nan or infinite."""
    if value is None or math.isfinite(value):
        return
    raise DivergedError(
        f"training diverged at step {step}: {what} is {value}; {advice(cfg, half_precision)}. "
        f"Nothing from this step on was saved; {_last_good(checkpoints)}"
    )


def check_blowup(
    loss: float | None, base_loss: float | None, step: int, cfg: TrainConfig, checkpoints: Path, half_precision: bool
) -> None:
    """Raise DivergedError if the held-out loss at `step` is above train.max_loss_ratio times the base model's (and
    more than 1 nat above it, so a base that already knows the rows is not held to a sliver): finite, but lost."""
    ratio = cfg.max_loss_ratio
    if loss is None or base_loss is None or ratio is None or base_loss <= 0:
        return
    if loss > ratio * base_loss and loss > base_loss + 1.0:
        raise DivergedError(
            f"training diverged at step {step}: the held-out loss is {loss:.4g}, {loss / base_loss:.1f} times the "
            f"base model's {base_loss:.4g} (train.max_loss_ratio={ratio:g}); {advice(cfg, half_precision)}. "
            f"Nothing from this step on was saved; {_last_good(checkpoints)}"
        )


def gradient_norm(params: list[torch.nn.Parameter], max_norm: float | None) -> float:
    """The global gradient norm, clipped to `max_norm` when one is set (clipping returns the norm before it)."""
    if max_norm is not None:
        return float(whole(torch.nn.utils.clip_grad_norm_(params, max_norm)))  # sharded gradients: every rank's
    grads = [p.grad for p in params if p.grad is not None]
    return float(whole(torch.nn.utils.get_total_norm(grads))) if grads else 0.0
