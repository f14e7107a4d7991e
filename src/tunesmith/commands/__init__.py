"""The command line's verbs, one module per group; each module's register(verbs) adds its subparsers."""

from __future__ import annotations

from tunesmith.config import Kind

KINDS = tuple(kind.value for kind in Kind)
FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "txt")
