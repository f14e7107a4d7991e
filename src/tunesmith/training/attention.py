"""Attention over packed rows that costs what the rows cost: each row attends only to itself, all rows in one call.

A packed sequence holds several rows whose positions restart at 0. A block-diagonal mask keeps them apart, but
attention under an arbitrary mask computes every (query, key) pair of the whole sequence and throws most away:
four rows of 250 tokens packed into 1,000 cost 1,000^2 score entries instead of 4 x 250^2 / 2. This attention
reads the row boundaries from the position ids (where a position does not follow its predecessor), gathers the rows
into one padded batch of rows and runs causal SDPA on it in one call, so no masked-out pair between two rows is ever
computed (the padding sits at each row's end, where causality hides it), and one kernel serves every row of a
layer instead of a Python loop of small ones; causal SDPA also skips the upper triangle.

It is registered under a name of its own through transformers' public attention and mask registries
(`AttentionInterface.register`, `AttentionMaskInterface.register`) and switched on per model with
`set_attn_implementation`; nothing in transformers is patched. Anything that is not a packed or plain causal
forward (padded batches, generation with a cache) goes to transformers' own SDPA path with its usual mask, so the
same model generates and scores exactly as with `sdpa`. tests/unit/test_speed.py checks loss and gradients against
the padded computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tunesmith.models.loading import unwrap

SEGMENTS = "tunesmith_segments"


def row_bounds(position_ids: torch.Tensor) -> list[list[int]]:
    """Per batch row, the start of every packed row plus the sequence end: a row starts wherever a position is not
    its predecessor + 1 (padding after the last row has consecutive positions of its own, so it is one more row)."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    width = position_ids.shape[1]
    return [[*row.nonzero().flatten().tolist(), width] for row in starts]


@dataclass
class Segments:
    """Where the packed rows of a (B, T) batch lie, as one padded batch of rows: row i of the batch of rows holds
    flat positions `gather[i]`, its slots after the row's end pointing at position B*T, a zero row appended for the
    purpose; `keep` lists, for every flat position 0..B*T-1, its slot in the flattened (rows, length) grid. Every
    position belongs to exactly one row (padding after the last row is a row of its own), so the two maps are each
    other's inverse on the real slots, and moving a tensor either way is one index_select (`Regroup`), forward and
    backward alike. Both are index tensors whose sizes follow from the batch's shape and its rows alone, so a
    compiled layer sees no data-dependent shape (a boolean mask would be one)."""

    gather: torch.Tensor  # (rows, length) long
    keep: torch.Tensor  # (B * T,) long: the flat grid slot of each position
    single: bool  # every batch row is one row: plain causal attention, nothing to gather


def segments(position_ids: torch.Tensor) -> Segments:
    """The rows of a packed batch, read from its position restarts (row_bounds)."""
    width = position_ids.shape[1]
    spans = [(b * width + s, e - s) for b, bounds in enumerate(row_bounds(position_ids)) for s, e in pairwise(bounds)]
    longest = max(n for _, n in spans)
    steps = torch.arange(longest)
    starts = torch.tensor([s for s, _ in spans])
    lengths = torch.tensor([n for _, n in spans])
    inside = steps[None, :] < lengths[:, None]
    gather = torch.where(inside, starts[:, None] + steps[None, :], position_ids.numel())
    keep = inside.flatten().nonzero().flatten()
    device = position_ids.device
    return Segments(gather.to(device), keep.to(device), single=len(spans) == position_ids.shape[0])


class Regroup(torch.autograd.Function):
    """(positions, ...) -> (rows, length, ...) by `gather` (slots past a row's end read zeros) and back by `keep`.
    Each direction is the other's adjoint, so both passes are a plain index_select: no scatter with accumulation,
    which is what autograd would run for an indexing's backward."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, gather: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keep)
        return _to_rows(flat, gather)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return _to_flat(grad, keep), None, None


class Ungroup(torch.autograd.Function):
    """Regroup's inverse: (rows, length, ...) -> (positions, ...)."""

    @staticmethod
    def forward(ctx, grid: torch.Tensor, gather: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gather)
        return _to_flat(grid, keep)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (gather,) = ctx.saved_tensors
        return _to_rows(grad, gather), None, None


def _to_rows(flat: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    padded = torch.cat([flat, flat.new_zeros((1, *flat.shape[1:]))])
    return padded.index_select(0, gather.flatten()).view(*gather.shape, *flat.shape[1:])


def _to_flat(grid: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return grid.flatten(0, 1).index_select(0, keep)


# Every layer of one forward receives the same position_ids tensor: its rows are read once (one host sync), not
# once per layer. Keyed by the tensor itself and its version counter, so new or edited positions are re-read.
_last: tuple[torch.Tensor, int, int, Segments] | None = None


@torch.compiler.disable  # host-side bookkeeping: a compiled layer calls it, it is never traced
def _cached_segments(position_ids: torch.Tensor, batch: int) -> Segments:
    global _last
    if _last is None or _last[0] is not position_ids or _last[1:3] != (position_ids._version, batch):
        rows = position_ids if position_ids.shape[0] == batch else position_ids.expand(batch, -1)  # given once
        _last = (position_ids, position_ids._version, batch, segments(rows))
    return _last[3]


def segment_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal attention of every packed row to itself alone. The rows are gathered into one padded batch of rows
    (padding at each row's end, which causal attention never shows a real query), attended in a single SDPA call,
    and the real slots read back in order: one kernel per layer however many rows are packed, and no score between
    two rows is ever computed."""
    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    seg = _cached_segments(position_ids, query.shape[0])
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    if seg.single:
        out = F.scaled_dot_product_attention(
            query, key, value, dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa
        )
        return out.transpose(1, 2).contiguous(), None
    batch, heads, width, dim = query.shape

    def rows(t: torch.Tensor) -> torch.Tensor:  # (B, H, T, D) -> (rows, H, length, D)
        flat = t.transpose(1, 2).reshape(batch * width, t.shape[1], dim)
        return Regroup.apply(flat, seg.gather, seg.keep).transpose(1, 2)

    out = F.scaled_dot_product_attention(
        rows(query), rows(key), rows(value), dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa
    )
    return Ungroup.apply(out.transpose(1, 2), seg.gather, seg.keep).view(batch, width, heads, dim), None


def segment_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor | None:
    """No mask when `segment_attention` handles the forward itself (no padding mask, queries = keys: training,
    scoring, a prefill); otherwise transformers' SDPA mask, unchanged. transformers would turn packed positions into
    a block-diagonal mask here; returning None is what lets each row be computed on its own."""
    if attention_mask is None and q_length == kv_length and not kwargs.get("q_offset"):
        return None
    return sdpa_mask(
        batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask, **kwargs
    )


AttentionInterface.register(SEGMENTS, segment_attention)
AttentionMaskInterface.register(SEGMENTS, segment_mask)


def plain_causal(config) -> bool:
    """Every layer attends causally to the whole sequence (no sliding windows or chunked/bidirectional layers),
    the only attention `segment_attention` reproduces."""
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if getattr(config, "attention_chunk_size", None):
        return False
    return all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])


def use_segment_attention(model: nn.Module) -> bool:
    """Switch a model that runs transformers' SDPA attention to `segment_attention`; True when it did."""
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", SEGMENTS):
        return False
    if not getattr(inner, "_supports_attention_backend", False) or not plain_causal(config):
        return False
    inner.set_attn_implementation(SEGMENTS)
    return True
