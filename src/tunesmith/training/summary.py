"""What a finished run prints: base vs tuned numbers and answers to the same held-out prompts, side by side."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunesmith.report.html import eval_rows, task_lines
from tunesmith.training.recipe import RunResult


def print_result(result: RunResult, console: Console | None = None) -> None:
    console = console or Console()
    b, t = result.base["metrics"], result.tuned["metrics"]
    numbers = Table(title=f"held-out evaluation ({t['rows']} rows, {t['tokens']} trained tokens)")
    numbers.add_column("metric")
    numbers.add_column("base", justify="right")
    numbers.add_column("tuned", justify="right")
    numbers.add_column("change", justify="right")
    for key, label in eval_rows(result.tuned):
        numbers.add_row(label, f"{b[key]:.4f}", f"{t[key]:.4f}", f"{t[key] - b[key]:+.4f}")
    bg, tg = result.base.get("general"), result.tuned.get("general")
    if bg and tg:
        for key, label in (("text_perplexity", "general-text perplexity"), ("qa_accuracy", "general QA accuracy")):
            numbers.add_row(f"{label} (forgetting)", f"{bg[key]:.4f}", f"{tg[key]:.4f}", f"{tg[key] - bg[key]:+.4f}")
    console.print(numbers)
    comparison = result.tuned.get("comparison")
    if comparison:
        task = Table(title=f"{result.tuned['task']['task']} on held-out rows (paired bootstrap 95% interval)")
        for column in ("metric", "base", "tuned", "change", "95% interval"):
            task.add_column(column, justify="left" if column == "metric" else "right")
        for metric, d in comparison.items():
            interval = f"[{d['low']:+.4f}, {d['high']:+.4f}]"
            task.add_row(metric, f"{d['base']:.4f}", f"{d['tuned']:.4f}", f"{d['diff']:+.4f}", interval)
        console.print(task)
        for side in ("base", "tuned"):
            for line in task_lines(getattr(result, side).get("task", {})):
                console.print(f"{side}: {line}", highlight=False)
    samples = list(zip(result.base.get("samples", []), result.tuned.get("samples", []), strict=False))
    if samples:
        answers = Table(title="same held-out prompts, greedy answers", show_lines=True)
        answers.add_column("prompt", ratio=1)
        answers.add_column("base model", ratio=2)
        answers.add_column("tuned model", ratio=2)
        for before, after in samples:
            answers.add_row(before["prompt"], before["answer"], after["answer"])
        console.print(answers)
    console.print(f"run directory: {result.run_dir}  (final/ model, MODEL_CARD.md, metrics.jsonl)")
