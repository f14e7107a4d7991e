"""Progress over the rows of an evaluation: a bar that counts rows done and the time left. Every scorer that may
take minutes walks its rows through `batch_starts(len(rows), batch_size, "base: label likelihood, few-shot")`."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm import tqdm


def batch_starts(total: int, batch_size: int, progress: str | None = None) -> Iterable[int]:
    """The first index of every batch of `batch_size` among `total` items; with `progress`, a bar of that name counts
    the rows done and the time left (an evaluation that can take an hour says where it is; rank 0's only)."""
    starts = range(0, total, batch_size)
    if progress is None or os.environ.get("RANK", "0") != "0":
        return starts
    return _rows_bar(starts, total, batch_size, progress)


def _rows_bar(starts: range, total: int, batch_size: int, desc: str) -> Iterable[int]:
    with tqdm(total=total, desc=desc, unit="row", dynamic_ncols=True, leave=False) as bar:
        for start in starts:
            yield start
            bar.update(min(batch_size, total - start))
