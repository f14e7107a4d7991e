"""Trivial baselines: answers computed without a model, which any model worth shipping must beat.

| task           | trivial answer                                                                  |
|----------------|---------------------------------------------------------------------------------|
| classification | the majority class of the training labels (pubmedqa: always "yes")              |
| qa             | the most common training answer, read as predictions are read (task.parse)      |
| summarization  | the lead sentence of the document (the first sentence, as Lead-1 in the field)  |
| translation    | the source sentence copied unchanged (names and numbers already score)          |

The document (or source sentence) is the longest text column of the source row other than the reference, so the
prompt template's own words ("Summarize this paper...") are not copied; rows without a source row use their last
user turn.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

from tunesmith.config import DatasetSpec, TaskConfig
from tunesmith.data.formats import Example, is_str_list
from tunesmith.data.templates import Renderer
from tunesmith.eval.tasks import TaskResult, read_prediction

Pair = tuple[Example, DatasetSpec]
Score = Callable[[list[str | None]], dict[str, float]]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _answers(train: Sequence[Pair], renderer: Renderer) -> list[str]:
    return [renderer.first_turn(ex, spec.system)[1].strip() for ex, spec in train]


def majority_label(train: Sequence[Pair], renderer: Renderer, labels: Sequence[str]) -> tuple[str, int, int]:
    """(the most common training label, its count, the training rows): ties go to the label listed first."""
    counts = Counter(a for a in _answers(train, renderer) if a in labels)
    best = max(labels, key=lambda label: (counts[label], -labels.index(label)))
    return best, counts[best], sum(counts.values())


def document(example: Example, prompt_text: str, reference: str) -> str:
    """The text a summary or translation is made from: the longest text column that is not the reference."""
    texts = []
    for value in (example.row or {}).values():
        text = "\n".join(value) if is_str_list(value) else value if isinstance(value, str) else None
        if text and text.strip() != reference.strip():
            texts.append(text)
    return max(texts, key=len) if texts else prompt_text


def lead_sentence(text: str) -> str:
    """The first sentence: up to the first sentence-ending mark followed by a space, or the first line."""
    for part in _SENTENCE_END.split(text.strip()):
        if part.strip():
            return part.strip()
    return ""


def trivial_baseline(
    task: TaskConfig,
    train: Sequence[Pair],
    pairs: Sequence[Pair],
    renderer: Renderer,
    score: Score,
    references: Sequence[object],
) -> dict | None:
    """The task's trivial baseline on the scored rows `pairs` (scored by `score`), as an eval/base.json section:
    a TaskResult's fields plus `name` and `method`; None when the task has none (no training answers)."""
    if task.type == "classification":
        label, count, total = majority_label(train, renderer, task.labels)
        if not total:
            return None
        predictions: list[str | None] = [label] * len(pairs)
        name, method = "majority", f'always "{label}" (the most common training label: {count} of {total} rows)'
    elif task.type == "qa":
        read = Counter(p for p in (read_prediction(a, task) for a in _answers(train, renderer)) if p)
        if not read:
            return None
        answer, count = read.most_common(1)[0]
        predictions = [answer] * len(pairs)
        name, method = "most_common_answer", f'always "{answer}" (the most common training answer: {count} rows)'
    else:
        docs = []
        for (ex, spec), ref in zip(pairs, references, strict=True):
            prompt, _ = renderer.first_turn(ex, spec.system)
            first = ref if isinstance(ref, str) else (list(ref) or [""])[0]  # several references: the first
            docs.append(document(ex, prompt[-1]["content"], str(first)))
        if task.type == "summarization":
            predictions = [lead_sentence(d) for d in docs]
            name, method = "lead_sentence", "the first sentence of the document"
        else:
            predictions = list(docs)
            name, method = "copy_source", "the source text copied unchanged"
    result = TaskResult(
        task.type,
        score(predictions),
        generations=[p or "" for p in predictions],
        predictions=predictions,
        references=list(references),  # type: ignore[arg-type]  # as the generation baseline scored them
    )
    return {"name": name, "method": method, **result.to_json()}
