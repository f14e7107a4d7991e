"""report.html's task sections beyond the headline table: scores per slice (with the largest gap), prompt
sensitivity (each prompt template, base and tuned, with mean and spread), held-out loss per dataset, and the rows
whose prediction tuning changed."""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.eval.parse import number_text, number_value
from tunesmith.report.html import BAR, h, table

TUNED = BAR
BASE = "#8c959f"


def svg_paired_bars(items: Sequence[tuple[str, float, float]], width: int = 640, label: str = "") -> str:
    """Horizontal bar pairs (base grey, tuned blue) per row label, each value written at its bar's end."""
    if not items:
        return ""
    row, label_w = 34, min(220, 12 + 7 * max(len(str(k)) for k, _, _ in items))
    peak = max(max(b, t) for _, b, t in items) or 1
    plot_w = width - label_w - 70
    height = row * len(items) + 24
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (name, base, tuned) in enumerate(items):
        y = 4 + i * row
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 19}" font-size="12" text-anchor="end">{h(str(name)[:30])}</text>'
        )
        for j, (value, colour) in enumerate(((base, BASE), (tuned, TUNED))):
            w = plot_w * value / peak
            top = y + 3 + j * 14
            parts.append(
                f'<rect x="{label_w}" y="{top}" width="{max(w, 1):.1f}" height="12" fill="{colour}"/>'
                f'<text x="{label_w + w + 5:.1f}" y="{top + 10}" font-size="11" fill="#424a53">{value:.3f}</text>'
            )
    legend_y = height - 8
    parts.append(
        f'<rect x="{label_w}" y="{legend_y - 9}" width="10" height="10" fill="{BASE}"/>'
        f'<text x="{label_w + 14}" y="{legend_y}" font-size="11">base</text>'
        f'<rect x="{label_w + 60}" y="{legend_y - 9}" width="10" height="10" fill="{TUNED}"/>'
        f'<text x="{label_w + 74}" y="{legend_y}" font-size="11">tuned {h(label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def slice_sections(base_task: dict, tuned_task: dict) -> list[str]:
    sections = []
    for column, tuned in (tuned_task.get("slices") or {}).items():
        base = (base_task.get("slices") or {}).get(column, {"slices": {}, "gaps": {}})
        metric = next(iter(tuned["gaps"]), None) or _first_metric(tuned)
        if metric is None:
            continue
        sections.append(f"<h3>Per slice: {h(column)} ({h(metric)})</h3>")
        items = [
            (f"{value} (n={s['n']})", base["slices"].get(value, {}).get(metric, 0.0), s[metric])
            for value, s in list(tuned["slices"].items())[:20]
        ]
        sections.append(svg_paired_bars(items, label=metric))
        gaps = [
            (
                m,
                f"{base['gaps'][m]['gap']:.4f}" if m in base["gaps"] else "-",
                f"{g['gap']:.4f}",
                f"{g['high']} > {g['low']}",
            )
            for m, g in tuned["gaps"].items()
        ]
        if gaps:
            sections.append(table(["largest gap", "base", "tuned", "tuned: best > worst slice"], gaps, numeric=(1, 2)))
        sections.append(
            f'<p class="note">Gaps compare slices with at least {tuned["min_rows"]} rows; '
            f"{len(tuned['slices'])} slices in all (the 20 largest drawn).</p>"
        )
    return sections


def changed_section(base_task: dict, tuned_task: dict, shown: int = 20) -> list[str]:
    """The rows whose prediction tuning changed: fixed ones first, then broken ones, then the rest. A row with several
    gold answers lists them all; with numeric answers each side shows the value it was scored as ("18.00 (= 18)")."""
    refs = tuned_task["references"]
    n = len(refs)
    inputs = tuned_task.get("inputs") or base_task.get("inputs") or [""] * n
    numeric = bool(tuned_task.get("reference_numbers"))  # absent for text answers and in files from older versions
    base_numbers, tuned_numbers = _prediction_numbers(base_task, numeric), _prediction_numbers(tuned_task, numeric)
    rows = []
    for i in range(n):
        ref = _listed(refs[i])
        ref_number = _listed(tuned_task["reference_numbers"][i]) if numeric else [None] * len(ref)
        bp, tp = base_task["predictions"][i], tuned_task["predictions"][i]
        if bp == tp:
            continue
        right = (
            [p is not None and p in ref_number for p in (base_numbers[i], tuned_numbers[i])]
            if numeric
            else [p in ref for p in (bp, tp)]
        )
        cells = (
            inputs[i],
            " | ".join(_with_number(r, v) for r, v in zip(ref, ref_number, strict=True)),
            _with_number(bp, base_numbers[i]),
            _with_number(tp, tuned_numbers[i]),
        )
        rows.append((right, cells))
    # Fixed by tuning first, then broken by it, then the rest: the cases a reader wants to see.
    rows.sort(key=lambda row: (not row[0][1], not row[0][0]))
    return [
        f"<h3>Predictions that changed ({len(rows)} of {n})</h3>",
        table(["input", "reference", "base", "tuned"], [cells for _, cells in rows[:shown]]),
    ]


def _prediction_numbers(task: dict, numeric: bool) -> list[str | None]:
    """The value each prediction was scored as: saved by run_task, read again for results that did not save it
    (a baseline's)."""
    predictions = task["predictions"]
    if not numeric:
        return [None] * len(predictions)
    return task.get("prediction_numbers") or [number_text(number_value(p)) if p else None for p in predictions]


def _listed(value: str | list | None) -> list:
    return value if isinstance(value, list) else [value]


def _with_number(text: str | None, number: str | None) -> str:
    if not text:
        return "(unreadable)"
    return text if number is None or number == text else f"{text} (= {number})"


def _first_metric(report: dict) -> str | None:
    for scores in report["slices"].values():
        return next((k for k in scores if k != "n"), None)
    return None


def sensitivity_section(base_task: dict, tuned_task: dict) -> list[str]:
    tuned, base = tuned_task.get("prompt_sensitivity"), base_task.get("prompt_sensitivity")
    if not tuned or not base:
        return []
    metric = next(iter(tuned["scores"]))
    items = [
        (f"prompt {i}", b, t)
        for i, (b, t) in enumerate(zip(base["scores"][metric], tuned["scores"][metric], strict=True))
    ]
    rows = [
        (
            m,
            f"{base['mean'][m]:.4f} ± {base['std'][m]:.4f}",
            f"{tuned['mean'][m]:.4f} ± {tuned['std'][m]:.4f}",
            f"{base['range'][m]:.4f}",
            f"{tuned['range'][m]:.4f}",
        )
        for m in tuned["scores"]
    ]
    prompts = [(f"prompt {i}", t) for i, t in enumerate(tuned["templates"])]
    return [
        f"<h3>Prompt sensitivity ({len(items)} prompts)</h3>",
        svg_paired_bars(items, label=metric),
        table(["metric", "base mean ± sd", "tuned mean ± sd", "base range", "tuned range"], rows, numeric=(1, 2, 3, 4)),
        table(["", "template"], prompts),
    ]


def dataset_section(base_metrics: dict, tuned_metrics: dict) -> list[str]:
    tuned = tuned_metrics.get("datasets")
    if not tuned:
        return []
    base = base_metrics.get("datasets", {})
    rows = [
        (
            name,
            f"{base[name]['loss']:.4f}" if name in base else "-",
            f"{t['loss']:.4f}",
            f"{t['loss'] - base[name]['loss']:+.4f}" if name in base else "-",
            t["rows"],
        )
        for name, t in tuned.items()
    ]
    return [
        "<h3>Held-out loss per dataset</h3>",
        table(["dataset", "base", "tuned", "change", "rows"], rows, numeric=(1, 2, 3, 4)),
    ]
