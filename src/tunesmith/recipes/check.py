"""`tunesmith data check FILE`: every bad row of a data file, as FILE:LINE: field: reason, and a summary.

    tunesmith data check ../shared/data/sst2/train.tsv --fields sentence=text label=label
    tunesmith data check rows.jsonl --config examples/gsm8k-lora.yaml   # as that config's dataset entry, rendered

The rows are read as training reads them (data/loading.py) and encoded by the config's training method, so what
the command passes, training accepts.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from tunesmith.config import Config, DatasetSpec, Kind, load_config
from tunesmith.data.check import encode_errors, parse_fields
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError


def check_file(
    path: str,
    kind: str = "auto",
    fmt: str = "auto",
    fields: list[str] | None = None,
    columns: str | None = None,
    model: str | None = None,
    config: str | None = None,
) -> int:
    """Print every bad row and a summary; return the exit status (1 when any row is bad)."""
    from tunesmith.methods import build_method
    from tunesmith.models.registry import DEFAULT_MODEL
    from tunesmith.recipes.audit import load_audit_tokenizer

    try:
        kind_value = Kind(kind)
    except ValueError:
        raise TunesmithError(f"--kind {kind!r}: choose one of {', '.join(k.value for k in Kind)}") from None
    cfg = load_config(config) if config else Config()
    spec = _config_spec(cfg, path) or DatasetSpec(
        path=path,
        kind=kind_value,
        format=fmt,
        fields=parse_fields(fields or []),
        columns=columns.split(",") if columns else None,
    )
    result = load_dataset(spec)
    base = model or (cfg.model.base if config else DEFAULT_MODEL)
    renderer = Renderer(load_audit_tokenizer(base), cfg.data.prompt_format, cfg.data.max_length)
    rendered, note = encode_errors(result, build_method(cfg).encoder(renderer))
    errors = sorted(result.errors + rendered, key=lambda e: e.line)
    for error in errors:
        print(error)
    # Group by field and reason with numbers blanked, so "row has 1200000 characters" counts as one kind of problem.
    reasons = Counter(re.sub(r"\d+", "N", f"{e.field}: {e.reason}")[:100] for e in errors)
    print(
        f"{path}: {result.rows} rows read, {len(result.examples) - len(rendered)} valid {result.kind.value} rows, "
        f"{len(errors)} bad (rendered with {base}'s tokenizer, max_length {cfg.data.max_length})"
    )
    for reason, count in reasons.most_common(10):
        print(f"  {count:>6}  {reason}")
    if note is not None:
        print(f"note: rows not rendered: {note}")
    return 1 if errors else 0


def _config_spec(cfg: Config, path: str) -> DatasetSpec | None:
    """The config's dataset entry for this file (its fields, template, labels), if the config names it."""
    # abspath, not resolve(): a file that is a symlink loop must reach load_dataset, which says so.
    target = os.path.abspath(os.path.expanduser(path))
    for spec in [*cfg.data.train, *cfg.data.eval]:
        if os.path.abspath(os.path.expanduser(spec.path)) == target:
            return spec
    return None
