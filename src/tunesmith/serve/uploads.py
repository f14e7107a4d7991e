"""Check an uploaded fine-tuning file with tunesmith's own loader, row by row, before it is stored.

A file is JSONL in OpenAI's chat format (`{"messages": [...]}` per line) or its prompt/completion format; every
bad row is reported as `FILENAME:LINE: field: reason`, the way `tunesmith data check` reports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.loading import DataError, load_dataset

SHOWN_ERRORS = 20
ACCEPTED_KINDS = (Kind.chat, Kind.completion)


class UploadRejected(Exception):
    """The file cannot be used for fine-tuning; the message says why, with lines."""


@dataclass
class CheckedFile:
    rows: int
    kind: str


def count_rows(path: Path) -> int:
    """Non-blank lines, counted without parsing, so the row limit is enforced before the real work."""
    rows = 0
    with open(path, "rb") as fh:
        for line in fh:
            rows += bool(line.strip())
    return rows


def check_upload(path: Path, filename: str, max_rows: int) -> CheckedFile:
    """Validate a stored upload; raise UploadRejected with the row-level errors."""
    rows = count_rows(path)
    if rows == 0:
        raise UploadRejected(f"{filename}: the file holds no rows")
    if rows > max_rows:
        raise UploadRejected(f"{filename}: {rows:,} rows; this server accepts at most {max_rows:,} per file")
    try:
        result = load_dataset(DatasetSpec(path=str(path), format="jsonl"))
    except DataError as err:
        raise UploadRejected(str(err).replace(str(path), filename)) from None
    if result.kind not in ACCEPTED_KINDS:
        raise UploadRejected(
            f"{filename}: rows look like {result.kind.value} records; fine-tuning files hold "
            '{"messages": [{"role": ..., "content": ...}, ...]} (chat) or {"prompt": ..., "completion": ...} per line'
        )
    if result.errors:
        shown = "\n".join(f"{filename}:{e.line}: {e.field}: {e.reason}" for e in result.errors[:SHOWN_ERRORS])
        more = f"\n... and {len(result.errors) - SHOWN_ERRORS} more" if len(result.errors) > SHOWN_ERRORS else ""
        raise UploadRejected(f"{len(result.errors)} invalid row(s) of {result.rows}:\n{shown}{more}")
    return CheckedFile(len(result.examples), result.kind.value)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
