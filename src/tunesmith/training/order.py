"""Which training rows each epoch visits, in which order: a pure function of (seed, epoch), so a resumed run sees
exactly the order an uninterrupted one would.

    data: {train: [{path: a.jsonl, weight: 3}, {path: b.jsonl, weight: 1}]}    # a 3:1 mixture

One dataset (or no weights): a seeded permutation of all rows. Several datasets with `weight`s: every epoch has as
many rows as the datasets together, split between them in proportion to their weights (largest remainder). A
dataset asked for fewer rows than it has contributes the next rows of its own seeded stream, so successive epochs
cover all of it; one asked for more cycles through fresh permutations of itself (upsampling). The chosen rows are
then shuffled together, so every optimizer step mixes the datasets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Order = Callable[[int], list[int]]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A seeded permutation of n rows for one epoch."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def quotas(sizes: list[int], weights: list[float], total: int | None = None) -> list[int]:
    """Rows per epoch from each dataset: the total row count (default: all rows) split by weight, rounded by largest
    remainder."""
    total, mass = (sum(sizes) if total is None else total), sum(weights)
    exact = [total * w / mass for w in weights]
    out = [int(x) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def _stream(size: int, seed: int, dataset: int, start: int, count: int) -> list[int]:
    """Items [start, start + count) of the endless stream perm_0 + perm_1 + ... of one dataset's rows."""
    out: list[int] = []
    cycle, offset = divmod(start, size)
    while len(out) < count:
        generator = torch.Generator().manual_seed((seed * 1_000_003 + dataset) * 7919 + cycle)
        perm = torch.randperm(size, generator=generator).tolist()
        out.extend(perm[offset : offset + count - len(out)])
        cycle, offset = cycle + 1, 0
    return out


def mixture_order(sizes: list[int], weights: list[float], seed: int, epoch: int, total: int | None = None) -> list[int]:
    """One epoch of a weighted mixture (of `total` rows, default all), as indices into the concatenation of the
    datasets (in `sizes` order)."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    chosen: list[int] = []
    for i, (size, quota) in enumerate(zip(sizes, quotas(sizes, weights, total), strict=True)):
        if size and quota:
            chosen.extend(starts[i] + j for j in _stream(size, seed, i, epoch * quota, quota))
    return [chosen[j] for j in epoch_order(len(chosen), seed, epoch)]


GROUP_WINDOW = 64  # batches per window that length grouping sorts within


def group_by_length(order: list[int], lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[int]:
    """The same rows, batched with rows of similar length: windows of GROUP_WINDOW batches of the random order are
    sorted by length and cut into batches, and the batches are then shuffled, so the data stays in random order
    at the scale of batches while each batch pads little."""
    window = batch_size * GROUP_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    # A short last batch stays last, so every other step keeps a full batch (as in the plain order).
    full = [b for b in batches if len(b) == batch_size]
    rest = [b for b in batches if len(b) != batch_size]
    shuffled = [full[i] for i in epoch_order(len(full), seed + 1, epoch)]
    return [i for b in shuffled + rest for i in b]


def build_order(
    sizes: list[int],
    weights: list[float | None],
    seed: int,
    lengths: list[int] | None = None,
    batch_size: int = 1,
    epoch_rows: int | None = None,
) -> Order:
    """The epoch -> row order function for a run: plain permutations unless some dataset sets a weight
    (datasets without one weigh their own size, i.e. they keep their natural share) of `epoch_rows` rows an epoch
    (default: all rows); with `lengths`, batches of `batch_size` are grouped by length."""
    if len(sizes) < 2 or all(w is None for w in weights):
        n = sum(sizes)

        def base(epoch: int) -> list[int]:
            return epoch_order(n, seed, epoch)
    else:
        if 0 in sizes:  # prepare_data refuses this by name; an empty dataset here would make empty steps
            raise ValueError(f"dataset {sizes.index(0)} of a weighted mixture has no rows")
        resolved = [float(size) if w is None else w for size, w in zip(sizes, weights, strict=True)]

        def base(epoch: int) -> list[int]:
            return mixture_order(sizes, resolved, seed, epoch, epoch_rows)

    if lengths is None:
        return base
    return lambda epoch: group_by_length(base(epoch), lengths, batch_size, seed, epoch)
