"""The headline of a run with a task, for report.html, MODEL_CARD.md and the end-of-run summary alike: the tuned
model, the strongest base (named), every other baseline and the trivial baseline, on the task's headline metrics.

    for row in headline_rows(base_eval, tuned_eval): print(row.role, row.name, row.metrics)
    trivial_warning(tuned_eval)   # a sentence when the tuned model does not beat the trivial baseline, else None
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.eval.baselines import NAMES, ORDER
from tunesmith.eval.tasks import HEADLINE


@dataclass
class HeadlineRow:
    role: str  # tuned | strongest base | base | trivial
    name: str
    method: str
    metrics: dict[str, float]


def headline_metrics(tuned_eval: dict) -> tuple[str, ...]:
    return HEADLINE[tuned_eval["task"]["task"]]


def headline_rows(base_eval: dict, tuned_eval: dict) -> list[HeadlineRow]:
    """Tuned first, then the strongest base, the other baselines (in ORDER) and the trivial baseline. A run written
    before baselines existed has only the zero-shot generation base."""
    tuned = tuned_eval["task"]
    rows = [HeadlineRow("tuned", "tuned model", tuned_eval.get("task_method") or "greedy answer", tuned["metrics"])]
    baselines = base_eval.get("baselines") or {"generation_zero_shot": base_eval["task"]}
    strongest = base_eval.get("strongest") or "generation_zero_shot"
    names = sorted(baselines, key=lambda n: (n != strongest, ORDER.index(n) if n in ORDER else len(ORDER)))
    for name in names:
        role = "strongest base" if name == strongest else "base"
        method = baselines[name].get("method") or base_eval.get("task_method") or ""
        rows.append(HeadlineRow(role, f"base: {NAMES.get(name, name)}", method, baselines[name]["metrics"]))
    trivial = base_eval.get("trivial")
    if trivial:
        rows.append(HeadlineRow("trivial", f"trivial: {trivial['name']}", trivial["method"], trivial["metrics"]))
    return rows


def strongest_name(base_eval: dict) -> str:
    return NAMES.get(base_eval.get("strongest") or "generation_zero_shot", "generation, zero-shot")


def trivial_warning(tuned_eval: dict) -> str | None:
    verdict = tuned_eval.get("versus_trivial")
    return verdict["message"] if verdict and not verdict["beats"] else None
