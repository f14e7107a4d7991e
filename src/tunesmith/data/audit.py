"""`tunesmith data audit TRAIN --eval EVAL`: what is in the data, measured before anything trains on it.

    from tunesmith.data.audit import run_audit
    report = run_audit(cfg.data.train, cfg.data.eval, tokenizer, max_length=cfg.data.max_length)
    json.dumps(report.to_json()); report.blocking(allow=cfg.audit.allow)

Sections: shape (rows per file and kind, rejected rows and why, token lengths per field with the run's tokenizer,
what `max_length` truncates, trained tokens per row, turns, empty fields), duplicates, leakage, labels and balance,
preference pairs and privacy. Sequence lengths and trained tokens come from `Renderer.encode`, the code training
runs, so they are exactly what training would use; per-field lengths are one batched tokenizer call per field.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.audit_checks import Pair, is_blank, label_balance, preference_pairs, privacy, ref
from tunesmith.data.audit_dups import MAX_EXAMPLES, NGRAM_WORDS, TextRow, duplicates, leakage, normalize
from tunesmith.data.formats import Example, RowError
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import IGNORE, Encoded, Renderer

TRAINABLE = (Kind.chat, Kind.instruction, Kind.completion, Kind.text)  # kinds the causal-LM objective trains
UNLIMITED = 1 << 40  # encode untruncated, then apply max_length here, so the audit sees what truncation costs
TOKENIZE_CHUNK = 2048
PERCENTILES = (50, 90, 95, 99)
SHOWN_ERRORS = 20
ALLOW = ("leakage", "pii", "zero_trained")


def distribution(values: Sequence[float], bins: int = 20, edges: Sequence[float] | None = None) -> dict | None:
    """Count, mean, percentiles and a histogram ([low, high, count] per bin). Long tails get one overflow bin from
    the 99th percentile to the maximum, so that the bulk of the data is not squeezed into the first bar."""
    if not len(values):
        return None
    arr = np.asarray(values, dtype=float)
    pct = {f"p{p}": round(float(np.percentile(arr, p)), 4) for p in PERCENTILES}
    lo, hi = float(arr.min()), float(arr.max())
    if edges is not None:
        edge_arr = np.asarray(edges, dtype=float)
    else:
        top = pct["p99"] if len(arr) >= 100 and hi > 2 * pct["p99"] else hi
        width = (top - lo) / bins
        if np.all(arr == np.round(arr)):
            width = max(1.0, float(np.ceil(width)))  # whole numbers: whole-number bins, one value per bin at least
        width = width or 1.0
        edge_arr = lo + width * np.arange(max(1, int(np.ceil((top - lo) / width))) + 1)
        if edge_arr[-1] < hi:
            edge_arr = np.append(edge_arr, hi)  # the overflow bin: p99 .. max
    counts, _ = np.histogram(np.clip(arr, edge_arr[0], edge_arr[-1]), bins=edge_arr)
    return {
        "count": len(arr),
        "total": round(float(arr.sum()), 4),
        "mean": round(float(arr.mean()), 4),
        "min": lo,
        "max": hi,
        "percentiles": pct,
        "histogram": [
            [round(float(a), 4), round(float(b), 4), int(c)]
            for a, b, c in zip(edge_arr[:-1], edge_arr[1:], counts, strict=True)
        ],
    }


def _share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _reason_key(error: RowError) -> str:
    # Numbers blanked so that "row has 1200000 characters" and "... 1300000 ..." count as one kind of problem.
    return re.sub(r"\d+", "N", f"{error.field}: {error.reason}")[:160]


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Token count of each text without special tokens, in batched tokenizer calls."""
    out: list[int] = []
    for i in range(0, len(texts), TOKENIZE_CHUNK):
        ids = tokenizer(texts[i : i + TOKENIZE_CHUNK], add_special_tokens=False, return_attention_mask=False)
        out.extend(len(x) for x in ids["input_ids"])
    return out


def row_text(example: Example) -> str:
    """The whole row as one text: what an exact or near duplicate repeats."""
    if example.kind is Kind.chat:
        return "\n".join(f"{m['role']}: {m['content']}" for m in example.messages or [])
    if example.kind in (Kind.text, Kind.classification):
        return example.text or ""
    if example.kind is Kind.preference:
        return "\n".join(x for x in (example.prompt, example.chosen, example.rejected) if x)
    return f"{example.prompt or ''}\n{example.completion or ''}"


def input_text(example: Example) -> str:
    """What the model is asked (the prompt side): train rows whose input is in eval leak the eval answers."""
    if example.kind is Kind.chat or (example.kind is Kind.preference and example.messages is not None):
        asked = [m["content"] for m in example.messages or [] if m["role"] not in ("system", "assistant")]
        return "\n".join(asked) if asked else row_text(example)
    if example.kind in (Kind.text, Kind.classification):
        return example.text or ""
    if example.kind is Kind.preference:
        return example.prompt if example.prompt is not None else example.chosen or ""
    return example.prompt or ""


def _fields(example: Example) -> list[tuple[str, str]]:
    """(field or role, text) pairs whose token lengths the audit reports."""
    if example.kind is Kind.chat:
        return [(m["role"], m["content"]) for m in example.messages or []]
    if example.kind in (Kind.text, Kind.classification):
        return [("text", example.text or "")]
    if example.kind is Kind.preference:
        sides = [("chosen", example.chosen or ""), ("rejected", example.rejected or "")]
        return ([("prompt", example.prompt)] if example.prompt is not None else []) + sides
    return [("prompt", example.prompt or ""), ("completion", example.completion or "")]


def _empty_fields(pairs: list[Pair], errors: list[RowError]) -> dict[str, dict[str, int]]:
    """Empty or whitespace-only fields: kept ones (allowed where they are) and rejected rows that had one."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"kept": 0, "rejected": 0})
    for ex, _ in pairs:
        for m in ex.messages or []:
            if is_blank(m["content"]):
                out[f"{m['role']} message"]["kept"] += 1
        if ex.kind is Kind.preference:
            for name in ("prompt", "chosen", "rejected"):
                value = getattr(ex, name)
                if (value is not None or name != "prompt") and is_blank(value):
                    out[name]["kept"] += 1
    for error in errors:
        if "empty" in error.reason:
            out[re.sub(r"\[\d+\]|\(turn \d+\)", "", error.field).strip()]["rejected"] += 1
    return dict(out)


def _shape(pairs: list[Pair], errors: list[RowError], tokenizer, renderer: Renderer, max_length: int) -> dict:
    """Shape of one split; appends the rows encoding rejects to `errors`."""
    by_field: dict[str, list[str]] = defaultdict(list)
    for ex, _ in pairs:
        for name, text in _fields(ex):
            by_field[name].append(text)
    field_tokens = {name: count_tokens(tokenizer, texts) for name, texts in by_field.items()}

    lengths, trained_share, trained_total, kept_total = [], [], 0, 0
    truncated_rows = truncated_tokens = 0
    zero: list[dict] = []
    for ex, spec in pairs:
        if ex.kind not in TRAINABLE:
            continue
        enc = renderer.encode(ex, spec.system)
        if isinstance(enc, RowError):
            errors.append(enc)
            if "no trained token" in enc.reason:
                zero.append({"row": ref(ex), "reason": enc.reason})
            continue
        n = len(enc.input_ids)
        lengths.append(n)
        # Exactly what Renderer.encode does with max_length: cut, then refuse a row with no trained token left.
        cut = Encoded(enc.input_ids[:max_length], enc.labels[:max_length], enc.source, enc.line)
        if n > max_length:
            truncated_rows += 1
            truncated_tokens += n - max_length
        if all(x == IGNORE for x in cut.labels[1:]):
            reason = f"no trained token left after truncation to data.max_length={max_length}"
            field = {Kind.chat: "messages", Kind.text: "text"}.get(ex.kind, "completion")
            errors.append(RowError(ex.source, ex.line, field, reason))
            zero.append({"row": ref(ex), "reason": reason})
            continue
        trained_total += cut.trained_tokens
        kept_total += len(cut.input_ids)
        trained_share.append(cut.trained_tokens / len(cut.input_ids))

    # Kinds the causal-LM objective does not train yet: the sequence is estimated from the fields, no template.
    est_lengths = []
    position: Counter[str] = Counter()
    for ex, _ in pairs:
        counts = {}
        for name, _text in _fields(ex):
            counts[name] = field_tokens[name][position[name]]
            position[name] += 1
        if ex.kind is Kind.classification:
            est_lengths.append(counts["text"])
        elif ex.kind is Kind.preference:
            est_lengths.append(counts.get("prompt", 0) + max(counts["chosen"], counts["rejected"]))
    turns = [
        sum(1 for m in ex.messages if m["role"] != "system") + (ex.kind is Kind.preference)
        for ex, _ in pairs
        if ex.messages is not None
    ]
    seq_total = sum(lengths)
    shape = {
        "rows": len(pairs),
        "kinds": dict(Counter(ex.kind.value for ex, _ in pairs)),
        "field_tokens": {name: distribution(v) for name, v in field_tokens.items()},
        "sequence_tokens": distribution(lengths),
        "truncated_rows": truncated_rows,
        "truncated_row_share": _share(truncated_rows, len(lengths)),
        "truncated_tokens": truncated_tokens,
        "truncated_token_share": _share(truncated_tokens, seq_total),
        "trained_tokens": trained_total if lengths else None,
        "trained_token_share": _share(trained_total, kept_total) if lengths else None,
        "trained_share_per_row": distribution(trained_share, edges=[i / 10 for i in range(11)]),
        "zero_trained": len(zero),
        "zero_trained_examples": zero[:MAX_EXAMPLES],
        "turns": distribution(turns, edges=None) if turns else None,
        "estimated_tokens": None,
    }
    if est_lengths:
        over = [n for n in est_lengths if n > max_length]
        shape["estimated_tokens"] = {
            "note": "classification and preference rows are not rendered by a template yet: field tokens only",
            "tokens": distribution(est_lengths),
            "truncated_rows": len(over),
            "truncated_row_share": _share(len(over), len(est_lengths)),
            "truncated_token_share": _share(sum(n - max_length for n in over), sum(est_lengths)),
        }
    return shape


@dataclass
class AuditReport:
    """Everything the audit found; `to_json()` is what audit.json holds and audit.html shows."""

    tokenizer: str
    max_length: int
    prompt_format: str
    files: list[dict]
    shape: dict[str, dict]
    duplicates: dict[str, dict]
    leakage: dict
    labels: dict | None
    preference: dict[str, dict]
    privacy: dict
    timings: dict[str, float]

    def to_json(self) -> dict:
        return {"version": 1, **asdict(self)}

    @property
    def rejected_rows(self) -> int:
        return sum(f["rejected"] for f in self.files)

    def blocking(self, allow: Sequence[str] = ()) -> list[str]:
        """Problems that stop `tunesmith train` (and `--strict`), one sentence each, unless named in `allow`:
        leakage, pii, zero_trained (rows that would train nothing: rejected rows, rows with no trained token,
        preference pairs whose sides are identical)."""
        unknown = set(allow) - set(ALLOW)
        if unknown:
            raise ValueError(f"unknown audit allowance {sorted(unknown)}; choose from {', '.join(ALLOW)}")
        out = []
        leak = self.leakage
        if leak.get("checked") and leak["train_rows"] and "leakage" not in allow:
            where = " (the run's held-out split)" if "split" in leak else ""
            out.append(
                f"leakage: {leak['train_rows']} train rows also appear in eval{where} (exact {leak['exact']}, near "
                f"{leak['near']}, contained {leak['train_in_eval'] + leak['eval_in_train']}, "
                f"{leak['ngram_words']}-word overlap {leak['ngram']}); remove them, or allow it with "
                "audit.allow: [leakage]"
            )
        if self.privacy.get("checked") and self.privacy["rows"] and "pii" not in allow:
            kinds = ", ".join(f"{k} {v['rows']}" for k, v in self.privacy["per_kind"].items())
            out.append(
                f"pii: {self.privacy['rows']} rows hold personal data or secrets ({kinds}); remove or mask them, or "
                "allow it with audit.allow: [pii]"
            )
        if "zero_trained" not in allow:
            zero = sum(s["zero_trained"] for s in self.shape.values())
            loading = sum(f["load_errors"] for f in self.files)
            identical = sum(p["identical"] for p in self.preference.values())
            if zero:
                out.append(f"zero trained tokens: {zero} rows would train nothing (see shape.zero_trained_examples)")
            if loading:
                out.append(f"rejected rows: {loading} rows cannot be read as examples (see files[].errors)")
            if identical:
                out.append(f"identical pairs: {identical} preference pairs have chosen == rejected and teach nothing")
        return out


def _load(specs: list[DatasetSpec], split: str, files: list[dict]) -> tuple[list[Pair], list[RowError]]:
    pairs: list[Pair] = []
    errors: list[RowError] = []
    for spec in specs:
        result = load_dataset(spec)
        pairs.extend((ex, spec) for ex in result.examples)
        errors.extend(result.errors)
        files.append(
            {
                "split": split,
                "path": spec.path,
                "kind": result.kind.value,
                "rows": result.rows,
                "valid": len(result.examples),
                "load_errors": len(result.errors),
                "rejected": len(result.errors),
                "reasons": {},
                "errors": [str(e) for e in result.errors[:SHOWN_ERRORS]],
                "fields": result.fields,
            }
        )
    return pairs, errors


def _attach_errors(files: list[dict], split: str, errors: list[RowError]) -> None:
    """Group a split's row errors (loading and encoding) into its files' reason counts."""
    by_source: dict[str, list[RowError]] = defaultdict(list)
    for e in errors:
        by_source[e.path].append(e)
    for f in files:
        if f["split"] != split:
            continue
        mine = by_source.pop(str(Path(f["path"]).expanduser()), [])  # the loader names rows by this path
        f["rejected"] = len(mine)
        f["reasons"] = dict(Counter(_reason_key(e) for e in mine).most_common(10))
        f["errors"] = [str(e) for e in mine[:SHOWN_ERRORS]]


def run_audit(
    train: list[DatasetSpec],
    eval: list[DatasetSpec],
    tokenizer,
    prompt_format: str = "auto",
    max_length: int = 1024,
    near_threshold: float = 0.85,
    slice_field: str | None = None,
    ngram: int = NGRAM_WORDS,
    held_out: Callable[[list[Pair]], set[int]] | None = None,
) -> AuditReport:
    """Audit the train datasets (and eval, when given) as a run with this tokenizer and max_length would see them.
    Without eval datasets, `held_out` (train rows -> indices the run holds out for eval) makes leakage compare the
    two sides of that split; `ngram` is the shared word-sequence length that counts as leakage."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    files: list[dict] = []
    splits: dict[str, list[Pair]] = {}
    split_errors: dict[str, list[RowError]] = {}
    for name, specs in (("train", train), ("eval", eval)):
        if specs:
            splits[name], split_errors[name] = _load(specs, name, files)
    lap("load")
    renderer = Renderer(tokenizer, prompt_format, UNLIMITED)
    shape = {}
    for name, pairs in splits.items():
        shape[name] = _shape(pairs, split_errors[name], tokenizer, renderer, max_length)
        shape[name]["empty_fields"] = _empty_fields(pairs, split_errors[name])
        _attach_errors(files, name, split_errors[name])
    lap("tokens")
    rows = {
        name: [TextRow(ref(ex), normalize(row_text(ex)), row_text(ex)) for ex, _ in p] for name, p in splits.items()
    }
    dups = {name: duplicates(r, near_threshold) for name, r in rows.items()}
    lap("duplicates")
    leak: dict = {"checked": False, "reason": "no eval data given"}
    sides = None
    if "eval" in splits and "train" in splits:
        sides = splits["train"], splits["eval"]
    elif held_out is not None and "train" in splits:
        # No eval data: the run holds rows of train out, and those must not leak either.
        held = held_out(splits["train"])
        sides = [p for i, p in enumerate(splits["train"]) if i not in held], [splits["train"][i] for i in sorted(held)]
    if sides is not None:
        inputs = [[TextRow(ref(ex), normalize(input_text(ex)), input_text(ex)) for ex, _ in side] for side in sides]
        leak = leakage(inputs[0], inputs[1], near_threshold, ngram)
        if held_out is not None and "eval" not in splits:
            leak["split"] = f"the run's held-out split of train: {len(sides[1])} eval rows, {len(sides[0])} train rows"
    lap("leakage")
    labels = label_balance(splits, slice_field)
    pref = {}
    for name, pairs in splits.items():
        prefs = [(ex, spec) for ex, spec in pairs if ex.kind is Kind.preference]
        if prefs:
            chosen = count_tokens(tokenizer, [ex.chosen or "" for ex, _ in prefs])
            rejected = count_tokens(tokenizer, [ex.rejected or "" for ex, _ in prefs])
            pref[name] = preference_pairs(prefs, chosen, rejected)
    lap("labels")
    pii = privacy(splits)
    lap("privacy")
    return AuditReport(
        tokenizer=str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        max_length=max_length,
        prompt_format=prompt_format,
        files=files,
        shape=shape,
        duplicates=dups,
        leakage=leak,
        labels=labels,
        preference=pref,
        privacy=pii,
        timings=timings,
    )
