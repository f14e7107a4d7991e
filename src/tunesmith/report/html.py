"""Building blocks for the self-contained HTML pages (audit, run report): one stylesheet, escaped tables, cards and
small hand-written SVG charts, so no page needs a plotting library, a script or the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from tunesmith.eval.general import family_share

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:36px 0 10px;padding-top:12px;border-top:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 8px;color:#424a53} .meta{color:#59636e;margin-bottom:14px}
nav a{margin-right:14px;color:#0969da;text-decoration:none} nav{margin:10px 0 6px}
.banner{padding:12px 16px;border-radius:8px;margin:14px 0} .bad{background:#ffebe9;border:1px solid #ff8182}
.ok{background:#dafbe1;border:1px solid #4ac26b} .banner ul{margin:6px 0 0 18px;padding:0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 12px}
.card{border:1px solid #d0d7de;border-radius:8px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px} .card span{color:#59636e;font-size:12px}
.card.warn{border-color:#d4a72c;background:#fff8c5} .card.alert{border-color:#ff8182;background:#ffebe9}
table{border-collapse:collapse;margin:6px 0 14px;width:100%;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.n{width:1%;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{max-width:520px;word-break:break-word}
td.r{white-space:nowrap;width:1%;font-size:12px} code{font-size:12px;color:#59636e;word-break:break-all}
.charts{display:flex;flex-wrap:wrap;gap:18px 24px} figure{margin:0;width:500px}
figcaption{font-size:12px;color:#59636e}
.note{color:#59636e;font-size:13px} footer{margin-top:40px;color:#59636e;font-size:12px}
"""
BAR = "#0969da"
# The held-out rows of every run's base-vs-tuned table, by default a causal LM's loss numbers. A method whose
# metrics read otherwise names them in its records ("metric_names": a head's "accuracy" is per row, and its
# perplexity, exp of a classification loss, would mean nothing).
LM_ROWS = (("loss", "eval loss"), ("perplexity", "perplexity"), ("token_accuracy", "token accuracy"))
# Records written before methods named their metrics: a head's said "objective": "head".
OLD_HEAD_ROWS = (("loss", "head eval loss (cross-entropy)"), ("token_accuracy", "head accuracy (rows)"))


def eval_rows(result: dict) -> tuple[tuple[str, str], ...]:
    """Which metrics to show for an eval/*.json result, and their names."""
    if result.get("metric_names"):
        return tuple(result["metric_names"].items())
    return OLD_HEAD_ROWS if result.get("objective") == "head" else LM_ROWS


def task_lines(task: dict) -> list[str]:
    """Plain-text lines for the largest slice gaps and the prompt sensitivity of one model's task section."""
    lines = []
    for column, report in (task.get("slices") or {}).items():
        for metric, gap in report["gaps"].items():
            lines.append(
                f"largest {metric} gap by {column}: {gap['gap']:.4f} ({gap['high']} > {gap['low']}, "
                f"slices of >= {report['min_rows']} rows)"
            )
    sensitivity = task.get("prompt_sensitivity")
    if sensitivity:
        for metric in sensitivity["scores"]:
            lines.append(
                f"{metric} over {len(sensitivity['templates'])} prompts: mean {sensitivity['mean'][metric]:.4f}, "
                f"sd {sensitivity['std'][metric]:.4f}, range {sensitivity['range'][metric]:.4f}"
            )
    return lines


MAX_ROWS = 20


def h(value: object) -> str:
    return escape(str(value))


def num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.{digits}f}"
    return f"{int(value):,}"


def pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def svg_histogram(hist: Sequence[Sequence[float]], xlabel: str, width: int = 500, height: int = 170) -> str:
    """Bars for [low, high, count] bins; hovering a bar shows its range and count."""
    if not hist:
        return ""
    left, bottom, top = 44, 34, 10
    plot_w, plot_h = width - left - 24, height - bottom - top  # room on the right for the last tick label
    peak = max(c for _, _, c in hist) or 1
    step = plot_w / len(hist)
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#8c959f"/>')
    for i, (lo, hi, count) in enumerate(hist):
        bar_h = plot_h * count / peak
        x = left + i * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(step - 2, 1):.1f}" height="{bar_h:.1f}" '
            f'fill="{BAR}"><title>{num(lo)}–{num(hi)}: {count:,}</title></rect>'
        )
    ticks = sorted({0, len(hist) // 2, len(hist)})
    for i in ticks:
        edge = hist[i][0] if i < len(hist) else hist[-1][1]
        parts.append(
            f'<text x="{left + i * step:.1f}" y="{top + plot_h + 14}" font-size="11" text-anchor="middle" '
            f'fill="#59636e">{num(edge)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle" '
        f'fill="#59636e">{h(xlabel)}</text>'
    )
    parts.append(f'<text x="{left - 6}" y="{top + 9}" font-size="11" text-anchor="end" fill="#59636e">{peak:,}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + plot_h}" font-size="11" text-anchor="end" fill="#59636e">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(items: Sequence[tuple[str, float]], width: int = 500, unit: str = "") -> str:
    """Horizontal bars, one per (label, value), values written at the bar's end."""
    if not items:
        return ""
    row, label_w = 22, min(180, 12 + 7 * max(len(str(k)) for k, _ in items))
    peak = max(v for _, v in items) or 1
    plot_w = width - label_w - 90
    height = row * len(items) + 6
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 3 + i * row
        w = plot_w * value / peak
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">{h(str(label)[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{BAR}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" fill="#424a53">{num(value)}{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{h(caption)}</figcaption></figure>" if svg else ""


def cards(items: Iterable[tuple[str, str, str]]) -> str:
    """(value, label, level) cards; level is '', 'warn' or 'alert'."""
    cells = "".join(f'<div class="card {lvl}"><b>{h(v)}</b><span>{h(k)}</span></div>' for v, k, lvl in items)
    return f'<div class="cards">{cells}</div>'


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (), refs: Sequence[int] = ()
) -> str:
    """A table; `numeric` columns are right-aligned, `refs` columns (FILE:LINE references) kept narrow."""
    head = "".join(f"<th>{h(c)}</th>" for c in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = "n" if i in numeric else "r" if i in refs else "t"
            cells.append(f'<td class="{cls}">{cell if isinstance(cell, Raw) else h(cell)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>" if body else ""


def refs(refs: Sequence[str], limit: int = 3) -> Raw:
    return Raw("<br>".join(h(r) for r in refs[:limit]))


class Raw(str):
    """Markup that table() must not escape (built from escaped parts)."""


# Probe families of eval/general.py as people read them.
FAMILY_NAMES = {
    "knowledge": "general questions (accuracy)",
    "text": "general text (NLL per token)",
    "chat": "chat, HH-RLHF (NLL per token)",
    "reading": "reading, XQuAD (token F1)",
    "arithmetic": "arithmetic, GSM8K (NLL per token)",
}


def forgetting_rows(base: dict, tuned: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(probe, base, tuned, change, paired 95% interval, verdict) per probe family of eval/*.json's `general` and
    `forgetting` records; runs written before families existed give their two summary rows without intervals."""
    families = (tuned.get("forgetting") or {}).get("families")
    if not families:
        bg, tg = base.get("general") or {}, tuned.get("general") or {}
        keys = (("text_perplexity", "general-text perplexity"), ("qa_accuracy", "general QA accuracy"))
        return [(n, f"{bg[k]:.4f}", f"{tg[k]:.4f}", f"{tg[k] - bg[k]:+.4f}", "", "") for k, n in keys if k in bg]
    rows = []
    for name, f in families.items():
        verdict = "worse" if f["worse"] else "no change beyond noise" if f["low"] <= 0 <= f["high"] else "better"
        interval = f"[{f['low']:+.4f}, {f['high']:+.4f}]"
        label = FAMILY_NAMES.get(name, name)
        rows.append((label, f"{f['base']:.4f}", f"{f['tuned']:.4f}", f"{f['diff']:+.4f}", interval, verdict))
    return rows


def budget_use(records: list[dict], max_drop: float, max_nll_increase: float) -> dict[str, list[tuple[float, float]]]:
    """Per probe family, (step, share of the forgetting budget used) from metrics.jsonl's forgetting records: 1.0 is
    the budget line; a family that improved uses a negative share."""
    out: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for name, f in (record.get("families") or {}).items():
            out.setdefault(name, []).append((record["step"], family_share(f, max_drop, max_nll_increase)))
    return out


def export_rows(summary: dict) -> list[tuple[str, ...]]:
    """One row per exported artifact of `tunesmith export` (eval/export.json): size and parity with the run."""
    sizes = {f["path"]: f["bytes"] for f in summary.get("files", {}).values()}
    rows = []
    for p in summary.get("parity", []):
        task = ""
        for metric, values in p.get("task", {}).items():
            diff = values.get("diff")
            task = (
                f"{metric} {diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
                if diff
                else f"{metric} {values['reference']:.3f} -> {values['artifact']:.3f}"
            )
        rows.append(
            (
                p["artifact"],
                p.get("reader", "transformers"),
                f"{sizes.get(p['artifact'], 0) / 2**20:.1f} MiB",
                f"{p['answers_identical']:.1%}",
                f"{p['tokens_identical']:.1%}",
                f"{p['next_token_identical']:.1%}" if "next_token_identical" in p else "",
                f"{p['mean_kl']:.2e}",
                f"{p['loss_delta']:+.4f}",
                task,
                "yes" if p["passed"] else "NO: " + "; ".join(p.get("reasons", [])),
            )
        )
    return rows


EXPORT_HEADER = ("artifact", "read by", "size", "answers identical", "tokens identical", "next token identical",
                 "mean KL", "loss delta", "task delta", "passed")  # fmt: skip
