"""`tunesmith data check FILE`: validate one data file and list every bad row as FILE:LINE: field: reason."""

from __future__ import annotations

import re
from collections import Counter

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.loading import load_dataset
from tunesmith.errors import TunesmithError


def parse_fields(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise TunesmithError(f"--fields {item!r}: expected SOURCE=FIELD, e.g. question=prompt")
        mapping[src] = dst
    return mapping


def check_file(
    path: str, kind: str = "auto", fmt: str = "auto", fields: list[str] | None = None, columns: str | None = None
) -> int:
    """Print every bad row and a summary; return the exit status (1 when any row is bad)."""
    try:
        kind_value = Kind(kind)
    except ValueError:
        raise TunesmithError(f"--kind {kind!r}: choose one of {', '.join(k.value for k in Kind)}") from None
    spec = DatasetSpec(
        path=path,
        kind=kind_value,
        format=fmt,
        fields=parse_fields(fields or []),
        columns=columns.split(",") if columns else None,
    )
    result = load_dataset(spec)
    for error in result.errors:
        print(error)
    # Group by field and reason with numbers blanked, so "row has 1200000 characters" counts as one kind of problem.
    reasons = Counter(re.sub(r"\d+", "N", f"{e.field}: {e.reason}")[:100] for e in result.errors)
    print(
        f"{path}: {result.rows} rows read, {len(result.examples)} valid {result.kind.value} rows, "
        f"{len(result.errors)} bad"
    )
    for reason, count in reasons.most_common(10):
        print(f"  {count:>6}  {reason}")
    return 1 if result.errors else 0
