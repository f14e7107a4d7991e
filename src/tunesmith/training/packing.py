"""Packing: several examples in one sequence, with no cross-contamination, so padding costs no compute.

    train: {packing: true}            # the default for causal-LM runs

The rows of a micro-batch are placed into bins of at most `max_length` tokens by best-fit decreasing (longest row
first, into the bin it fills most tightly). Inside a bin every row keeps its own positions (they restart at 0), and
the positions alone tell the model where rows begin: the model is given no padding mask, so transformers builds a
block-diagonal causal mask from the restarts (SDPA/eager), flash attention takes them as variable-length rows, and
tunesmith's own attention (training/attention.py, used when the model supports it) computes each row on its own.
Either way a row attends only to itself, and the loss equals the unpacked loss (tests/unit/test_speed.py checks it)
while the model computes on far fewer padding tokens.

Only the rows of one micro-batch are packed together, so a step sees exactly the examples it would unpacked and
the loop's normalisation by trained tokens is unchanged. Rows that carry one class each (a classification head) pack
the same way (`pack_classes`), with the flat index of each row's last token for the head to read; a reward model's
pair sides too (`pack_scored`), both sides of a pair in any bins, their scores read back in pair order.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from tunesmith.data.templates import IGNORE, Encoded


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins whose lengths sum to at most `capacity` (a longer item gets a bin of its own)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            best = min(fits, key=lambda b: room[b])
            bins[best].append(i)
            room[best] -= lengths[i]
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def pack(rows: list[Encoded], pad_id: int, capacity: int):
    """A packed Batch of `rows` (token-level rows only): bins of <= capacity tokens, padded to the longest bin."""
    batch, placed = pack_placed(rows, pad_id, capacity)
    return batch.with_teacher(placed)


def _layout(rows: list[Encoded], pad_id: int, capacity: int):
    """Token ids, real-token mask and positions of `rows` packed into bins, and where each row went: (bin, start,
    row), in the order placed."""
    bins = best_fit_decreasing([len(r.input_ids) for r in rows], capacity)
    width = max(sum(len(rows[i].input_ids) for i in b) for b in bins)
    n = len(bins)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    real = torch.zeros((n, width), dtype=torch.long)
    placed = []
    for b, members in enumerate(bins):
        start = 0
        for i in members:
            row = rows[i]
            placed.append((b, start, row))
            end = start + len(row.input_ids)
            ids[b, start:end] = torch.tensor(row.input_ids)
            positions[b, start:end] = torch.arange(end - start)
            real[b, start:end] = 1
            start = end
        # The padding after the last row counts on from 0 too: one more row, of padding, that no real token sees.
        positions[b, start:] = torch.arange(width - start)
    return ids, real, positions, placed


def pack_placed(rows: list[Encoded], pad_id: int, capacity: int):
    """pack's Batch (without teachers) and where each row went: (bin, start, row), in the order placed."""
    from tunesmith.training.objectives import Batch  # the Batch type lives with collate; imported late: no cycle

    ids, real, positions, placed = _layout(rows, pad_id, capacity)
    labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
    for b, start, row in placed:
        labels[b, start : start + len(row.labels)] = torch.tensor(row.labels)
        # A row's first label is never a target (targets are shifted by one), so no loss crosses a boundary.
        labels[b, start] = IGNORE
    return Batch(ids, real, labels, position_ids=positions), placed


def pack_scored(rows: list[Encoded], pad_id: int, capacity: int):
    """Packed rows that a head scores at their last token (a reward model's pair sides): bins as `pack`, no labels,
    and `pool`, the flat index (bin * width + position) of each row's last token, in the order of `rows`: the hidden
    states a head reads, as transformers pools a padded row at its last real token, lined up with the rows given."""
    from tunesmith.training.objectives import Batch

    ids, real, positions, placed = _layout(rows, pad_id, capacity)
    width = ids.shape[1]
    last = {id(row): b * width + start + len(row.input_ids) - 1 for b, start, row in placed}
    pool = torch.tensor([last[id(row)] for row in rows], dtype=torch.long)
    labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
    return Batch(ids, real, labels, position_ids=positions, pool=pool)


def pack_classes(rows: list[Encoded], pad_id: int, capacity: int):
    """A packed micro-batch of rows that carry one class index each (a classification head): `pack_scored`'s
    batch with the (N,) class indices of `rows`, in order, as its labels."""
    targets = torch.tensor([row.target for row in rows], dtype=torch.long)
    return replace(pack_scored(rows, pad_id, capacity), labels=targets)
