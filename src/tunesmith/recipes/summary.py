"""What a finished run prints: base vs tuned numbers and answers to the same held-out prompts, side by side."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunesmith.eval.headline import headline_metrics, headline_rows, strongest_name, trivial_warning
from tunesmith.recipes.train import RunResult
from tunesmith.report.html import eval_rows, forgetting_rows, task_lines


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
    if result.base.get("general") and result.tuned.get("general"):
        for label, base, tuned, change, interval, verdict in forgetting_rows(result.base, result.tuned):
            shown = f"{change} {interval}".strip() + (f" {verdict}" if verdict == "worse" else "")
            numbers.add_row(f"forgetting: {label}", base, tuned, shown)
    console.print(numbers)
    over = (result.tuned.get("forgetting") or {}).get("over_budget")
    if over:
        console.print(f"note: the forgetting budget is exceeded: {'; '.join(over)}", style="bold red", highlight=False)
    stop = result.tuned.get("budget_stop")
    if stop:
        console.print(
            f"stopped at step {stop['stopped_at']} (forgetting budget); final/ is step {stop['kept_step']}",
            highlight=False,
        )
    comparison = result.tuned.get("comparison")
    if comparison:
        print_headline(result.base, result.tuned, console)
        title = f"{result.tuned['task']['task']}: tuned vs the strongest base, {strongest_name(result.base)}"
        console.print(comparison_table(f"{title} (paired bootstrap 95% interval)", "tuned", comparison))
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


def comparison_table(title: str, tuned: str, comparison: dict) -> Table:
    """Per metric: the strongest base, the tuned model (named `tuned`), the change and its paired 95% interval."""
    table = Table(title=title)
    for column in ("metric", "strongest base", tuned, "change", "95% interval"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, d in comparison.items():
        interval = f"[{d['low']:+.4f}, {d['high']:+.4f}]"
        table.add_row(metric, f"{d['base']:.4f}", f"{d['tuned']:.4f}", f"{d['diff']:+.4f}", interval)
    return table


def print_headline(base: dict, tuned: dict, console: Console) -> None:
    """Tuned, the strongest base, every other baseline and the trivial baseline; in words when the tuned model does
    not beat the trivial baseline."""
    metrics = headline_metrics(tuned)
    table = Table(title=f"{tuned['task']['task']} on held-out rows: tuned and every baseline")
    for column in ("model", "role", *metrics):
        table.add_column(column, justify="left" if column in ("model", "role") else "right")
    for row in headline_rows(base, tuned):
        values = (f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics)
        table.add_row(row.name, row.role, *values, style="bold" if row.role == "tuned" else None)
    console.print(table)
    warning = trivial_warning(tuned)
    if warning:
        console.print(f"note: {warning}", style="bold red", highlight=False)


def print_sweep(summary: dict, folder, console: Console | None = None) -> None:
    """The trials (validation split) and the winner's one score on the test split."""
    console = console or Console()
    names = summary["objective"]
    trials = Table(title=f"sweep: {summary['trials_run']} trials on the validation split")
    for column in ("trial", "state", " / ".join(names), "seconds", "note"):
        trials.add_column(column, justify="right" if column in ("trial", "seconds") else "left")
    for t in summary["trials"]:
        values = ", ".join(f"{v:.4f}" for v in t["values"] or [])
        note = t["reason"] or (f"pruned at step {t['pruned_at']}" if t["pruned_at"] else "")
        style = "bold" if t["number"] == summary["best"]["trial"] else None
        trials.add_row(str(t["number"]), t["state"], values, f"{t['seconds'] or 0:.0f}", note, style=style)
    console.print(trials)
    best, test = summary["best"], summary["test"]
    console.print(f"best on validation: trial {best['trial']} with {best['params']}", highlight=False)
    comparison = test.get("comparison") or {}
    if comparison:
        title = f"winner on the test split (no trial saw it) vs the strongest base ({test['comparison_base']})"
        console.print(comparison_table(title, "winner", comparison))
    else:
        console.print(f"winner on the test split: held-out loss {test['metrics']['loss']:.4f}", highlight=False)
    console.print(
        f"{summary['finished']} finished, {summary['pruned']} pruned, {summary['failed']} failed in "
        f"{summary['seconds'] / 60:.1f} min; report: {folder}/sweep.html, best config: {folder}/sweep.json"
    )


def print_select(summary: dict, folder, console: Console | None = None) -> None:
    from tunesmith.report.select_html import candidate_table

    console = console or Console()
    header, rows = candidate_table(summary)
    table = Table(title=f"candidate bases: zero-shot and after a {summary['steps']}-step probe, same held-out rows")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*map(str, row), style="bold" if row[0] == summary["winner"] else None)
    console.print(table)
    console.print(f"winner: {summary['winner']}: {summary['reason']}", highlight=False)
    console.print(f"report: {folder}/select.html, table: {folder}/select.json")
