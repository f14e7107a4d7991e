"""Task metrics per slice of the held-out rows, and the largest gap between slices (a bias check).

    data: {slice_field: dialect}       # every task metric per value of the row's `dialect` column

Slices come from a source column of each row (`data.slice_field`) and, when the eval rows come from several
datasets, from the dataset name. Gaps are taken only between slices with at least `min_rows` rows: a slice of
three rows has a score that says little, so it is listed but never called the best or the worst.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.config import DatasetSpec
from tunesmith.data.formats import Example
from tunesmith.eval.metrics import Reference, compute

MIN_ROWS = 10
MISSING = "(missing)"


def slice_metrics(
    task: str,
    headline: Sequence[str],
    predictions: Sequence[str | None],
    references: Sequence[Reference],
    values: Sequence[str | None],
    labels: Sequence[str] | None = None,
    min_rows: int = MIN_ROWS,
    numeric: bool = False,
) -> dict:
    """{slices: {value: {n, metric...}}, gaps: {metric: {high, low, gap}}, min_rows} over one column's values.
    A reference may be a list of gold answers; `numeric` scores qa answers as numbers (see `metrics.compute`)."""
    rows: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        rows.setdefault(MISSING if value is None else value, []).append(i)
    slices: dict[str, dict] = {}
    for value, idx in sorted(rows.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        scores = compute(task, [predictions[i] for i in idx], [references[i] for i in idx], labels, numeric)
        slices[value] = {"n": len(idx), **{m: scores[m] for m in headline}}
    gaps: dict[str, dict] = {}
    sized = {v: s for v, s in slices.items() if s["n"] >= min_rows}
    if len(sized) >= 2:
        for metric in headline:
            high = max(sized, key=lambda v: sized[v][metric])
            low = min(sized, key=lambda v: sized[v][metric])
            gap = sized[high][metric] - sized[low][metric]
            gaps[metric] = {"high": high, "low": low, "gap": gap}
    return {"slices": slices, "gaps": gaps, "min_rows": min_rows}


def task_slices(
    task: str,
    headline: Sequence[str],
    predictions: Sequence[str | None],
    references: Sequence[Reference],
    pairs: Sequence[tuple[Example, DatasetSpec]],
    slice_field: str | None,
    labels: Sequence[str] | None = None,
    numeric: bool = False,
) -> dict[str, dict]:
    """Slice reports by `slice_field` and, for rows from several datasets, by dataset; {} when neither applies.
    `pairs` are the scored rows, in the order of `predictions`."""
    pairs = pairs[: len(predictions)]
    columns: dict[str, list[str | None]] = {}
    if slice_field:
        columns[slice_field] = [ex.column(slice_field) for ex, _ in pairs]
    datasets = [spec.display_name for _, spec in pairs]
    if len(set(datasets)) > 1:
        columns["dataset"] = list(datasets)
    return {
        name: slice_metrics(task, headline, predictions, references, values, labels, numeric=numeric)
        for name, values in columns.items()
    }
