"""Dynamic loss scaling for float16 mixed precision (`model.dtype: float16`): fp32 weights, fp16 autocast.

fp16 holds nothing below ~6e-8, so small gradients of the fp16 backward flush to zero; the loss is multiplied by a
large scale before backward and the gradients divided by it before clipping and the optimizer step (torch.amp's
GradScaler). A step whose scaled gradients overflowed is skipped and the scale halved; it grows again after 2,000
clean steps. bf16 has fp32's range and needs none of this.

The scale is training state like the optimizer's moments: it is kept in the optimizer's first parameter group (as
LR schedulers keep `initial_lr` there), so every checkpoint saves it and a resume continues with the same scale.
"""

from __future__ import annotations

import torch

_KEY = "loss_scale"


def loss_scaler(autocast: torch.dtype | None, device: torch.device, optimizer: torch.optim.Optimizer):
    """A GradScaler for fp16 autocast, restored from the optimizer's state; None for any other precision."""
    if autocast != torch.float16:
        return None
    scaler = torch.amp.GradScaler(device.type)
    state = optimizer.param_groups[0].get(_KEY)
    if state:
        scaler.load_state_dict(state)
    return scaler


def remember(scaler, optimizer: torch.optim.Optimizer) -> None:
    """Store the scaler's state where the next checkpoint will save it."""
    if scaler is not None:
        optimizer.param_groups[0][_KEY] = scaler.state_dict()
