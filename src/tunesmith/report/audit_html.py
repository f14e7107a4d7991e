"""audit.html: the data audit as one self-contained page (inline CSS and SVG, no script, no network).

    from tunesmith.report.audit_html import write_audit_html
    write_audit_html(report, Path("audit/audit.html"))

Sections mirror audit.json: files, shape, duplicates, leakage, labels, preference pairs, privacy. Charts are small
hand-written SVG (histograms and bar charts), so the page needs no plotting library and opens offline.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.data.audit import AuditReport
from tunesmith.report.html import (
    CSS,
    MAX_ROWS,
    Raw,
    svg_bars,
    svg_histogram,
)
from tunesmith.report.html import cards as _cards
from tunesmith.report.html import figure as _figure
from tunesmith.report.html import h as _h
from tunesmith.report.html import num as _num
from tunesmith.report.html import pct as _pct
from tunesmith.report.html import refs as _refs
from tunesmith.report.html import table as _table


def _level(count: int | None, alert: bool = False) -> str:
    return ("alert" if alert else "warn") if count else ""


def _files(report: AuditReport) -> str:
    rows = []
    for f in report.files:
        reasons = "; ".join(f"{n} × {r}" for r, n in f["reasons"].items())
        path = Raw(f"<code>{_h(f['path'])}</code>")
        rows.append([f["split"], path, f["kind"], f["rows"], f["valid"], f["rejected"], reasons])
    out = _table(["split", "file", "kind", "rows", "valid", "rejected", "why rejected"], rows, numeric=(3, 4, 5))
    errors = [(f["split"], e) for f in report.files for e in f["errors"]]
    if errors:
        out += "<h3>Rejected rows (the first of each file)</h3>"
        out += _table(["split", "FILE:LINE: field: reason"], errors[:MAX_ROWS])
    return out


def _shape_cards(report: AuditReport, s: dict) -> str:
    # Rows the causal-LM objective trains have exact rendered lengths; other kinds have a field-token estimate.
    exact = s["sequence_tokens"] is not None
    est = s.get("estimated_tokens") or {}
    trunc_rows = s["truncated_rows"] if exact else est.get("truncated_rows", 0)
    share = s["truncated_row_share"] if exact else est.get("truncated_row_share")
    cards = [
        (
            _num(trunc_rows),
            f"rows over max_length {report.max_length} ({_pct(share)}{'' if exact else ', estimate'})",
            _level(trunc_rows),
        ),
        (_pct(s["truncated_token_share"] if exact else est.get("truncated_token_share")), "tokens truncated", ""),
    ]
    if exact:
        cards.append((_pct(s["trained_token_share"]), "of kept tokens trained", ""))
    cards.append((_num(s["zero_trained"]), "rows training nothing", _level(s["zero_trained"], alert=True)))
    if s.get("turns"):
        cards.append((_num(s["turns"]["percentiles"]["p50"]), "turns per conversation (median)", ""))
    return _cards(cards)


def _shape_charts(s: dict) -> str:
    charts = []
    for name, d in s["field_tokens"].items():
        if d:
            p = d["percentiles"]
            caption = f"{name}: tokens per row — p50 {_num(p['p50'])}, p95 {_num(p['p95'])}, max {_num(d['max'])}"
            charts.append(_figure(svg_histogram(d["histogram"], f"{name} tokens"), caption))
    est = s.get("estimated_tokens")
    if s["sequence_tokens"]:
        d = s["sequence_tokens"]
        p = d["percentiles"]
        caption = f"whole row as trained (template included) — p50 {_num(p['p50'])}, max {_num(d['max'])}"
        charts.append(_figure(svg_histogram(d["histogram"], "tokens per row"), caption))
    elif est and "preference" in s["kinds"]:
        caption = "prompt + longer reply, field tokens only (no template yet)"
        charts.append(_figure(svg_histogram(est["tokens"]["histogram"], "tokens per pair"), caption))
    if s["trained_share_per_row"]:
        d = s["trained_share_per_row"]
        caption = f"trained-token share per row — median {_pct(d['percentiles']['p50'])}"
        charts.append(_figure(svg_histogram(d["histogram"], "share of the row's tokens trained"), caption))
    if s.get("turns"):
        caption = f"turns per conversation — median {_num(s['turns']['percentiles']['p50'])}"
        charts.append(_figure(svg_histogram(s["turns"]["histogram"], "turns"), caption))
    return f'<div class="charts">{"".join(charts)}</div>'


def _shape(report: AuditReport) -> str:
    out = []
    for split, s in report.shape.items():
        kinds = ", ".join(f"{k} {v:,}" for k, v in s["kinds"].items())
        out.append(f"<h3>{_h(split)}: {_num(s['rows'])} rows ({_h(kinds)})</h3>")
        out.append(_shape_cards(report, s))
        out.append(_shape_charts(s))
        if s["empty_fields"]:
            rows = [[k, v["kept"], v["rejected"]] for k, v in s["empty_fields"].items()]
            out.append("<h3>Empty or whitespace-only fields</h3>" + _table(["field", "kept", "rejected"], rows, (1, 2)))
        if s["zero_trained_examples"]:
            rows = [[z["row"], z["reason"]] for z in s["zero_trained_examples"]]
            out.append("<h3>Rows that would train nothing</h3>" + _table(["row", "reason"], rows, refs=(0,)))
    return "".join(out)


def _duplicates(report: AuditReport) -> str:
    out = []
    for split, d in report.duplicates.items():
        out.append(f"<h3>{_h(split)}</h3>")
        near = f"near duplicates ({d['near_groups']:,} groups, Jaccard ≥ {d['near_threshold']})"
        cards = [
            (_num(d["exact_rows"]), f"exact copies ({d['exact_groups']:,} groups)", _level(d["exact_rows"])),
            (_num(d["verbatim_rows"]), "of them byte-identical", ""),
            (_num(d["near_rows"]), near, _level(d["near_rows"])),
        ]
        out.append(_cards(cards))
        rows = [[g["size"], g["text"], _refs(g["rows"])] for g in d["exact_examples"][:10]]
        if rows:
            out.append("<h3>Largest exact groups</h3>")
            out.append(_table(["rows", "text (equal after normalisation)", "first rows"], rows, (0,), (2,)))
        rows = [
            [g["size"], Raw("<br>".join(_h(v) for v in g["variants"])), _refs(g["rows"])]
            for g in d["near_examples"][:6]
        ]
        if rows:
            out.append("<h3>Largest near-duplicate groups</h3>")
            out.append(_table(["rows", "variants", "first rows"], rows, (0,), (2,)))
    out.append(
        '<p class="note">Texts are compared after Unicode NFKC, case folding and removing punctuation. Near '
        "duplicates: MinHash LSH over word 5-gram shingles, each pair confirmed by its exact Jaccard similarity.</p>"
    )
    return "".join(out)


def _leakage(report: AuditReport) -> str:
    leak = report.leakage
    if not leak.get("checked"):
        return f'<p class="note">Not checked: {_h(leak.get("reason"))}.</p>'
    contained = leak["train_in_eval"] + leak["eval_in_train"]
    cards = [
        (_num(leak["train_rows"]), "train rows leaking into eval", _level(leak["train_rows"], alert=True)),
        (_num(leak["eval_rows"]), "eval rows affected", _level(leak["eval_rows"], alert=True)),
        (_num(leak["exact"]), "exact (after normalisation)", ""),
        (_num(leak["near"]), f"near (Jaccard ≥ {leak['near_threshold']})", ""),
        (_num(contained), f"contained ({leak['contained_min_words']}+ words)", ""),
        (_num(leak["ngram"]), f"eval rows sharing {leak['ngram_words']} words in a row", ""),
    ]
    out = [_cards(cards)]
    if "split" in leak:
        out.append(f'<p class="note">No eval data was given: compared across {_h(leak["split"])}.</p>')
    buckets = list(next(iter(leak["phrases"].values())))
    rows = [[direction.replace("_", " "), *counts.values()] for direction, counts in leak["phrases"].items()]
    out.append("<h3>Phrases found word for word inside a row of the other split</h3>")
    out.append(_table(["direction", *buckets], rows, tuple(range(1, len(buckets) + 1))))
    out.append(
        f'<p class="note">Only phrases of {leak["contained_min_words"]}+ words count as leakage; shorter shared '
        "phrases are usually stock expressions. Compared: the input side of each row (text, prompt, user turns).</p>"
    )
    tables = (("Exact", "exact_examples"), ("Near", "near_examples"), ("Phrases, longest first", "phrase_examples"))
    for title, key in tables:
        rows = [[e["train"], e["train_text"], e["eval"], e["eval_text"]] for e in leak[key][:MAX_ROWS]]
        if rows:
            out.append(
                f"<h3>{title}</h3>" + _table(["train row", "train text", "eval row", "eval text"], rows, (), (0, 2))
            )
    rows = [[e["eval"], e["train"], e["words"], e["span"]] for e in leak["ngram_examples"][:MAX_ROWS]]
    if rows:
        out.append(
            f"<h3>Shared {leak['ngram_words']}-word sequences, longest first</h3>"
            + _table(["eval row", "train row", "words", "shared span"], rows, (2,), (0, 1))
        )
        out.append(
            f'<p class="note">An eval row that shares any {leak["ngram_words"]} words in a row with a training row '
            "(audit.ngram) is contaminated, as in the GPT-3 paper's overlap analysis: it catches copies with a word "
            f"changed, which near-duplicate detection misses. Sequences found in {leak['ngram_common_texts']} or more "
            "training texts are templates and are not counted.</p>"
        )
    return "".join(out)


def _label_charts(labels: dict) -> str:
    charts = []
    for split, b in labels["splits"].items():
        caption = (
            f"{split}: {b['rows']:,} rows — majority {b['majority_label']} {_pct(b['majority_share'])}, minority "
            f"{b['minority_label']} {_pct(b['minority_share'])}, imbalance {b['imbalance_ratio']}:1"
        )
        charts.append(_figure(svg_bars(list(b["counts"].items())), caption))
    return f'<div class="charts">{"".join(charts)}</div>'


def _slices(labels: dict) -> str:
    out = []
    for split, sl in (labels.get("slices") or {}).items():
        names = sorted({k for v in sl["values"] for k in v["labels"]})
        rows = [
            [v["value"], v["rows"], *(_pct(v["labels"].get(n, 0) / v["rows"]) for n in names), _pct(v["max_share_gap"])]
            for v in sl["values"]
        ]
        out.append(
            f"<h3>Label share per value of <code>{_h(sl['field'])}</code> ({_h(split)}: {sl['distinct_values']:,} "
            f"values, {sl['rows_without_field']:,} rows without it)</h3>"
        )
        out.append(_table(["value", "rows", *names, "largest gap to overall"], rows, tuple(range(1, len(names) + 3))))
    return "".join(out)


def _labels(report: AuditReport) -> str:
    labels = report.labels
    if not labels:
        return '<p class="note">No labelled rows (classification rows, or completions mapped through labels:).</p>'
    out = [_label_charts(labels)]
    train = labels["splits"].get("train")
    only_eval = labels.get("only_in_eval", [])
    cards = []
    if train:
        ratio = train["imbalance_ratio"]
        cards.append((f"{ratio}:1", "imbalance (largest / smallest class)", "warn" if ratio >= 3 else ""))
    cards.append((_num(len(only_eval)), "labels only in eval", _level(len(only_eval), alert=True)))
    conflicts = labels.get("conflicting_texts", 0)
    cards.append((_num(conflicts), "train texts labelled two ways", _level(conflicts)))
    out.append(_cards(cards))
    if only_eval:
        out.append(f"<p>Labels in eval but never in train: <b>{_h(', '.join(only_eval))}</b></p>")
    rows = [
        [c["text"], "; ".join(f"{k}: {', '.join(v[:2])}" for k, v in c["labels"].items())]
        for c in labels.get("conflict_examples", [])[:10]
    ]
    if rows:
        out.append("<h3>Same text, different labels</h3>" + _table(["text", "label: rows"], rows))
    out.append(_slices(labels))
    return "".join(out)


def _preference(report: AuditReport) -> str:
    if not report.preference:
        return '<p class="note">No preference pairs.</p>'
    out = []
    for split, p in report.preference.items():
        out.append(f"<h3>{_h(split)}: {p['pairs']:,} pairs</h3>")
        unsplit = p["differ_before_final_reply"]
        cards = [
            (_num(p["identical"]), "chosen == rejected (teach nothing)", _level(p["identical"], alert=True)),
            (_num(p["identical_after_normalization"]), "equal up to case/punctuation", ""),
            (_num(p["empty_chosen"]), "empty chosen", _level(p["empty_chosen"])),
            (_num(p["empty_rejected"]), "empty rejected", _level(p["empty_rejected"])),
            (_num(unsplit), "differ before the final reply (kept whole)", _level(unsplit)),
            (_pct(p["chosen_longer_share"]), "chosen is the longer reply", ""),
        ]
        out.append(_cards(cards))
        tables = (
            ("chosen == rejected", "identical_examples"),
            ("Empty side (end of the prompt shown)", "empty_examples"),
            ("Transcripts that differ before the final reply", "unsplit_examples"),
        )
        for title, key in tables:
            rows = [[e["row"], e["text"]] for e in p[key][:10]]
            if rows:
                out.append(f"<h3>{title}</h3>" + _table(["row", "text"], rows, (), (0,)))
    return "".join(out)


def _privacy(report: AuditReport) -> str:
    pii = report.privacy
    if not pii.get("checked"):
        return f'<p class="note">Not checked: {_h(pii.get("reason"))}.</p>'
    cards = [
        (_num(pii["rows"]), "rows with personal data or secrets", _level(pii["rows"], alert=True)),
        (_num(pii["hits"]), "findings", ""),
    ]
    out = [_cards(cards)]
    out.append(
        _table(["kind", "findings", "rows"], [[k, v["hits"], v["rows"]] for k, v in pii["per_kind"].items()], (1, 2))
    )
    rows = [[e["row"], e["split"], e["field"], e["kind"], e["masked"]] for e in pii["examples"][: 2 * MAX_ROWS]]
    if rows:
        header = ["row", "split", "field", "kind", "masked value"]
        out.append("<h3>Findings (masked)</h3>" + _table(header, rows, (), (0, 1, 2, 3)))
    return "".join(out)


SECTIONS = (
    ("files", "Files", _files),
    ("shape", "Shape", _shape),
    ("duplicates", "Duplicates", _duplicates),
    ("leakage", "Leakage (train vs eval)", _leakage),
    ("labels", "Labels and balance", _labels),
    ("preference", "Preference pairs", _preference),
    ("privacy", "Privacy", _privacy),
)


def _short_refs(html: str, paths: list[str]) -> str:
    """Row references (FILE:LINE) with the shortest path suffix that still tells the files apart; the Files table
    keeps the full paths."""
    full = sorted({str(Path(p).expanduser()) for p in paths}, key=len, reverse=True)
    for path in full:
        parts = Path(path).parts
        short = path
        for n in range(1, len(parts) + 1):
            short = str(Path(*parts[-n:]))
            if sum(1 for other in full if other == short or other.endswith("/" + short)) == 1:
                break
        html = html.replace(f"{_h(path)}:", f"{_h(short)}:")
    return html


def render_audit_html(report: AuditReport, problems: list[str] | None = None) -> str:
    """The page; `problems` are the blocking problems to show (default: all, nothing allowed)."""
    problems = report.blocking() if problems is None else problems
    if problems:
        items = "".join(f"<li>{_h(p)}</li>" for p in problems)
        banner = f'<div class="banner bad"><b>{len(problems)} blocking problem(s)</b><ul>{items}</ul></div>'
    else:
        banner = (
            '<div class="banner ok"><b>No blocking problems</b> (leakage, personal data, rows training nothing).</div>'
        )
    rows = sum(s["rows"] for s in report.shape.values())
    meta = (
        f"{rows:,} valid rows in {len(report.files)} file(s) · tokenizer <code>{_h(report.tokenizer)}</code> · "
        f"max_length {report.max_length} · prompt format {_h(report.prompt_format)}"
    )
    nav = "".join(f'<a href="#{key}">{_h(title)}</a>' for key, title, _ in SECTIONS)
    body = "".join(
        f'<section id="{key}"><h2>{_h(title)}</h2>{render(report)}</section>' for key, title, render in SECTIONS
    )
    body = _short_refs(body, [f["path"] for f in report.files])
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Data audit</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body><main>'
        f'<h1>Data audit</h1><div class="meta">{meta}</div>{banner}<nav>{nav}</nav>{body}'
        f"<footer>tunesmith data audit · {timings}</footer></main></body></html>"
    )


def write_audit_html(report: AuditReport, path: Path, problems: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_audit_html(report, problems), encoding="utf-8")
    return path
