"""report.html: what a run did and whether it helped, as one self-contained page (inline CSS and SVG, no network).

    from tunesmith.report.run_html import write_run_report
    write_run_report(Path("runs/gsm8k-lora"))      # reads the run directory, writes report.html beside it

Loss curves (train and held-out), the base-vs-tuned table (and held-out loss per dataset), the task scores with
their bootstrap intervals, the confusion matrix of a classification task, scores per slice, prompt sensitivity, and
the held-out answers side by side, with the ones that changed first.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tunesmith.eval.headline import headline_metrics, headline_rows, strongest_name, trivial_warning
from tunesmith.report.html import (
    BAR,
    CSS,
    EXPORT_HEADER,
    FAMILY_NAMES,
    Raw,
    budget_use,
    eval_rows,
    export_rows,
    figure,
    forgetting_rows,
    h,
    num,
    table,
)
from tunesmith.report.task_html import changed_section, dataset_section, sensitivity_section, slice_sections

DATASET_COLOURS = ("#bf8700", "#1a7f37", "#8250df", "#57606a", "#bc4c00")


def svg_lines(series: list[tuple[str, str, list[tuple[float, float]]]], width: int = 720, height: int = 260) -> str:
    """Line chart of (name, colour, [(x, y)]) series on shared axes, with a legend; single points drawn as dots."""
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return ""
    left, right, top, bottom = 52, 16, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    y0, y1 = min(y for _, y in points), max(y for _, y in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return left + plot_w * (x - x0) / (x1 - x0)

    def sy(y: float) -> float:
        return top + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for frac in (0, 0.5, 1):
        y = y0 + frac * (y1 - y0)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eaeef2"/>'
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end" fill="#59636e">{y:.3g}</text>'
        )
    for x in (x0, (x0 + x1) / 2, x1):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" '
            f'fill="#59636e">{num(round(x))}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle" '
        'fill="#59636e">optimizer step</text>'
    )
    for i, (name, colour, pts) in enumerate(series):
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        for x, y in pts if len(pts) <= 40 else []:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"><title>step {x:g}: {y:.4f}'
                "</title></circle>"
            )
        parts.append(
            f'<rect x="{left + plot_w - 150}" y="{top + 4 + 16 * i}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + plot_w - 134}" y="{top + 13 + 16 * i}" font-size="12">{h(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _confusion(task: dict, labels: list[str]) -> str:
    counts = {(r, p): 0 for r in labels for p in [*labels, None]}
    for ref, pred in zip(task["references"], task["predictions"], strict=True):
        key = (ref, pred if pred in labels else None)
        if key in counts:
            counts[key] += 1
    peak = max(counts.values()) or 1
    head = "".join(f"<th>{h(p)}</th>" for p in labels) + "<th>unreadable</th>"
    rows = []
    for ref in labels:
        cells = []
        for pred in [*labels, None]:
            n = counts[(ref, pred)]
            shade = int(235 - 150 * n / peak)
            style = f"background:rgb({shade},{shade + 10 if shade < 245 else 245},255)" if n else ""
            cells.append(f'<td class="n" style="{style}">{n}</td>')
        rows.append(f"<tr><th>{h(ref)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>reference \\ predicted</th>{head}</tr>{''.join(rows)}</table>"


def _loss_curves(metrics: list[dict]) -> str:
    train = [(m["step"], m["loss"]) for m in metrics if "lr" in m]
    evals = [m for m in metrics if m.get("split") == "eval"]
    series = [("train loss", BAR, train), ("held-out loss", "#cf222e", [(m["step"], m["loss"]) for m in evals])]
    names = list(dict.fromkeys(name for m in evals for name in m.get("datasets") or {}))
    for name, colour in zip(names, DATASET_COLOURS, strict=False):  # several eval sets: each one's curve
        points = [(m["step"], m["datasets"][name]["loss"]) for m in evals if name in (m.get("datasets") or {})]
        series.append((f"held-out: {name}", colour, points))
    return svg_lines(series)


def _forgetting_section(base: dict, tuned: dict, cfg: dict, metrics: list[dict]) -> list[str]:
    """Per probe family, base vs tuned with paired intervals; with a forgetting budget, the share of it each family
    used at every evaluation during training, against the budget line, and a budget stop in words."""
    header = ["probe", "base", "tuned", "change", "paired 95% interval", "verdict"]
    out = [
        "<h3>Forgetting: general ability, base vs tuned</h3>",
        table(header, forgetting_rows(base, tuned), (1, 2, 3)),
    ]
    budget = (cfg.get("eval") or {}).get("forgetting_budget")
    over = (tuned.get("forgetting") or {}).get("over_budget")
    if over:
        out.append(f'<div class="banner bad">The final model exceeds the forgetting budget: {h("; ".join(over))}</div>')
    stop = tuned.get("budget_stop")
    if stop:
        out.append(
            f'<div class="banner ok">Stopped at step {stop["stopped_at"]} ({h("; ".join(stop["over"]))}); final/ is '
            f"step {stop['kept_step']}, the lowest held-out loss within the budget ({stop['kept_loss']:.4f}).</div>"
        )
    records = [m for m in metrics if m.get("split") == "forgetting"]
    if budget and records:
        use = budget_use(records, budget["max_drop"], budget["max_nll_increase"])
        steps = [r["step"] for r in records]
        series = [(FAMILY_NAMES.get(n, n), c, pts) for (n, pts), c in zip(use.items(), DATASET_COLOURS, strict=False)]
        series.append(("budget", "#cf222e", [(min(steps), 1.0), (max(steps), 1.0)]))
        out.append(
            figure(
                svg_lines(series),
                "share of the forgetting budget used by each probe family at each evaluation "
                "(1 = the budget line); the held-out loss curve is under Loss",
            )
        )
    return out


def _preference_section(tuned: dict) -> list[str]:
    """A preference run's proof of gain: base vs tuned on the held-out pairs with paired intervals (the ranking per
    token, and DPO's implicit reward against it), the judge's win rate, the length of generated answers."""
    compared = [tuned[key] for key in ("preference", "reward_ranking") if tuned.get(key)]
    if not compared:
        return []
    rows = [  # a reward model's `preference` is its ranking accuracy, and names no `what`
        (g.get("what", "ranking accuracy"), g.get("base_method", ""), g.get("tuned_method", ""), f"{g['base']:.3f}",
         f"{g['tuned']:.3f}", f"{g['diff']:+.3f}", f"[{g['low']:+.3f}, {g['high']:+.3f}]")
        for g in compared
    ]  # fmt: skip
    header = ["measure", "base ranks by", "tuned ranks by", "base", "tuned", "change", "95% interval (paired)"]
    sections = [
        f"<h2>Preference ({num(tuned['metrics']['rows'])} held-out rows)</h2>",
        table(header, rows, (3, 4, 5, 6)),
    ]
    judged, lengths = tuned.get("win_rate"), tuned.get("lengths") or {}
    if judged:
        sections.append(
            f"<p>Judged by the reward model {h(judged['judge'])} on {num(judged['rows'])} held-out prompts, the tuned "
            f"answer scores above the base's in {judged['win_rate']:.3f} of them [{judged['low']:.3f}, "
            f"{judged['high']:.3f}] (95%; ties count half).</p>"
        )
    if lengths.get("base") is not None and lengths.get("tuned") is not None:
        sections.append(
            f"<p>Generated answers: {lengths['base']:.1f} words (base), {lengths['tuned']:.1f} (tuned).</p>"
        )
    return sections


def render_run_report(run_dir: Path) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    base = json.loads((run_dir / "eval" / "base.json").read_text(encoding="utf-8"))
    tuned = json.loads((run_dir / "eval" / "tuned.json").read_text(encoding="utf-8"))
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x]
    b, t = base["metrics"], tuned["metrics"]
    sections = [
        f"<h1>{h(run_dir.name)}</h1>",
        f'<div class="meta">base {h(cfg["model"]["base"])} · {h(cfg["adapter"]["method"])} · '
        f"{num(max((m['step'] for m in metrics), default=0))} steps · {num(t['rows'])} held-out rows</div>",
        *_headline(base, tuned),
        "<h2>Held-out evaluation</h2>",
        table(
            ["metric", "base", "tuned", "change"],
            [(name, f"{b[k]:.4f}", f"{t[k]:.4f}", f"{t[k] - b[k]:+.4f}") for k, name in eval_rows(tuned)],
            numeric=(1, 2, 3),
        ),
    ]
    sections += dataset_section(b, t)
    if base.get("general") and tuned.get("general"):
        sections += _forgetting_section(base, tuned, cfg, metrics)
    sections += _preference_section(tuned)
    comparison = tuned.get("comparison")
    if comparison:
        base_task = _strongest_task(base)
        sections.append(f"<h2>Task: {h(tuned['task']['task'])}, tuned vs the strongest base</h2>")
        sections.append(f'<p class="note">base = {h(strongest_name(base))}, the strongest of the baselines above.</p>')
        sections.append(
            table(
                ["metric", "strongest base", "tuned", "change", "95% interval", "p (tuned ≤ base)"],
                [
                    (
                        m,
                        f"{d['base']:.4f}",
                        f"{d['tuned']:.4f}",
                        f"{d['diff']:+.4f}",
                        f"[{d['low']:+.4f}, {d['high']:+.4f}]",
                        f"{d['p_value']:.3f}",
                    )
                    for m, d in comparison.items()
                ],
                numeric=(1, 2, 3, 4, 5),
            )
        )
        labels = cfg.get("task", {}).get("labels") or []
        if tuned["task"]["task"] == "classification" and labels:
            sections.append("<h3>Confusion matrix, tuned</h3>" + _confusion(tuned["task"], labels))
            title = f"<h3>Confusion matrix, base ({h(strongest_name(base))})</h3>"
            sections.append(title + _confusion(base_task, labels))
        sections += slice_sections(base_task, tuned["task"])
        sections += sensitivity_section(base["task"], tuned["task"])
        sections += changed_section(base_task, tuned["task"])
    sections.append("<h2>Loss</h2>" + _loss_curves(metrics))
    exported = run_dir / "eval" / "export.json"
    if exported.is_file():
        summary = json.loads(exported.read_text(encoding="utf-8"))
        sections.append(f"<h2>Export parity ({num(summary['rows'])} held-out rows, against the run's own model)</h2>")
        sections.append(table(EXPORT_HEADER, export_rows(summary), numeric=(2, 3, 4, 5, 6, 7)))
    pairs = list(zip(base.get("samples", []), tuned.get("samples", []), strict=False))
    if pairs:
        pairs.sort(key=lambda p: p[0]["answer"] == p[1]["answer"])
        sections.append("<h2>Held-out prompts, greedy answers</h2>")
        sections.append(
            table(
                ["prompt", "base", "tuned"],
                [(bs["prompt"], Raw(_pre(bs["answer"])), Raw(_pre(ts["answer"]))) for bs, ts in pairs],
            )
        )
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{h(run_dir.name)} · tunesmith run'
        f"</title><style>{CSS}</style></head><body><main>{body}"
        "<footer>Written by tunesmith from the run directory (config.yaml, metrics.jsonl, eval/).</footer>"
        "</main></body></html>"
    )


def _strongest_task(base: dict) -> dict:
    """The base's task section the tuned model is compared with (eval/baselines.py), else its generation one."""
    return (base.get("baselines") or {}).get(base.get("strongest") or "", base["task"])


def _headline(base: dict, tuned: dict) -> list[str]:
    """The first screen of a task run: tuned, the strongest base (named), every other baseline, the trivial
    baseline, and in words when the tuned model does not beat the trivial baseline."""
    if "task" not in tuned or "task" not in base:
        return []
    metrics = headline_metrics(tuned)
    sections = [f"<h2>Headline: {h(tuned['task']['task'])}</h2>"]
    warning = trivial_warning(tuned)
    if warning:
        sections.append(f'<div class="banner bad"><b>{h(warning[0].upper() + warning[1:])}.</b></div>')
    rows = [
        (
            Raw(f"<b>{h(row.name)}</b>") if row.role in ("tuned", "strongest base") else row.name,
            row.role,
            *(f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics),
            row.method,
        )
        for row in headline_rows(base, tuned)
    ]
    numeric = tuple(range(2, 2 + len(metrics)))
    sections.append(table(["model", "role", *metrics, "how"], rows, numeric=numeric))
    return sections


def _pre(text: str) -> str:
    return f'<div style="white-space:pre-wrap">{h(text)}</div>'


def write_run_report(run_dir: Path) -> Path:
    path = run_dir / "report.html"
    path.write_text(render_run_report(run_dir), encoding="utf-8")
    return path
