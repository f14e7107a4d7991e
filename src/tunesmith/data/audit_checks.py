"""Audit checks that read rows, not tokens: labels and balance (with slices), preference pairs, and personal data.

    from tunesmith.data.audit_checks import label_balance, preference_pairs, privacy
    label_balance({"train": train_pairs, "eval": eval_pairs}, slice_field="source")

Each returns a JSON-ready dict; the row references are FILE:LINE. Personal data is only ever shown masked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.audit_dups import MAX_EXAMPLES, mask_pii, normalize, snippet
from tunesmith.data.formats import Example, is_transcript

Pair = tuple[Example, DatasetSpec]
MAX_SLICE_VALUES = 30
MAX_PII_HITS = 100


def is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


def ref(example: Example) -> str:
    return f"{example.source}:{example.line}"


def label_of(example: Example, spec: DatasetSpec) -> str | None:
    """The class of a row: a classification label, or the completion of a generative classifier (a spec with
    `labels:`, whose completions are label words)."""
    if example.kind is Kind.classification:
        return example.label
    if spec.labels and example.kind in (Kind.completion, Kind.instruction):
        return example.completion
    return None


def _balance(counts: Counter[str]) -> dict:
    total = sum(counts.values())
    ordered = counts.most_common()
    top, low = ordered[0], ordered[-1]
    return {
        "rows": total,
        "counts": dict(ordered),
        "majority_label": top[0],
        "majority_share": round(top[1] / total, 4),
        "minority_label": low[0],
        "minority_share": round(low[1] / total, 4),
        "imbalance_ratio": round(top[1] / low[1], 2),
    }


def _slices(pairs: list[Pair], field: str) -> dict:
    by_value: dict[str, Counter[str]] = defaultdict(Counter)
    missing = 0
    for ex, spec in pairs:
        value = (ex.extra or {}).get(field)
        if value is None:
            missing += 1
            continue
        by_value[value][label_of(ex, spec) or "(no label)"] += 1
    values = sorted(by_value.items(), key=lambda kv: -sum(kv[1].values()))
    overall = Counter(label_of(ex, spec) or "(no label)" for ex, spec in pairs)
    total = sum(overall.values()) or 1
    rows = []
    for value, counts in values[:MAX_SLICE_VALUES]:
        n = sum(counts.values())
        # How far this slice's label mix is from the whole split's: the largest gap in share, in points.
        gap = max(abs(counts[label] / n - overall[label] / total) for label in overall)
        rows.append({"value": value, "rows": n, "labels": dict(counts.most_common()), "max_share_gap": round(gap, 4)})
    return {"field": field, "values": rows, "distinct_values": len(by_value), "rows_without_field": missing}


def label_balance(splits: dict[str, list[Pair]], slice_field: str | None) -> dict | None:
    """Label distribution per split, imbalance, labels seen in only one split, texts labelled two ways, and (with
    a slice field) the label distribution per value of that column. None when no row has a label."""
    labelled = {
        name: [(ex, spec) for ex, spec in pairs if label_of(ex, spec) is not None] for name, pairs in splits.items()
    }
    if not any(labelled.values()):
        if slice_field is None:
            return None
        return {"splits": {}, "slices": {n: _slices(p, slice_field) for n, p in splits.items() if p}}
    out: dict = {"splits": {}}
    counts = {name: Counter(label_of(ex, spec) for ex, spec in pairs) for name, pairs in labelled.items()}
    for name, c in counts.items():
        if c:
            out["splits"][name] = _balance(c)  # type: ignore[arg-type]
    train, held = set(counts.get("train", {})), set(counts.get("eval", {}))
    out["only_in_eval"] = sorted(held - train)
    out["only_in_train"] = sorted(train - held) if held else []
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    texts: dict[str, str] = {}
    for ex, spec in labelled.get("train", []):
        text = ex.text if ex.kind is Kind.classification else ex.prompt
        key = normalize(text or "")
        seen[key][label_of(ex, spec) or ""].append(ref(ex))
        texts.setdefault(key, text or "")
    conflicts = [(k, v) for k, v in seen.items() if len(v) > 1]
    out["conflicting_texts"] = len(conflicts)
    out["conflict_examples"] = [
        {"text": snippet(texts[k]), "labels": {label: refs[:5] for label, refs in v.items()}}
        for k, v in conflicts[:MAX_EXAMPLES]
    ]
    if slice_field is not None:
        out["slices"] = {name: _slices(pairs, slice_field) for name, pairs in splits.items() if pairs}
    return out


def preference_pairs(pairs: list[Pair], chosen_tokens: list[int], rejected_tokens: list[int]) -> dict | None:
    """Pair checks: chosen == rejected (the pair teaches nothing), empty sides, pairs kept without a shared prompt,
    and length bias (how often the chosen side is the longer one)."""
    rows = [(ex, c, r) for (ex, _), c, r in zip(pairs, chosen_tokens, rejected_tokens, strict=True)]
    if not rows:
        return None
    identical = [ex for ex, _, _ in rows if ex.chosen == ex.rejected]
    same_normalized = [
        ex
        for ex, _, _ in rows
        if ex.chosen != ex.rejected and normalize(ex.chosen or "") == normalize(ex.rejected or "")
    ]
    empty_chosen = [ex for ex, _, _ in rows if is_blank(ex.chosen)]
    empty_rejected = [ex for ex, _, _ in rows if is_blank(ex.rejected)]
    unsplit = [ex for ex, _, _ in rows if ex.prompt is None and is_transcript(ex.chosen or "")]
    no_prompt = [ex for ex, _, _ in rows if ex.prompt is None and not is_transcript(ex.chosen or "")]
    longer = sum(1 for _, c, r in rows if c > r)
    shorter = sum(1 for _, c, r in rows if c < r)

    def listed(found: list[Example], show: Callable[[Example], str]) -> list[dict]:
        return [{"row": ref(ex), "text": show(ex)} for ex in found[:MAX_EXAMPLES]]

    return {
        "pairs": len(rows),
        "identical": len(identical),
        "identical_after_normalization": len(same_normalized),
        "empty_chosen": len(empty_chosen),
        "empty_rejected": len(empty_rejected),
        "split_from_transcripts": sum(1 for ex, _, _ in rows if ex.messages is not None),
        "differ_before_final_reply": len(unsplit),
        "without_prompt": len(no_prompt),
        "chosen_longer_share": round(longer / len(rows), 4),
        "chosen_shorter_share": round(shorter / len(rows), 4),
        "identical_examples": listed(identical, lambda ex: snippet(ex.chosen or "")),
        "empty_examples": listed(empty_chosen + empty_rejected, lambda ex: _tail(ex.prompt)),
        "unsplit_examples": listed(unsplit, _first_difference),
    }


def _first_difference(example: Example, context: int = 100, shown: int = 80) -> str:
    """Where two transcripts part: the shared text just before, then each side's continuation."""
    chosen, rejected = mask_pii(example.chosen or ""), mask_pii(example.rejected or "")
    at = next(
        (i for i, (a, b) in enumerate(zip(chosen, rejected, strict=False)) if a != b), min(len(chosen), len(rejected))
    )

    def flat(text: str) -> str:
        return " ".join(text.split())

    before = flat(chosen[max(0, at - context) : at])
    return f"…{before} ▸ chosen: {flat(chosen[at : at + shown])}… ▸ rejected: {flat(rejected[at : at + shown])}…"


def _tail(text: str | None, limit: int = 160) -> str:
    """The end of a prompt: the turn an empty reply answers."""
    flat = " ".join(mask_pii(text or "").split())
    return flat if len(flat) <= limit else "…" + flat[-limit:]


def _texts(example: Example) -> Iterator[tuple[str, str]]:
    """(field, text) for every text a row holds, each once (a split preference pair's messages repeat its prompt)."""
    if example.kind is not Kind.preference:
        for i, msg in enumerate(example.messages or []):
            yield f"messages[{i}].{msg['role']}", msg["content"]
    for name in ("prompt", "completion", "text", "chosen", "rejected"):
        value = getattr(example, name)
        if value:
            yield name, value


def privacy(splits: dict[str, list[Pair]]) -> dict:
    """Counts per kind of personal data or secret, the rows that hold them, and masked examples. Uses
    `tunesmith.data.pii` when it is installed; says so when it is not."""
    try:
        from tunesmith.data import pii
    except ImportError:
        return {"checked": False, "reason": "the PII scanner (tunesmith.data.pii) is not available"}
    kinds: Counter[str] = Counter()
    rows_by_kind: dict[str, set[str]] = defaultdict(set)
    hits: list[dict] = []
    rows_hit: set[str] = set()
    for split, pairs in splits.items():
        for ex, _ in pairs:
            for field, text in _texts(ex):
                for hit in pii.scan_text(text):
                    kinds[hit.kind] += 1
                    rows_by_kind[hit.kind].add(ref(ex))
                    rows_hit.add(ref(ex))
                    if len(hits) < MAX_PII_HITS:
                        hits.append(
                            {"row": ref(ex), "split": split, "field": field, "kind": hit.kind, "masked": hit.masked}
                        )
    known = list(getattr(pii, "PII_KINDS", ()))
    return {
        "checked": True,
        "kinds": known,
        "hits": sum(kinds.values()),
        "rows": len(rows_hit),
        "per_kind": {
            k: {"hits": kinds[k], "rows": len(rows_by_kind[k])}
            for k in [*known, *sorted(set(kinds) - set(known))]
            if kinds[k]
        },
        "examples": hits,
    }
