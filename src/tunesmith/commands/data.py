"""tunesmith data check | audit | redact | preview: look at a dataset before it trains anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunesmith.argtypes import POSITIVE
from tunesmith.commands import FORMATS, KINDS


def _data_check(args: argparse.Namespace) -> int:
    from tunesmith.recipes.check import check_file

    return check_file(args.file, args.kind, args.format, args.fields, args.columns, args.model, args.config)


def _data_redact(args: argparse.Namespace) -> int:
    from tunesmith.data.redact import redact_file

    report = redact_file(Path(args.src), Path(args.dst), args.format, args.columns.split(",") if args.columns else None)
    found = ", ".join(f"{kind} {n}" for kind, n in report.hits_by_kind.items() if n) or "nothing"
    print(f"{args.dst}: {report.rows} rows, {report.rows_changed} changed; replaced: {found}")
    for line in report.examples + report.problems:
        print(f"  {line}")
    return 0


def _data_audit(args: argparse.Namespace) -> int:
    from tunesmith.recipes.audit import audit_command

    return audit_command(
        args.train, args.eval, args.config, args.out, args.strict, args.slice,
        args.kind, args.fields, args.format, args.columns, args.model,
    )  # fmt: skip


def _data_preview(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.recipes.preview import preview

    preview(load_config(args.config, args.overrides), args.n)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    data = verbs.add_parser("data", help="check and preview datasets").add_subparsers(dest="data_verb", required=True)
    p = data.add_parser("check", help="validate a data file; prints every bad row as FILE:LINE: field: reason")
    p.add_argument("file")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: from the name)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map source columns to fields")
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.add_argument("--model", default=None, help="tokenizer's model (default: config model.base, else the default)")
    p.add_argument("--config", default=None, help="YAML config: the file's dataset entry, model, max_length, method")
    p.set_defaults(func=_data_check)

    p = data.add_parser("audit", help="audit data before training: shape, duplicates, leakage, labels, pairs, PII")
    p.add_argument("train", nargs="*", help="training data files (default: the config's data.train)")
    p.add_argument("--eval", nargs="*", default=[], metavar="EVAL", help="held-out files, checked for leakage")
    p.add_argument("--config", default=None, help="YAML config: datasets, model, max_length, audit settings")
    p.add_argument("--out", default="audit", help="folder for audit.json and audit.html")
    p.add_argument("--strict", action="store_true", help="exit 1 on leakage, personal data or rows that train nothing")
    p.add_argument("--slice", default=None, metavar="FIELD", help="source column to split the label distribution by")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: from the name)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map source columns to fields")
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.add_argument("--model", default=None, help="tokenizer's model (default: config model.base, else the default)")
    p.set_defaults(func=_data_audit)

    p = data.add_parser("redact", help="copy a data file with personal data and secrets replaced by <EMAIL>, ...")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.set_defaults(func=_data_redact)

    p = data.add_parser("preview", help="show rendered training rows with the trained tokens highlighted")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("-n", type=POSITIVE, default=3, help="rows to show")
    p.set_defaults(func=_data_preview)
