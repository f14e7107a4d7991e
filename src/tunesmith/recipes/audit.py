"""`tunesmith data audit TRAIN [--eval EVAL] [--config CONFIG] [--out DIR] [--strict] [--slice FIELD]`.

    tunesmith data audit ../shared/data/sst2/sentiment-train --eval ../shared/data/sst2/sentiment-dev \\
        --format tsv --columns sentence,label --fields sentence=text --out audit-sst2

Writes DIR/audit.json and DIR/audit.html (one self-contained page, no network) and prints a summary. With
`--strict` the exit status is 1 when the audit finds a blocking problem (leakage, personal data, rows that would
train nothing), so a pipeline can gate on it. `tunesmith train` runs the same audit first (`preflight_audit`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunesmith.config import Config, DatasetSpec, Kind, load_config
from tunesmith.data.audit import AuditReport, run_audit
from tunesmith.data.audit_checks import Pair
from tunesmith.data.check import parse_fields
from tunesmith.errors import TunesmithError
from tunesmith.methods import build_method
from tunesmith.models.registry import DEFAULT_MODEL
from tunesmith.rundir import write_json


class AuditRefused(TunesmithError):
    """Training refuses to start: the data audit found problems the config does not allow."""


def load_audit_tokenizer(base: str):
    """The tokenizer of a model base (registry name, HF folder, GGUF file or finished run)."""
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_base
    from tunesmith.rundir import RunDir

    resolved = resolve_base(base)
    run = RunDir(resolved.path)
    return load_tokenizer(run.final if run.is_run else resolved.path)


def _specs(paths: list[str], kind: str, fields: list[str], fmt: str, columns: str | None) -> list[DatasetSpec]:
    try:
        kind_value = Kind(kind)
    except ValueError:
        raise TunesmithError(f"--kind {kind!r}: choose one of {', '.join(k.value for k in Kind)}") from None
    mapping = parse_fields(fields)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    return [DatasetSpec(path=p, kind=kind_value, format=fmt, fields=mapping, columns=cols) for p in paths]


def _run_split(cfg: Config) -> Callable[[list[Pair]], set[int]]:
    """The held-out split a run of `cfg` makes of its train rows (training/prepare.py), for the leakage check."""

    def held_out(pairs: list[Pair]) -> set[int]:
        from tunesmith.training.prepare import held_out_of_train  # imports torch: only when there is a split to make

        return held_out_of_train(cfg, pairs)

    return held_out


def audit_command(
    train: list[str],
    eval: list[str],
    config: str | None,
    out: str,
    strict: bool,
    slice_field: str | None,
    kind: str,
    fields: list[str],
    fmt: str,
    columns: str | None,
    model: str | None,
) -> int:
    """Audit the files (or the config's datasets), write audit.json and audit.html, print a summary; return the
    exit status: 1 with `strict` when a blocking problem was found, else 0. Files given on the command line win
    over the config's datasets; the config still supplies model, max_length, prompt format and allowances."""
    from tunesmith.report.audit_html import write_audit_html

    cfg = load_config(config) if config else Config()
    train_specs = _specs(train, kind, fields, fmt, columns) if train else list(cfg.data.train)
    eval_specs = _specs(eval, kind, fields, fmt, columns) if eval else ([] if train else list(cfg.data.eval))
    if not train_specs:
        raise TunesmithError("nothing to audit: give a TRAIN file, or --config with data.train entries")
    base = model or (cfg.model.base if config else DEFAULT_MODEL)
    tokenizer = load_audit_tokenizer(base)
    report = run_audit(
        train_specs,
        eval_specs,
        tokenizer,
        prompt_format=cfg.data.prompt_format,
        max_length=cfg.data.max_length,
        near_threshold=cfg.audit.near_duplicate_threshold,
        slice_field=slice_field or cfg.data.slice_field,
        ngram=cfg.audit.ngram,
        # The config's own datasets without eval data: check the split `tunesmith train` would make.
        held_out=_run_split(cfg) if config and not train and not eval_specs else None,
    )
    report.tokenizer = base  # the name the user knows, not the cache folder it resolved to
    folder = Path(out)
    write_json(folder / "audit.json", report.to_json())
    problems = report.blocking(cfg.audit.allow)
    write_audit_html(report, folder / "audit.html", problems)
    print_summary(report, problems, folder)
    return 1 if strict and problems else 0


def preflight_audit(cfg: Config, tokenizer, run_dir: Path | None, log=print) -> AuditReport | None:
    """The audit `tunesmith train` runs before training: writes run_dir/audit.json, raises AuditRefused on a
    blocking problem that `audit.allow` does not name (rows that train nothing pass when data.skip_invalid is set or
    for a classification head, see below). With `run_dir` None nothing is written: the run about to be replaced
    (output.overwrite) stays as it was when the audit refuses."""
    if not cfg.audit.enabled:
        return None
    report = run_audit(
        cfg.data.train,
        cfg.data.eval,
        tokenizer,
        prompt_format=cfg.data.prompt_format,
        max_length=cfg.data.max_length,
        near_threshold=cfg.audit.near_duplicate_threshold,
        slice_field=cfg.data.slice_field,
        ngram=cfg.audit.ngram,
        held_out=None if cfg.data.eval else _run_split(cfg),
    )
    if run_dir is not None:
        write_json(run_dir / "audit.json", report.to_json())
    # Rows that would train nothing are already skipped and reported (skip_invalid), or cannot exist for a head: it
    # trains every row that encodes, and rows that do not encode stop the run before the audit.
    trains_every_row = cfg.data.skip_invalid or build_method(cfg).trains_every_row
    allow = [*cfg.audit.allow, *(["zero_trained"] if trains_every_row else [])]
    problems = report.blocking(allow)
    if problems:
        raise AuditRefused(
            "the data audit found blocking problems; nothing was trained:\n"
            + "\n".join(f"- {p}" for p in problems)
            + (
                f"\n(details in {run_dir / 'audit.json'}; `tunesmith data audit` writes the same as HTML)"
                if run_dir is not None
                else f"\n(the run in {cfg.output.dir} was left as it was; `tunesmith data audit` shows the details)"
            )
        )
    allowed = report.blocking()
    if allowed:
        log("audit: allowed by config: " + "; ".join(p.split(";")[0] for p in allowed))
    return report


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def print_summary(report: AuditReport, problems: list[str], folder: Path, console: Console | None = None) -> None:
    console = console or Console()
    files = Table(title=f"data audit (tokenizer {report.tokenizer}, max_length {report.max_length})")
    for name, justify in (("split", "left"), ("file", "left"), ("kind", "left"), ("rows", "right")):
        files.add_column(name, justify=justify)  # type: ignore[arg-type]
    files.add_column("valid", justify="right")
    files.add_column("rejected", justify="right")
    files.add_column("top reason")
    for f in report.files:
        reason = next(iter(f["reasons"]), "")
        files.add_row(
            f["split"], f["path"], f["kind"], str(f["rows"]), str(f["valid"]), str(f["rejected"]), reason[:60]
        )
    console.print(files)

    shape = Table(title="shape")
    for col in ("split", "field", "tokens p50", "p95", "max", "truncated rows", "trained share", "zero-trained"):
        shape.add_column(col, justify="left" if col in ("split", "field") else "right")
    for split, s in report.shape.items():
        truncated = (
            s["truncated_row_share"]
            if s["sequence_tokens"]
            else (s["estimated_tokens"] or {}).get("truncated_row_share")
        )
        for i, (name, d) in enumerate(s["field_tokens"].items()):
            if d is None:
                continue
            first = i == 0
            shape.add_row(
                split if first else "",
                name,
                f"{d['percentiles']['p50']:g}",
                f"{d['percentiles']['p95']:g}",
                f"{d['max']:g}",
                _pct(truncated) if first else "",
                _pct(s["trained_token_share"]) if first else "",
                str(s["zero_trained"]) if first else "",
            )
    console.print(shape)

    lines = []
    for split, d in report.duplicates.items():
        lines.append(
            f"duplicates ({split}): {d['exact_rows']} exact copies in {d['exact_groups']} groups "
            f"({d['verbatim_rows']} byte-identical), {d['near_rows']} near duplicates "
            f"(Jaccard >= {d['near_threshold']})"
        )
    leak = report.leakage
    if leak.get("checked"):
        phrases = leak["phrases"]["train_in_eval"]
        lines.append(
            f"leakage{' (' + leak['split'] + ')' if 'split' in leak else ''}: {leak['train_rows']} train rows match "
            f"{leak['eval_rows']} eval rows (exact {leak['exact']}, near {leak['near']}, contained "
            f"{leak['train_in_eval'] + leak['eval_in_train']}, {leak['ngram_words']}-word overlap {leak['ngram']}); "
            "train phrases inside eval rows: " + ", ".join(f"{k} {v}" for k, v in phrases.items())
        )
        for example in leak["ngram_examples"][:3]:
            lines.append(
                f"  {example['words']} words shared by eval {example['eval']} and train {example['train']}: "
                f"{example['span']}"
            )
    else:
        lines.append(f"leakage: not checked ({leak.get('reason')})")
    if report.labels:
        for split, b in report.labels["splits"].items():
            counts = ", ".join(f"{k} {v}" for k, v in b["counts"].items())
            lines.append(f"labels ({split}): {counts}; imbalance {b['imbalance_ratio']}:1")
        if report.labels.get("only_in_eval"):
            lines.append(f"labels only in eval: {', '.join(report.labels['only_in_eval'])}")
    for split, p in report.preference.items():
        lines.append(
            f"pairs ({split}): {p['pairs']}, chosen == rejected {p['identical']}, empty chosen {p['empty_chosen']}, "
            f"empty rejected {p['empty_rejected']}, differ before the final reply {p['differ_before_final_reply']}, "
            f"chosen longer {_pct(p['chosen_longer_share'])}"
        )
    pii = report.privacy
    if pii.get("checked"):
        kinds = ", ".join(f"{k} {v['rows']}" for k, v in pii["per_kind"].items()) or "none found"
        lines.append(f"privacy: {pii['rows']} rows with personal data or secrets ({kinds})")
    else:
        lines.append(f"privacy: not checked ({pii.get('reason')})")
    for line in lines:
        console.print(escape(line), highlight=False)
    for problem in problems:
        console.print(f"[bold red]blocking[/bold red] {escape(problem)}", highlight=False)
    if not problems:
        console.print("[green]no blocking problems[/green]")
    console.print(f"wrote {folder / 'audit.json'} and {folder / 'audit.html'}", highlight=False)
