"""Row checks that `tunesmith data check` (recipes/check.py) and uploads to the server share: --fields parsing, and
the rows a loaded file's encoder refuses.

A row passes only if training would take it: it is read and converted (loading.py, formats.py), then rendered and
tokenized by the model's own tokenizer and chat template exactly as `tunesmith train` encodes it (the config's
max_length, prompt format and method). What the rendering refuses (a chat template that cannot render the
conversation, special-token text inside a message, nothing left to train after truncation) is a row error, not a
crash later.
"""

from __future__ import annotations

from tunesmith.data.formats import RowError
from tunesmith.data.loading import LoadResult
from tunesmith.data.templates import TemplateError
from tunesmith.errors import TunesmithError


def parse_fields(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise TunesmithError(f"--fields {item!r}: expected SOURCE=FIELD, e.g. question=prompt")
        mapping[src] = dst
    return mapping


def encode_errors(result: LoadResult, encoder) -> tuple[list[RowError], str | None]:
    """The rows of a loaded dataset that encoding refuses, as training's encoder would; with a note instead when the
    whole dataset cannot be encoded by it (e.g. classification rows for the causal-LM objective)."""
    errors: list[RowError] = []
    for example in result.examples:
        try:
            encoded = encoder.encode(example, result.spec.system)
        except TemplateError as err:  # a whole-dataset limit, raised once by the encoder
            return [], str(err)
        if isinstance(encoded, RowError):
            errors.append(encoded)
    return errors, None
