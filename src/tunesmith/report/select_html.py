"""DIR/select.html: the candidate bases side by side (task metric with its interval, gain over zero-shot, loss,
forgetting, speed, memory, time) and the verdict, self-contained like every report."""

from __future__ import annotations

from pathlib import Path

from tunesmith.report.html import CSS, Raw, figure, h, svg_bars, table
from tunesmith.rundir import write_text


def _interval(low: float, high: float, signed: bool = False) -> str:
    return f"[{low:+.4f}, {high:+.4f}]" if signed else f"[{low:.4f}, {high:.4f}]"


def candidate_table(summary: dict) -> tuple[list[str], list[list[object]]]:
    """Header and rows of the comparison, shared by the page and the terminal."""
    task = summary["task"] != "none"
    metric = summary["candidates"][0].get("metric", "")
    header = ["base", "parameters"]
    header += [f"{metric} after probe", "95% interval", f"zero-shot {metric}", "gain (paired 95%)"] if task else []
    header += ["held-out loss", "forgetting (budget share)", "tokens/s", "peak MB", "wall s"]
    rows = []
    for c in summary["candidates"]:
        row: list[object] = [c["base"], f"{c['parameters']:,}" if c["parameters"] else ""]
        if task:
            t, g = c["tuned"], c["gain"]
            row += [f"{t['value']:.4f}", _interval(t["low"], t["high"]), f"{c['zero_shot']['value']:.4f}"]
            row.append(f"{g['diff']:+.4f} {_interval(g['low'], g['high'], signed=True)}")
        share = c.get("forgetting")
        row += [f"{c['held_out_loss']:.4f}", f"{share:.2f}" if share is not None else "not measured"]
        row += [f"{c['tokens_per_s'] or 0:.0f}", f"{c['peak_memory_mb'] or 0:.0f}", f"{c['wall_seconds']:.0f}"]
        rows.append(row)
    return header, rows


def write_select_report(folder: Path, summary: dict) -> Path:
    header, rows = candidate_table(summary)
    linked = [
        [Raw(f'<a href="{h(c["run_dir"])}/report.html">{h(r[0])}</a>'), *r[1:]]
        for r, c in zip(rows, summary["candidates"], strict=True)
    ]
    sections = [
        "<h1>Choosing the base</h1>",
        f'<div class="meta">{len(rows)} candidates, each scored zero-shot (strongest honest baseline) and after the '
        f"same {summary['steps']}-step LoRA probe on the same {summary['rows']['train']} training rows; all numbers "
        f"on the same {summary['rows']['held_out']} held-out rows.</div>",
        f'<div class="banner ok"><b>Winner: {h(summary["winner"])}</b>: {h(summary["reason"])}</div>',
        table(header, linked, numeric=tuple(range(1, len(header)))),
    ]
    if summary["task"] != "none":
        metric = summary["candidates"][0]["metric"]
        bars = [(c["base"], c["tuned"]["value"]) for c in summary["candidates"]]
        bars += [(f"{c['base']} zero-shot", c["zero_shot"]["value"]) for c in summary["candidates"]]
        sections.append(figure(svg_bars(bars), f"{metric}: after the probe, and zero-shot"))
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{h(folder.name)} · tunesmith select'
        f"</title><style>{CSS}</style></head><body><main>{''.join(sections)}"
        "<footer>Written by tunesmith from the candidates' run folders (select.json).</footer></main></body></html>"
    )
    path = folder / "select.html"
    write_text(path, page)
    return path
