"""Frozen weights kept in the autocast dtype for the run, so no step casts them again.

    with frozen_in(model, torch.bfloat16):      # what training/loop.accumulate does under mixed precision
        loss = objective(model, batch)

Under bf16 autocast a linear layer casts its fp32 weight to bf16 before every matmul. A weight that trains changes
every step, so its cast is real work (and autocast reuses it within a forward); a frozen one - the whole base model
under LoRA - is the same every step, yet autocast casts it again in every forward: about 2 bytes written and 4 read
per parameter per micro-batch, for nothing. Here each frozen linear weight (and bias) is cast once and the copy is
swapped in for the duration of the forward and backward passes, so autocast finds it already in its dtype. The
numbers are identical, bit for bit: autocast would round the same fp32 values to the same bf16 ones
(tests/unit/test_speed.py checks loss and gradients for equality). Outside the block the model holds its fp32
weights, so evaluation, checkpoints, merging and export never see the copies.

The copies live as long as the model, at 2 bytes per frozen parameter (the plan counts them). They are rebuilt when
the frozen weights change (a merge, a load_state_dict) or a frozen layer starts to train. Weights shared with an
embedding (a tied output head) are left alone: the embedding must keep returning fp32.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class FrozenCopies:
    """Low-precision copies of a model's frozen linear weights and biases, and the swap in and out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        self.dtype = dtype
        embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        self.swaps: list[tuple[nn.Linear, str, nn.Parameter, int, nn.Parameter]] = []
        for module in model.modules():
            if not isinstance(module, nn.Linear) or id(module.weight) in embedded:
                continue
            for name in ("weight", "bias"):
                full = getattr(module, name)
                if full is None or full.requires_grad or full.dtype != torch.float32:
                    continue
                low = nn.Parameter(full.detach().to(dtype), requires_grad=False)
                self.swaps.append((module, name, full, full._version, low))

    @property
    def nbytes(self) -> int:
        return sum(low.numel() * low.element_size() for *_, low in self.swaps)

    def current(self, dtype: torch.dtype) -> bool:
        """Whether the copies still stand for the model's weights (same tensors, unchanged, still frozen)."""
        return dtype == self.dtype and all(
            getattr(module, name) is full and full._version == version and not full.requires_grad
            for module, name, full, version, _ in self.swaps
        )

    @contextmanager
    def swapped(self) -> Iterator[None]:
        for module, name, _, _, low in self.swaps:
            setattr(module, name, low)
        try:
            yield
        finally:
            for module, name, full, _, _ in self.swaps:
                setattr(module, name, full)


_copies: weakref.WeakKeyDictionary[nn.Module, FrozenCopies] = weakref.WeakKeyDictionary()


def copies_for(model: nn.Module, dtype: torch.dtype) -> FrozenCopies:
    """The model's copies in `dtype`, made on first use and remade when they no longer stand for its weights."""
    copies = _copies.get(model)
    if copies is None or not copies.current(dtype):
        copies = _copies[model] = FrozenCopies(model, dtype)
    return copies


@contextmanager
def frozen_in(model: nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Inside the block the model's frozen linear weights are in `dtype` (the autocast dtype); None: unchanged."""
    if dtype is None:
        yield
        return
    with copies_for(model, dtype).swapped():
        yield
