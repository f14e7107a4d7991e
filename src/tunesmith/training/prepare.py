"""Load, validate and encode a config's datasets before anything is trained.

Bad rows stop the run here, listed as FILE:LINE: field: reason, unless `data.skip_invalid=true`, which skips them
and says how many and which. The held-out split, when no eval data is given, is a deterministic function of the
seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import Config, DatasetSpec
from tunesmith.data.formats import Example, RowError
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError

SHOWN_ERRORS = 20


class DataRefused(TunesmithError):
    """Training refuses to start: the data has bad rows and skipping them was not allowed."""


@dataclass
class Prepared:
    train: list[Encoded]
    eval: list[Encoded]
    eval_examples: list[tuple[Example, DatasetSpec]]  # held-out rows as examples, for side-by-side answers
    files: list[Path]
    rows: int
    errors: list[RowError] = field(default_factory=list)
    truncated: int = 0


def _load(specs: list[DatasetSpec], files: list[Path], errors: list[RowError]) -> list[tuple[Example, DatasetSpec]]:
    out: list[tuple[Example, DatasetSpec]] = []
    for spec in specs:
        result = load_dataset(spec)
        files.append(Path(spec.path))
        errors.extend(result.errors)
        out.extend((ex, spec) for ex in result.examples)
    return out


def _encode(
    pairs: list[tuple[Example, DatasetSpec]], renderer: Renderer, errors: list[RowError]
) -> tuple[list[Encoded], list[tuple[Example, DatasetSpec]]]:
    encoded, kept = [], []
    for ex, spec in pairs:
        result = renderer.encode(ex, spec.system)
        if isinstance(result, RowError):
            errors.append(result)
        else:
            encoded.append(result)
            kept.append((ex, spec))
    return encoded, kept


def describe_errors(errors: list[RowError], limit: int = SHOWN_ERRORS) -> str:
    lines = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more")
    return "\n".join(lines)


def encoder_for(cfg: Config, renderer: Renderer):
    """The row encoder the config's objective trains with: the chat-template renderer, or the head encoder."""
    if cfg.task.objective == "head":
        from tunesmith.data.classify import HeadEncoder

        return HeadEncoder(renderer, cfg.task.labels)
    return renderer


def prepare_data(cfg: Config, renderer: Renderer) -> Prepared:
    if not cfg.data.train:
        raise DataRefused("data.train is empty: give at least one dataset entry with a path")
    files: list[Path] = []
    errors: list[RowError] = []
    train_pairs = _load(cfg.data.train, files, errors)
    if cfg.data.eval:
        eval_pairs = _load(cfg.data.eval, files, errors)[: cfg.data.eval_max_rows]
    else:
        # Deterministic held-out split: a seeded permutation, independent of anything but the seed and row count.
        n = len(train_pairs)
        n_eval = min(cfg.data.eval_max_rows, max(1, round(n * cfg.data.eval_fraction))) if n > 1 else 0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
        held = set(order[:n_eval])
        eval_pairs = [p for i, p in enumerate(train_pairs) if i in held]
        train_pairs = [p for i, p in enumerate(train_pairs) if i not in held]
    rows = len(train_pairs) + len(eval_pairs) + len(errors)
    train, _ = _encode(train_pairs, renderer, errors)
    evals, eval_kept = _encode(eval_pairs, renderer, errors)
    prepared = Prepared(train, evals, eval_kept, files, rows, errors, sum(r.truncated for r in train + evals))
    if errors and not cfg.data.skip_invalid:
        raise DataRefused(
            f"{len(errors)} bad row(s); nothing was trained. Fix them, or set data.skip_invalid=true to skip them.\n"
            + describe_errors(errors)
        )
    if not train:
        raise DataRefused("no valid training rows are left")
    return prepared
