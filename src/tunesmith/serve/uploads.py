"""Check an uploaded fine-tuning file with tunesmith's own loader, row by row, before it is stored.

A file is JSONL in OpenAI's chat format (`{"messages": [...]}` per line), its prompt/completion format, or its
preference format for dpo jobs (`{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output":
[...]}`, also prompt/chosen/rejected); every
bad row is reported as `FILENAME:LINE: field: reason`, the way `tunesmith data check` reports it. As there, each row
is also rendered and tokenized the way training encodes it (with the tokenizer of the server's first base model), so
a file that passes here does not fail when a job trains on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import DataConfig, DatasetSpec, Kind
from tunesmith.data.check import encode_errors
from tunesmith.data.formats import RowError
from tunesmith.data.loading import DataError, LoadResult, load_dataset
from tunesmith.data.pairs import PairEncoder
from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError

SHOWN_ERRORS = 20
ACCEPTED_KINDS = (Kind.chat, Kind.completion, Kind.preference)


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


def upload_renderer(catalog, engines) -> Renderer | None:
    """The renderer uploads are checked with: the tokenizer of the first model directory the server was given
    (`--model`), else of the first registered base, with training's default max_length; None when none loads."""
    bases = sorted(catalog.bases(), key=lambda entry: not Path(entry.source).is_dir())
    for entry in bases:
        try:
            profile = engines.profile(entry)
        except (TunesmithError, OSError):
            continue
        return Renderer(profile.tokenizer, entry.settings.prompt_format, DataConfig().max_length)
    return None


def row_errors(result: LoadResult, renderer: Renderer | None) -> list[RowError]:
    """The rows loading refused and, with a renderer, those training's encoder would refuse, in line order."""
    encoder = PairEncoder(renderer) if renderer is not None and result.kind is Kind.preference else renderer
    rendered = encode_errors(result, encoder)[0] if encoder is not None else []
    return sorted(result.errors + rendered, key=lambda e: e.line)


def check_upload(path: Path, filename: str, max_rows: int, renderer: Renderer | None = None) -> CheckedFile:
    """Validate a stored upload; raise UploadRejected with the row-level errors. With a renderer, every row is also
    encoded as training would encode it."""
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
            '{"messages": [{"role": ..., "content": ...}, ...]} (chat), {"prompt": ..., "completion": ...} or, for '
            'method dpo, {"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]} '
            "per line"
        )
    errors = row_errors(result, renderer)
    if errors:
        shown = "\n".join(f"{filename}:{e.line}: {e.field}: {e.reason}" for e in errors[:SHOWN_ERRORS])
        more = f"\n... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise UploadRejected(f"{len(errors)} invalid row(s) of {result.rows}:\n{shown}{more}")
    return CheckedFile(len(result.examples), result.kind.value)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
