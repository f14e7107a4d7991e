"""Load, validate and encode a config's datasets before anything is trained.

Bad rows stop the run here, listed as FILE:LINE: field: reason, unless `data.skip_invalid=true`, which skips them
and says how many and which. The held-out split, when no eval data is given, is a deterministic function of the
seed and never puts one (normalised) text on both sides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import Config, DatasetSpec
from tunesmith.data.audit import input_text
from tunesmith.data.audit_dups import UnionFind, normalize
from tunesmith.data.formats import Example, RowError
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, RowEncoder
from tunesmith.errors import TunesmithError
from tunesmith.training.order import Order, build_order

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
    train_names: list[str] = field(default_factory=list)  # dataset names, by Encoded.dataset
    eval_names: list[str] = field(default_factory=list)
    train_examples: list[tuple[Example, DatasetSpec]] = field(default_factory=list)  # few-shot baselines
    # Mixture weights of datasets appended after data.train's (replay rows: recipes/replay.py), in train_names order.
    extra_weights: list[float] = field(default_factory=list)
    # eval_names indices of datasets carried forward from a parent run: scored for retention, not in the run's own
    # held-out numbers (recipes/replay.add_retention).
    retention: set[int] = field(default_factory=set)
    epoch_rows: int | None = None  # rows per epoch when not all of train (replay: own rows / (1 - fraction))

    def epoch_length(self) -> int:
        """Rows one epoch visits: every training row, unless replay set fewer (epoch_rows)."""
        return self.epoch_rows or len(self.train)

    def own_eval(self) -> list[Encoded]:
        """The held-out rows of this run's own data (without rows carried forward from a parent run)."""
        return [row for row in self.eval if row.dataset not in self.retention]

    def train_sizes(self) -> list[int]:
        """Encoded training rows per dataset entry, in data.train order."""
        sizes = [0] * max(1, len(self.train_names))
        for row in self.train:
            sizes[row.dataset] += 1
        return sizes


Pair = tuple[Example, DatasetSpec]
VALIDATION_SEED = 1729  # data.validation_fraction: the same validation rows for every trial of a sweep


def _load(specs: list[DatasetSpec], files: list[Path], errors: list[RowError]) -> list[Pair]:
    out: list[Pair] = []
    for spec in specs:
        result = load_dataset(spec)
        files.append(Path(spec.path))
        errors.extend(result.errors)
        out.extend((ex, spec) for ex in result.examples)
    return out


def _encode(
    pairs: list[Pair], specs: list[DatasetSpec], renderer: RowEncoder, errors: list[RowError]
) -> tuple[list[Encoded], list[Pair]]:
    index = {id(spec): i for i, spec in enumerate(specs)}
    encoded, kept = [], []
    for ex, spec in pairs:
        result = renderer.encode(ex, spec.system)
        if isinstance(result, RowError):
            errors.append(result)
        else:
            result.dataset = index[id(spec)]
            encoded.append(result)
            kept.append((ex, spec))
    return encoded, kept


def held_out_rows(
    pairs: list[Pair], specs: list[DatasetSpec], n_eval: int, seed: int, split_by: str | None
) -> set[int]:
    """Indices of the rows held out for eval: a seeded choice, stratified by dataset and (classification) label,
    taking whole groups so that no text is on both sides. A group is every row with the same input text after the
    audit's normalisation (data/audit_dups.normalize: case, punctuation, Unicode forms), joined, with `split_by`,
    with every row sharing that column's value (one paragraph's questions): a row split by row would put a copy of
    an eval text in training, and the eval score would measure memory.

    Per stratum the quota is its share of `n_eval` (largest remainder); a pure function of seed and rows."""
    index = {id(spec): i for i, spec in enumerate(specs)}
    linked = UnionFind()
    first: dict[object, int] = {}  # a text or split_by value -> the first row that has it
    for i, (ex, spec) in enumerate(pairs):
        links: list[object] = [("text", normalize(input_text(ex)))]
        if split_by is not None:
            value = ex.column(split_by)
            if value is None:
                raise DataRefused(f"{ex.source}:{ex.line}: {split_by}: missing; data.split_by groups rows by it")
            links.append(("group", index[id(spec)], value))
        for link in links:
            linked.union(i, first.setdefault(link, i))
    groups: dict[int, list[int]] = {}  # in the order of each group's first row, so the split is a pure function
    for i in range(len(pairs)):
        groups.setdefault(linked.find(i), []).append(i)
    strata: dict[tuple[int, str], list[int]] = {}
    for key, rows in groups.items():
        ex, spec = pairs[rows[0]]
        strata.setdefault((index[id(spec)], ex.label or ""), []).append(key)
    n = len(pairs)
    sizes = {s: sum(len(groups[k]) for k in keys) for s, keys in strata.items()}
    exact = {s: n_eval * size / n for s, size in sizes.items()}
    quota = {s: int(q) for s, q in exact.items()}
    for s in sorted(exact, key=lambda s: (-(exact[s] - quota[s]), s))[: n_eval - sum(quota.values())]:
        quota[s] += 1
    held: set[int] = set()
    for number, s in enumerate(sorted(strata)):
        keys = strata[s]
        # One stratum of single rows draws exactly the permutation an unstratified split would.
        generator = torch.Generator().manual_seed(seed if number == 0 else seed * 7919 + number)
        taken = 0
        for j in torch.randperm(len(keys), generator=generator).tolist():
            if taken >= quota[s]:
                break
            held.update(groups[keys[j]])
            taken += len(groups[keys[j]])
    return held


def held_out_of_train(cfg: Config, pairs: list[Pair]) -> set[int]:
    """The rows of data.train (as loaded, in order) that a run without data.eval holds out: the deterministic split
    of held_out_rows, eval_fraction of the rows up to eval_max_rows. The audit checks leakage across this split."""
    n = len(pairs)
    n_eval = min(cfg.data.eval_max_rows, max(1, round(n * cfg.data.eval_fraction))) if n > 1 else 0
    return held_out_rows(pairs, cfg.data.train, n_eval, cfg.train.seed, cfg.data.split_by)


def _check_mixture(cfg: Config, prepared: Prepared, loaded: Counter[int], held: Counter[int]) -> None:
    """A weighted mixture draws each epoch's share of every dataset: one with no training rows would give steps
    with nothing in them (loss 0) while the schedule advances, so it is refused, by name, with where its rows went."""
    if len(cfg.data.train) < 2 or all(spec.weight is None for spec in cfg.data.train):
        return
    for i, size in enumerate(prepared.train_sizes()):
        if size == 0:
            raise DataRefused(
                f"data.train: dataset {prepared.train_names[i]!r} has no training rows ({loaded[i]} loaded, {held[i]} "
                f"held out for eval, {loaded[i] - held[i]} skipped as invalid), but a weighted mixture draws from it "
                "every epoch; give it rows (check its path, limit and ids, or give data.eval), or remove the entry"
            )


def describe_errors(errors: list[RowError], limit: int = SHOWN_ERRORS) -> str:
    lines = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more")
    return "\n".join(lines)


def train_order(cfg: Config, prepared: Prepared, packs: bool) -> Order:
    """The run's epoch -> row order: the dataset mixture (data.train weights), grouped by length when the run does
    not pack its batches (`packs`: the method's decision) and train.group_by_length is on."""
    grouped = cfg.train.group_by_length and not packs
    lengths = [len(r.input_ids) for r in prepared.train] if grouped else None
    weights = [spec.weight for spec in cfg.data.train] + list(prepared.extra_weights)
    sizes = prepared.train_sizes()
    return build_order(sizes, weights, cfg.train.seed, lengths, cfg.train.batch_size, prepared.epoch_rows)


def prepare_data(cfg: Config, renderer: RowEncoder) -> Prepared:
    """cfg's datasets loaded, split and encoded by `renderer` (the method's row encoder: methods/*.py)."""
    if not cfg.data.train:
        raise DataRefused("data.train is empty: give at least one dataset entry with a path")
    files: list[Path] = []
    errors: list[RowError] = []
    train_pairs = _load(cfg.data.train, files, errors)
    index = {id(spec): i for i, spec in enumerate(cfg.data.train)}
    loaded = Counter(index[id(spec)] for _, spec in train_pairs)
    held_per_dataset: Counter[int] = Counter()
    train_names = [spec.display_name for spec in cfg.data.train]
    if cfg.data.eval:
        eval_specs = cfg.data.eval
        eval_pairs = []
        for spec in eval_specs:
            eval_pairs.extend(_load([spec], files, errors)[: cfg.data.eval_max_rows])
    else:
        eval_specs = cfg.data.train
        held = held_out_of_train(cfg, train_pairs)
        held_per_dataset = Counter(index[id(spec)] for i, (_, spec) in enumerate(train_pairs) if i in held)
        eval_pairs = [p for i, p in enumerate(train_pairs) if i in held]
        train_pairs = [p for i, p in enumerate(train_pairs) if i not in held]
    aside = 0
    if cfg.data.validation_fraction is not None:
        # A selection run (a sweep trial) never reads the test split: it is evaluated on a validation split of the
        # remaining training rows, drawn as a run without data.eval draws its held-out rows, with one seed for every
        # trial whatever train.seed it tries.
        aside = len(eval_pairs)
        n_val = min(cfg.data.eval_max_rows, max(1, round(len(train_pairs) * cfg.data.validation_fraction)))
        held = held_out_rows(train_pairs, cfg.data.train, n_val, VALIDATION_SEED, cfg.data.split_by)
        held_per_dataset += Counter(index[id(spec)] for i, (_, spec) in enumerate(train_pairs) if i in held)
        eval_specs = cfg.data.train
        eval_pairs = [p for i, p in enumerate(train_pairs) if i in held]
        train_pairs = [p for i, p in enumerate(train_pairs) if i not in held]
    rows = len(train_pairs) + len(eval_pairs) + len(errors) + aside
    train, train_kept = _encode(train_pairs, cfg.data.train, renderer, errors)
    evals, eval_kept = _encode(eval_pairs, eval_specs, renderer, errors)
    truncated = sum(r.truncated for r in train + evals)
    eval_names = [spec.display_name for spec in eval_specs]
    prepared = Prepared(train, evals, eval_kept, files, rows, errors, truncated, train_names, eval_names, train_kept)
    if errors and not cfg.data.skip_invalid:
        raise DataRefused(
            f"{len(errors)} bad row(s); nothing was trained. Fix them, or set data.skip_invalid=true to skip them.\n"
            + describe_errors(errors)
        )
    if not train:
        raise DataRefused("no valid training rows are left")
    _check_mixture(cfg, prepared, loaded, held_per_dataset)
    return prepared
