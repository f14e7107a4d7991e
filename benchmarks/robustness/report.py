"""Results of a harness run: one line per case, the per-class summary, and the JSON and markdown tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common import Verdict


@dataclass
class Result:
    klass: str
    name: str
    verdict: Verdict
    seconds: float

    @property
    def status(self) -> str:
        return "SKIP" if self.verdict.skipped else "CLEAN" if self.verdict.clean else "FAIL"

    def line(self) -> str:
        return f"{self.klass:<7} | {self.name} | {self.status} | {self.verdict.why}"


def _counted(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.verdict.skipped]


def per_class(results: list[Result]) -> dict[str, tuple[int, int, int]]:
    """class -> (clean, counted, skipped)."""
    table: dict[str, tuple[int, int, int]] = {}
    for r in results:
        ok, total, skipped = table.get(r.klass, (0, 0, 0))
        if r.verdict.skipped:
            table[r.klass] = (ok, total, skipped + 1)
        else:
            table[r.klass] = (ok + r.verdict.clean, total + 1, skipped)
    return table


def summary(results: list[Result], seconds: float) -> str:
    lines = ["", f"{'class':<8}{'clean':>7}{'of':>6}{'skipped':>9}"]
    for klass, (ok, total, skipped) in per_class(results).items():
        lines.append(f"{klass:<8}{ok:>7}{total:>6}{skipped:>9}")
    counted = _counted(results)
    ok = sum(r.verdict.clean for r in counted)
    lines.append(f"{ok} handled cleanly of {len(counted)} ({seconds / 60:.1f} min)")
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], seconds: float) -> None:
    rows = [{"class": r.klass, "name": r.name, "status": r.status, "why": r.verdict.why,
             "seconds": round(r.seconds, 2)} for r in results]  # fmt: skip
    path.write_text(json.dumps({"seconds": round(seconds), "cases": rows}, indent=1) + "\n", encoding="utf-8")


def markdown(results: list[Result], seconds: float, argv: list[str]) -> str:
    counted = _counted(results)
    ok = sum(r.verdict.clean for r in counted)
    out = [f"`python benchmarks/robustness/run.py {' '.join(argv)}`: **{ok} handled cleanly of {len(counted)}** "
           f"in {seconds / 60:.1f} min", "", "| class | clean | of | skipped |", "|---|---:|---:|---:|"]  # fmt: skip
    for klass, (good, total, skipped) in per_class(results).items():
        out.append(f"| {klass} | {good} | {total} | {skipped} |")
    failing = [r for r in counted if not r.verdict.clean]
    if failing:
        out += ["", "Failing cases:", ""]
        out += [f"- {r.klass}: {r.name} — {r.verdict.why.replace('|', '/')}" for r in failing]
    not_run = [r for r in results if r.verdict.skipped and r.verdict.why.startswith("not run")]
    if not_run:
        out += ["", f"{len(not_run)} cases were not run (the --budget-min time budget ran out)."]
    skipped = [r for r in results if r.verdict.skipped and not r.verdict.why.startswith("not run")]
    if skipped:
        out += ["", "Skipped here:", ""]
        out += [f"- {r.klass}: {r.name} — {r.verdict.why}" for r in skipped]
    return "\n".join(out) + "\n"
