"""Task metrics for base-vs-tuned evaluation, computed with the field's packages (no metric hub is reached).

    from tunesmith.eval.metrics import compute, per_example
    compute("qa", ["Paris."], [["Paris", "Paris, France"]])  # {"exact_match": 1.0, "f1": 1.0}
    per_example("qa", ["Paris."], [["Paris"]])                # {"exact_match": [1.0], "f1": [1.0]}

| task           | corpus metrics (`compute`)                               | package       |
|----------------|----------------------------------------------------------|---------------|
| classification | accuracy, macro_f1, invalid, precision/recall/f1/support | scikit-learn  |
| summarization  | rouge1, rouge2, rougeL (F-measure, Porter stemming)      | rouge-score   |
| qa             | exact_match, f1 (SQuAD v1.1, max over gold answers)      | own, see below|
| qa, numeric    | exact_match = f1: equal numbers (max over gold answers)  | own, parse.py |
| translation    | bleu, chrf (corpus level)                                | sacrebleu     |

Every task but classification takes one reference or a list of them per row (SQuAD's gold answers, SciTLDR's
TLDRs): EM/F1 and ROUGE take the best reference, BLEU and chrF use sacrebleu's multi-reference form.
`numeric=True` (a task whose answers are numbers, `task.parse: number`) compares qa answers by value.

Scales: fractions in [0, 1], except BLEU and chrF, which keep sacrebleu's 0-100 (the scale papers quote).
`per_example` returns per-row scores; wherever it returns the same key as `compute`, their mean *is* the
corpus score (that is what lets the bootstrap vectorise). Translation's per-row score is `sentence_chrf`, a
different key, because corpus chrF and BLEU are not means of sentence scores.

`evaluate.load(...)` is deliberately not used: it fetches metric scripts from a hub at run time.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tunesmith.eval.parse import number_value

TASKS = ("classification", "summarization", "qa", "translation")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Which per-row scores `per_example` returns for each task (see the module docstring for what they mean).
PER_EXAMPLE_KEYS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "summarization": ROUGE_TYPES,
    "qa": ("exact_match", "f1"),
    "translation": ("sentence_chrf",),
}
# Stands in for a prediction outside the label set; the NUL byte keeps it from colliding with a real label.
_INVALID = "\x00invalid"

Reference = str | list[str]


# --- classification -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int  # rows whose reference is this label


@dataclass(frozen=True)
class ClassificationScores:
    labels: list[str]  # the caller's order; rows and columns of `confusion` follow it
    accuracy: float
    macro_f1: float  # unweighted mean over all `labels` (a label never seen nor predicted scores 0)
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]  # [reference][prediction]; invalid predictions are not in it, see below
    invalid: int  # predictions outside `labels` (or None): counted wrong, reported here
    invalid_by_label: dict[str, int]  # the same, by reference label: row sum + this = support

    def as_dict(self) -> dict[str, float]:
        out = {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "invalid": float(self.invalid)}
        for label, s in self.per_class.items():
            out |= {f"precision/{label}": s.precision, f"recall/{label}": s.recall, f"f1/{label}": s.f1}
            out[f"support/{label}"] = float(s.support)
        return out


def classification(
    predictions: Sequence[str | None], references: Sequence[str], labels: Sequence[str]
) -> ClassificationScores:
    """Scores parsed label predictions (see `parse.match_label`) against reference labels, in `labels`' order."""
    labels = _check_labels(references, labels)
    _check_lengths(predictions, references)
    y_pred = _with_invalid(predictions, labels)
    precision, recall, f1, support = precision_recall_fscore_support(references, y_pred, labels=labels, zero_division=0)
    invalid_by_label = Counter(r for r, p in zip(references, y_pred, strict=True) if p == _INVALID)
    return ClassificationScores(
        labels=labels,
        accuracy=float(accuracy_score(references, y_pred)),
        macro_f1=_macro_f1(y_pred, references, labels),
        per_class={
            label: ClassScores(float(p), float(r), float(f), int(s))
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        confusion=confusion_matrix(references, y_pred, labels=labels).tolist(),
        invalid=sum(invalid_by_label.values()),
        invalid_by_label={label: invalid_by_label.get(label, 0) for label in labels},
    )


def macro_f1(predictions: Sequence[str | None], references: Sequence[str], labels: Sequence[str]) -> float:
    """`classification(...).macro_f1` alone: one scikit-learn call, for a bootstrap that recomputes it often."""
    return _macro_f1(_with_invalid(predictions, labels), references, labels)


def _macro_f1(y_pred: list[str], references: Sequence[str], labels: Sequence[str]) -> float:
    return float(f1_score(references, y_pred, labels=list(labels), average="macro", zero_division=0))


def _with_invalid(predictions: Sequence[str | None], labels: Sequence[str]) -> list[str]:
    # Out-of-set predictions become one sentinel class that is not in `labels`: scikit-learn then counts them
    # as wrong (a false negative for the reference class, a false positive for no class).
    label_set = set(labels)
    return [p if p in label_set else _INVALID for p in predictions]


def _check_labels(references: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    if not labels:
        raise ValueError("classification needs `labels`: the full label set, in the order to report it")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels repeat: {list(labels)}")
    label_set = set(labels)
    for i, ref in enumerate(references):
        if ref not in label_set:
            raise ValueError(f"reference {i} is {ref!r}, which is not one of the labels {list(labels)}")
    return list(labels)


# --- summarization --------------------------------------------------------------------------------------------


@cache
def _rouge() -> rouge_scorer.RougeScorer:
    # The default tokenizer is a regex (lower-case, [a-z0-9] runs), so no nltk data is downloaded; it drops
    # non-Latin text, as the original ROUGE-1.5.5 does. rougeL (not rougeLsum) needs no sentence splitter.
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_per_example(predictions: Sequence[str], references: Sequence[Reference]) -> dict[str, list[float]]:
    """ROUGE F-measure per row; with several references, the best one per ROUGE type (`score_multi`)."""
    _check_lengths(predictions, references)
    out: dict[str, list[float]] = {k: [] for k in ROUGE_TYPES}
    for pred, ref in zip(predictions, references, strict=True):
        scores = _rouge().score_multi(_ref_list(ref), pred)
        for k in ROUGE_TYPES:
            out[k].append(scores[k].fmeasure)
    return out


# --- extractive / closed QA -----------------------------------------------------------------------------------


def squad_normalize(text: str) -> str:
    """The official SQuAD v1.1 `normalize_answer`, re-implemented: lower-case, drop ASCII punctuation, drop the
    articles a/an/the, collapse whitespace.

    Why not a package: `evaluate`'s squad fetches its script from a hub; torchmetrics' `squad` works offline but
    its public API takes id-keyed dicts and returns corpus tensors only (per-row scores, which the bootstrap needs,
    are private `_`-functions), for two more dependencies. This
    function and the two below follow the official script line by line, including its edge case: F1 is 0 when
    the prediction or the answer normalises to nothing (v2.0 would give 1 when both are empty).
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def squad_exact_match(prediction: str, answers: Reference) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    pred = squad_normalize(prediction)
    return float(any(pred == squad_normalize(a) for a in _ref_list(answers)))


def squad_f1(prediction: str, answers: Reference) -> float:
    """Bag-of-tokens F1 against each gold answer; the best one counts."""
    pred_tokens = squad_normalize(prediction).split()
    best = 0.0
    for answer in _ref_list(answers):
        gold_tokens = squad_normalize(answer).split()
        same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
        if same:
            precision, recall = same / len(pred_tokens), same / len(gold_tokens)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def numeric_match(prediction: str, answers: Reference) -> float:
    """1.0 when the prediction's number equals any gold answer's number ("$18.00" = "18", "-7" ≠ "7", "1.8" ≠ "18");
    a side without a number matches nothing. For numbers F1 is this same score: partial credit for sharing digits
    would reward 17 for 1.7."""
    value = number_value(prediction)
    return float(value is not None and any(value == number_value(a) for a in _ref_list(answers)))


# --- translation ----------------------------------------------------------------------------------------------


def translation(predictions: Sequence[str], references: Sequence[Reference], tokenize: str = "13a") -> dict[str, float]:
    """Corpus BLEU and chrF with sacrebleu's defaults (`tokenize` is BLEU's: "13a", or "zh", "ja-mecab", ...)."""
    _check_lengths(predictions, references)
    streams = _reference_streams(references)
    scores = {name: _sacrebleu(name, tokenize).corpus_score(list(predictions), streams) for name in _SACREBLEU}
    return {name: float(score.score) for name, score in scores.items()}


def translation_stats(
    predictions: Sequence[str | None], references: Sequence[Reference], metric: str, tokenize: str = "13a"
) -> tuple[np.ndarray, Callable[[list[int]], float]]:
    """Per-row sufficient statistics of corpus BLEU or chrF (rows × counts), and the function that turns their
    column sums into the corpus score, so that a bootstrap re-scores a resample by summing instead of
    re-tokenising. These are sacrebleu's `_extract_corpus_statistics` and `_compute_score_from_stats`, the pair
    its own paired significance tests (`sacrebleu.significance`) use; a unit test checks the scores equal
    `translation()`'s, which uses only the public API."""
    if metric not in _SACREBLEU:
        raise ValueError(f"translation_stats covers {', '.join(_SACREBLEU)}, not {metric!r}")
    _check_lengths(predictions, references)
    scorer = _sacrebleu(metric, tokenize)
    stats = np.asarray(scorer._extract_corpus_statistics(_texts(predictions), _reference_streams(references)))
    return stats.astype(np.int64), lambda sums: float(scorer._compute_score_from_stats(sums).score)


_SACREBLEU = ("bleu", "chrf")


def _sacrebleu(metric: str, tokenize: str) -> BLEU | CHRF:
    # The same settings as sacrebleu.corpus_bleu / corpus_chrf with their defaults.
    return BLEU(tokenize=tokenize) if metric == "bleu" else CHRF()


def _reference_streams(references: Sequence[Reference]) -> list[list[str | None]]:
    """Per-row reference lists → sacrebleu's reference streams; None pads rows that have fewer references."""
    rows = [_ref_list(r) for r in references]
    width = max(len(r) for r in rows)
    return [[r[k] if k < len(r) else None for r in rows] for k in range(width)]


# --- the uniform interface ------------------------------------------------------------------------------------


def compute(
    task: str,
    predictions: Sequence[str | None],
    references: Sequence[Reference],
    labels: Sequence[str] | None = None,
    numeric: bool = False,
) -> dict[str, float]:
    """Corpus metrics of one task (see the module docstring). `labels` is required for classification only;
    `numeric` (qa only) compares answers as numbers."""
    _check_task(task, numeric)
    if not predictions:
        raise ValueError("no examples to score")
    if task == "classification":
        return classification(predictions, _single(references), labels).as_dict()
    texts = _texts(predictions)
    if task == "translation":
        return translation(texts, references)
    return {k: float(np.mean(v)) for k, v in per_example(task, texts, references, numeric=numeric).items()}


def per_example(
    task: str,
    predictions: Sequence[str | None],
    references: Sequence[Reference],
    labels: Sequence[str] | None = None,
    numeric: bool = False,
) -> dict[str, list[float]]:
    """Per-row scores (keys: `PER_EXAMPLE_KEYS[task]`); `labels`, when given, validates classification references;
    `numeric` (qa only) scores EM and F1 as `numeric_match`."""
    _check_task(task, numeric)
    _check_lengths(predictions, references)
    if task == "classification":
        refs = _single(references)
        if labels is not None:
            _check_labels(refs, labels)
        return {"accuracy": [float(p == r) for p, r in zip(predictions, refs, strict=True)]}
    texts = _texts(predictions)
    if task == "summarization":
        return rouge_per_example(texts, references)
    if task == "qa" and numeric:
        matches = [numeric_match(p, r) for p, r in zip(texts, references, strict=True)]
        return {"exact_match": matches, "f1": list(matches)}
    if task == "qa":
        return {
            "exact_match": [squad_exact_match(p, r) for p, r in zip(texts, references, strict=True)],
            "f1": [squad_f1(p, r) for p, r in zip(texts, references, strict=True)],
        }
    return {
        "sentence_chrf": [
            float(sacrebleu.sentence_chrf(p, _ref_list(r)).score) for p, r in zip(texts, references, strict=True)
        ]
    }


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(summed token negative log-likelihood / token count); inf when that overflows."""
    if tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got {tokens}")
    try:
        return math.exp(nll_sum / tokens)
    except OverflowError:
        return math.inf


# --- checks ---------------------------------------------------------------------------------------------------


def _check_task(task: str, numeric: bool = False) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if numeric and task != "qa":
        raise ValueError(f"numeric answers are scored for qa, not {task}")


def _check_lengths(predictions: Sequence[object], references: Sequence[object]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _ref_list(ref: Reference) -> list[str]:
    refs = [ref] if isinstance(ref, str) else list(ref)
    if not refs:
        raise ValueError("a row has an empty list of references")
    return refs


def _single(references: Sequence[Reference]) -> list[str]:
    for i, ref in enumerate(references):
        if not isinstance(ref, str):
            raise ValueError(f"classification takes one reference label per row; row {i} has {ref!r}")
    return list(references)  # type: ignore[arg-type]


def _texts(predictions: Sequence[str | None]) -> list[str]:
    """A generation that could not be parsed (None) scores as the empty string: wrong, never skipped."""
    return ["" if p is None else p for p in predictions]
