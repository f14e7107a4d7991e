"""Attention over packed rows that costs what the rows cost: each row attends only to itself, computed row by row.

A packed sequence holds several rows whose positions restart at 0. A block-diagonal mask keeps them apart, but
attention under an arbitrary mask computes every (query, key) pair of the whole sequence and throws most away:
four rows of 250 tokens packed into 1,000 cost 1,000^2 score entries instead of 4 x 250^2 / 2. This attention
reads the row boundaries from the position ids (where a position does not follow its predecessor) and runs causal
SDPA on each row alone, so no masked-out pair is ever computed; causal SDPA also skips the upper triangle.

It is registered under a name of its own through transformers' public attention and mask registries
(`AttentionInterface.register`, `AttentionMaskInterface.register`) and switched on per model with
`set_attn_implementation`; nothing in transformers is patched. Anything that is not a packed or plain causal
forward (padded batches, generation with a cache) goes to transformers' own SDPA path with its usual mask, so the
same model generates and scores exactly as with `sdpa`. tests/unit/test_speed.py checks loss and gradients against
the padded computation.
"""

from __future__ import annotations

import itertools

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


# Every layer of one forward receives the same position_ids tensor: its row bounds are read once (one host sync),
# not once per layer. Keyed by the tensor itself and its version counter, so new or edited positions are re-read.
_last: tuple[torch.Tensor, int, list[list[int]]] | None = None


def _cached_bounds(position_ids: torch.Tensor) -> list[list[int]]:
    global _last
    if _last is None or _last[0] is not position_ids or _last[1] != position_ids._version:
        _last = (position_ids, position_ids._version, row_bounds(position_ids))
    return _last[2]


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
    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    bounds_per_row = _cached_bounds(position_ids)
    if len(bounds_per_row) != query.shape[0]:  # positions given once for the whole batch
        bounds_per_row = bounds_per_row * query.shape[0]
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    rows = []
    for b, bounds in enumerate(bounds_per_row):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                dropout_p=p,
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
            for s, e in itertools.pairwise(bounds)
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def segment_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor | None:
    """No mask when `segment_attention` handles the forward itself (no padding mask, queries = keys: training,
    scoring, a prefill); otherwise transformers' SDPA mask, unchanged. transformers would turn packed positions into
    a block-diagonal mask here; returning None is what lets the rows be computed one by one."""
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
