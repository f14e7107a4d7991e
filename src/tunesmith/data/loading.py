"""Read a dataset file of any supported format into canonical examples, with one RowError per bad row.

    from tunesmith.data.loading import load_dataset
    result = load_dataset(config.data.train[0], base_dir=config_path.parent)

Formats: JSONL, JSON (a list, a list inside an object, an object of records keyed by id, or SQuAD's nested
articles/paragraphs/questions, flattened to one row per question), CSV, TSV, Parquet and plain text, each optionally
gzip-compressed. A row with context and question columns (SQuAD's), given neither a template nor a fields mapping, is
prompted with the context before the question, never the question alone. Line formats are decoded line by line so
that one bad byte costs one row, not the file. Problems with a whole file (missing, empty, unknown format, no
detectable kind) raise DataError; problems with a row never raise, they are collected in `LoadResult.errors` with
file, line, field and reason.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.files import GZIP_ERRORS, DataError, check_data_file, gzip_problem
from tunesmith.data.formats import (
    CANONICAL,
    MAX_ROW_CHARS,
    Example,
    RowError,
    RowProblem,
    RowRules,
    alias_fields,
    detect_kind,
    label_key,
    template_columns,
    undetected_reason,
)
from tunesmith.data.jsonrows import DuplicateKeys, LongInteger, parse_json, row_problem, with_key_column

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "txt")
SQUAD_TEMPLATE = "{context}\n\n{question}"  # the prompt of a context + question row given no template or fields
TEXT_FORMATS = ("jsonl", "json", "csv", "tsv", "txt")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
_PARQUET_BATCH = 1024
# Separators that give away a file read with the wrong delimiter, and the fix for each.
_OTHER_DELIMITERS = {
    "csv": [
        ("\t", "tab", "set format: tsv (data check: --format tsv), or name the file .tsv"),
        (";", "semicolon", "save it with commas (or tabs, as format: tsv)"),
        ("|", "pipe", "save it with commas (or tabs, as format: tsv)"),
    ],
    "tsv": [
        (",", "comma", "set format: csv (data check: --format csv), or name the file .csv"),
        (";", "semicolon", "save it with tabs (or commas, as format: csv)"),
    ],
}
# csv refuses cells over 128 KiB by default; allow anything a valid row can hold so that the row-size check, not
# the csv module, decides, and says so with the row's line.
csv.field_size_limit(max(csv.field_size_limit(), 4 * MAX_ROW_CHARS))

Row = tuple[int, dict[str, Any] | RowError]


@dataclass
class LoadResult:
    """Everything read from one dataset entry. `rows` counts rows read, valid and invalid; `fields` is the
    source -> canonical mapping that was applied (the spec's, or the aliases detected when it gave none)."""

    spec: DatasetSpec
    examples: list[Example]
    errors: list[RowError]
    rows: int
    kind: Kind
    fields: dict[str, str] = field(default_factory=dict)


def parse_json_document(data: bytes, name: str) -> object:
    """A whole JSON document (a UTF-8 BOM is allowed); errors name the file, and the line and column in it.
    Repeated keys and over-long integers are marked (see jsonrows.py), for row_problem to report per row."""
    try:
        return parse_json(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{name}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); the file must be "
            "UTF-8 text"
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(f"{name}:{err.lineno}: not valid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{name}: the JSON document is nested too deeply to read") from None


def detect_format(path: Path) -> str | None:
    """The format named by the file's extension, looking through a trailing .gz; None when there is none."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def read_rows(
    path: Path, format: str = "auto", columns: list[str] | None = None, json_key: str | None = None
) -> Iterator[Row]:
    """Rows of a file as (line or row number, raw dict), or a RowError for a row that cannot be parsed at all.

    The file-level checks run at once (not on first iteration) so that a missing file fails before any work."""
    path = Path(path)
    name = str(path)
    fmt = detect_format(path) if format == "auto" else format
    check_data_file(path, text=fmt in TEXT_FORMATS)
    if fmt not in FORMATS:
        raise DataError(f"{name}: cannot tell the file format from its name; set format to one of {', '.join(FORMATS)}")
    if columns is not None and fmt not in ("csv", "tsv"):
        raise DataError(f"{name}: columns applies to headerless csv/tsv files, and this file is read as {fmt}")
    if json_key is not None and fmt != "json":
        raise DataError(f"{name}: json_key applies to json files, and this file is read as {fmt}")
    gz = path.suffix.lower() == ".gz"
    if fmt == "jsonl":
        return _read_jsonl(path, gz)
    if fmt == "json":
        return _read_json(path, gz, json_key)
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, gz, fmt, columns)
    if fmt == "parquet":
        return _read_parquet(path, gz)
    return _read_txt(path, gz)


def load_dataset(spec: DatasetSpec, base_dir: Path | None = None) -> LoadResult:
    """Load one dataset entry: read its rows, map fields, resolve the kind, and convert every row or report why not.

    A relative `spec.path` resolves against `base_dir` (the config file's folder) when given, else the working
    directory. With `spec.limit`, reading stops at that many valid examples."""
    path = Path(spec.path).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    name = str(path)
    rows_iter = read_rows(path, spec.format, spec.columns, spec.json_key)
    try:
        # Read up to the first parsable row: its columns decide the mapping and the kind.
        head: list[Row] = []
        for item in rows_iter:
            head.append(item)
            if isinstance(item[1], dict):
                break
        if not head:
            raise DataError(f"{name}: no rows found; the file holds no data")
        first = head[-1][1] if isinstance(head[-1][1], dict) else None
        columns = list(first) if first is not None else None
        fields = _resolve_fields(spec, name, columns)
        squad_like = fields.get("question") == "prompt" and "context" in (columns or [])
        if spec.template is None and not spec.fields and squad_like:
            # A SQuAD row (or any context + question row) asked without its paragraph would be closed-book QA: the
            # question alone cannot be answered from the text. Unless the spec says otherwise, the paragraph leads.
            spec = spec.model_copy(update={"template": SQUAD_TEMPLATE})
        kind = _resolve_kind(spec, name, columns, fields, head)
        rules = RowRules(kind, fields, spec.template, dict(spec.labels), spec.system)
        wanted = _id_filter(spec, path, columns)
        examples: list[Example] = []
        errors: list[RowError] = []
        rows = 0
        for line, item in chain(head, rows_iter):
            rows += 1
            if isinstance(item, RowError):
                errors.append(item)
                continue
            if wanted is not None and not wanted(item):
                rows -= 1  # a row the selection leaves out is not part of this dataset
                continue
            try:
                examples.append(rules.example(item, name, line))
            except RowProblem as problem:
                errors.append(RowError(name, line, problem.field, problem.reason))
            if spec.limit is not None and len(examples) >= spec.limit:
                break
    finally:
        close = getattr(rows_iter, "close", None)
        if close is not None:
            close()
    return LoadResult(spec, examples, errors, rows, kind, fields)


def _id_filter(spec: DatasetSpec, path: Path, columns: list[str] | None):
    """A row predicate for `spec.ids`, or None. The id file resolves like the data path (relative to the cwd)."""
    if spec.ids is None:
        return None
    if columns is not None and spec.ids.field not in columns:
        raise DataError(f"{path}: ids.field {spec.ids.field!r} is not a column (columns: {', '.join(columns)})")
    ids = read_ids(Path(spec.ids.file).expanduser())
    key, exclude = spec.ids.field, spec.ids.exclude
    return lambda row: (label_key(row.get(key)) in ids) != exclude


def _resolve_fields(spec: DatasetSpec, name: str, columns: list[str] | None) -> dict[str, str]:
    if not spec.fields:
        return alias_fields(columns or [])
    for src, canon in spec.fields.items():
        if canon not in CANONICAL:
            raise DataError(f"{name}: fields maps {src} to {canon!r}, which is not one of {', '.join(CANONICAL)}")
        if columns is not None and src not in columns:
            raise DataError(
                f"{name}: fields maps {src}, but the first row has no column {src!r} (columns: {', '.join(columns)})"
            )
    targets = list(spec.fields.values())
    if len(set(targets)) != len(targets):
        dup = next(t for t in targets if targets.count(t) > 1)
        raise DataError(f"{name}: fields maps more than one column to {dup}")
    return dict(spec.fields)


def _resolve_kind(
    spec: DatasetSpec, name: str, columns: list[str] | None, fields: dict[str, str], head: list[Row]
) -> Kind:
    """The spec's kind, else (when a template builds the input) classification if a column is mapped to label and
    none to a completion, completion otherwise; else the kind detected from the first row."""
    if spec.template is not None:
        try:
            template_columns(spec.template)
        except ValueError as err:
            raise DataError(f"{name}: template {spec.template!r} is not usable: {err}") from None
    if spec.kind is not Kind.auto:
        kind = spec.kind
    elif spec.template is not None:
        canon = {fields.get(c, c) for c in columns or []}
        if {"chosen", "rejected"} <= canon:
            kind = Kind.preference  # refused below, with the reason
        elif "label" in canon and not canon & {"completion", "output"}:
            kind = Kind.classification
        else:
            kind = Kind.completion
    elif columns is None:
        raise DataError(
            f"{name}: cannot detect the record kind: none of the first {len(head)} rows could be read "
            f"(first: {head[0][1]}); fix the file or set kind"
        )
    else:
        detected = detect_kind(fields.get(c, c) for c in columns)
        if detected is None:
            raise DataError(f"{name}: {undetected_reason(columns, fields)}")
        kind = detected
    if spec.template is not None and kind in (Kind.chat, Kind.preference):
        raise DataError(
            f"{name}: template applies to completion, instruction, text and classification rows, not {kind} rows"
        )
    if spec.labels and kind not in (Kind.completion, Kind.instruction, Kind.classification):
        raise DataError(f"{name}: labels map completion/output/label values, and {kind} rows have none")
    if spec.template is not None and kind is not Kind.text and columns is not None:
        canon = {fields.get(c, c) for c in columns}
        target, built = ("label", "text") if kind is Kind.classification else ("completion", "prompt")
        if not canon & ({"label"} if kind is Kind.classification else {"completion", "output"}):
            raise DataError(
                f"{name}: the template builds the {built}, but no column is mapped to the target; map one, e.g. "
                f"fields: {{{columns[-1]}: {target}}} (columns: {', '.join(columns)})"
            )
    return kind


# --- readers ------------------------------------------------------------------------------------------------


def _open(path: Path, gz: bool) -> Any:
    return gzip.open(path, "rb") if gz else path.open("rb")


def _lines(path: Path, gz: bool) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, decoding problem) for each physical line; a bad line is decoded with replacement
    characters so that parsers can keep their place, and the problem travels with it."""
    try:
        with _open(path, gz) as fh:
            for n, raw in enumerate(fh, 1):
                if n == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    yield n, raw.decode("utf-8"), None
                except UnicodeDecodeError as err:
                    bad = (
                        f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); the file "
                        "must be UTF-8 text"
                    )
                    yield n, raw.decode("utf-8", errors="replace"), bad
    except GZIP_ERRORS as err:  # gzip.BadGzipFile is an OSError; a cut-off stream is an EOFError
        raise DataError(f"{path}: {gzip_problem(err) if gz else f'cannot read the file: {err}'}") from None


def _too_long(name: str, line: int, text: str) -> RowError | None:
    if len(text) <= MAX_ROW_CHARS:
        return None
    return RowError(name, line, "row", f"row has {len(text):,} characters, over the {MAX_ROW_CHARS:,} limit")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"), (int | float, "number"))
    if isinstance(value, LongInteger):
        return "number"
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def _read_jsonl(path: Path, gz: bool) -> Iterator[Row]:
    name = str(path)
    for n, text, bad in _lines(path, gz):
        if bad is not None:
            yield n, RowError(name, n, "row", bad)
            continue
        if not text.strip():
            continue  # blank lines separate nothing in JSONL; editors and concatenation leave them
        too_long = _too_long(name, n, text)
        if too_long is not None:
            yield n, too_long
            continue
        try:
            row = parse_json(text.rstrip("\r\n"))  # without the newline, an error's column is on this line
        except json.JSONDecodeError as err:
            yield n, RowError(name, n, "row", f"not valid JSON: {err.msg} (column {err.colno})")
            continue
        except RecursionError:
            yield n, RowError(name, n, "row", "nested too deeply to read; a data row is a flat record or messages")
            continue
        yield n, _checked(name, n, row)


def _read_json(path: Path, gz: bool, json_key: str | None) -> Iterator[Row]:
    name = str(path)
    with _open(path, gz) as fh:
        try:
            data = fh.read()
        except GZIP_ERRORS as err:
            raise DataError(f"{name}: {gzip_problem(err) if gz else f'cannot read the file: {err}'}") from None
    rows = _json_rows(parse_json_document(data, name), name, json_key)
    return _json_items(name, rows)


def _json_items(name: str, rows: list[Any]) -> Iterator[Row]:
    for i, row in enumerate(rows, 1):
        yield i, _checked(name, i, row)


def _checked(name: str, line: int, row: Any) -> dict[str, Any] | RowError:
    """A parsed JSON row, or the RowError for a row that is not an object or holds what training cannot use."""
    if not isinstance(row, dict):
        return RowError(name, line, "row", f"expected a JSON object, got {_json_type(row)}")
    problem = row_problem(row)
    return row if problem is None else RowError(name, line, *problem)


def _json_rows(doc: Any, name: str, json_key: str | None) -> list[Any]:
    """The list of rows inside a JSON document: at `json_key` (dotted), the document itself, or its only list."""
    if json_key is not None:
        node = doc
        for depth, part in enumerate(json_key.split(".")):
            if not isinstance(node, dict) or part not in node:
                here = ".".join(json_key.split(".")[:depth]) or "the top level"
                keys = ", ".join(node) if isinstance(node, dict) else f"a JSON {_json_type(node)}"
                raise DataError(f"{name}: json_key {json_key}: {here} has no key {part!r} (found: {keys})")
            node = node[part]
        if not isinstance(node, list):
            raise DataError(f"{name}: json_key {json_key} holds a JSON {_json_type(node)}, not a list of rows")
        return node
    if isinstance(doc, DuplicateKeys):
        keys = ", ".join(repr(k) for k in doc.duplicates)
        raise DataError(f"{name}: the top-level object repeats the key {keys}; JSON keeps only the last value")
    if isinstance(doc, list):
        return doc
    if _is_squad(doc):
        return _squad_rows(doc)
    if isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        # {id: record, ...} (e.g. PubMedQA): one row per record, its key kept as column _key.
        return [with_key_column(key, record) for key, record in doc.items()]
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(lists) == 1:
            return doc[lists[0]]
        keys = list(doc)
        found = ", ".join(keys[:10]) + (f", ... ({len(keys)} keys)" if len(keys) > 10 else "") if keys else "none"
        raise DataError(f"{name}: cannot tell which key holds the rows (keys: {found}); set json_key")
    raise DataError(f"{name}: expected a list of rows or an object holding one, got a JSON {_json_type(doc)}")


def _is_squad(doc: Any) -> bool:
    data = doc.get("data") if isinstance(doc, dict) else None
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "paragraphs" in data[0]


def _squad_rows(doc: dict) -> list[Any]:
    """SQuAD v1/v2 JSON, one row per question: id, title, paragraph (title#index, for grouped splits), context,
    question, answer (the first reference) and answers (all references, for QA scoring). Loaded with neither a
    template nor a fields mapping, the prompt is SQUAD_TEMPLATE (context, blank line, question): see load_dataset."""
    rows: list[Any] = []
    for article in doc["data"]:
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        for p_index, paragraph in enumerate(paragraphs if isinstance(paragraphs, list) else []):
            if not isinstance(paragraph, dict):
                rows.append(paragraph)  # reported as a bad row by _json_items
                continue
            for qa in paragraph.get("qas") or []:
                if not isinstance(qa, dict):
                    rows.append(qa)
                    continue
                answers = [a.get("text") for a in qa.get("answers") or [] if isinstance(a, dict)]
                rows.append(
                    {
                        "id": qa.get("id"),
                        "title": title,
                        "paragraph": f"{title}#{p_index}",
                        "context": paragraph.get("context"),
                        "question": qa.get("question"),
                        "answer": answers[0] if answers else None,
                        "answers": answers,
                    }
                )
    return rows


def read_ids(path: Path) -> set[str]:
    """Ids from a JSON list, the keys of a JSON object, or one id per line of a text file."""
    check_data_file(path, text=True)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the id file: {err.strerror or err}") from None
    if path.suffix.lower() == ".json":
        doc = parse_json_document(data, str(path))
        if isinstance(doc, dict):
            return {str(k) for k in doc}
        if isinstance(doc, list):
            return {str(v) for v in doc}
        raise DataError(f"{path}: an id file holds a JSON list or object, got a JSON {_json_type(doc)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})") from None
    return {line.strip() for line in text.splitlines() if line.strip()}


def _read_delimited(path: Path, gz: bool, fmt: str, columns: list[str] | None) -> Iterator[Row]:
    """CSV/TSV with a real parser (quoted cells may span lines). Rows are numbered by their first physical line.
    TSV is read without quoting: tab-separated corpora put bare quotes inside text (sst2 does)."""
    name = str(path)
    bad_lines: dict[int, str] = {}

    def feed() -> Iterator[str]:
        for n, text, bad in _lines(path, gz):
            if bad is not None:
                bad_lines[n] = bad
            yield text

    dialect: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(feed(), **dialect)
    header = [c.strip() for c in columns] if columns is not None else None
    end = 0
    first_row: int | None = None
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            end = reader.line_num
            bad_lines.clear()
            yield start, RowError(name, start, "row", f"not valid {fmt.upper()}: {err}")
            continue
        end = reader.line_num
        bad = next(((n, bad_lines[n]) for n in range(start, end + 1) if n in bad_lines), None)
        if bad_lines:
            bad_lines.clear()  # every line up to `end` is accounted for
        if bad is not None:
            if header is None:
                raise DataError(f"{name}:{bad[0]}: the header row is {bad[1]}")
            yield start, RowError(name, bad[0], "row", bad[1])
            continue
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue  # blank line
        first_row = start if first_row is None else first_row
        if header is None:
            header = cells
            if len(header) == 1:
                _check_delimiter(name, start, fmt, header[0], "the header")
            dups = sorted({c for c in header if header.count(c) > 1})
            if dups:
                raise DataError(f"{name}:{start}: the header repeats column {', '.join(dups)}; rename it")
            continue
        if len(cells) != len(header):
            if len(cells) == 1 and columns is not None and start == first_row:
                _check_delimiter(name, start, fmt, cells[0], "the first row")
            reason = f"{len(cells)} cells, but there are {len(header)} columns ({', '.join(header)})"
            yield start, RowError(name, start, "row", reason)
            continue
        yield start, dict(zip(header, cells, strict=True))


def _check_delimiter(name: str, line: int, fmt: str, cell: str, what: str) -> None:
    """Refuse a file whose only column holds another format's separator: read with the wrong delimiter, every row
    would be one cell, and the fix is the format (or the file), not each row."""
    splits = "tabs" if fmt == "tsv" else "commas"
    for sep, sep_name, fix in _OTHER_DELIMITERS[fmt]:
        if sep in cell:
            raise DataError(
                f"{name}:{line}: {what} is one column, {cell[:60]!r}, but holds {sep_name}: the file looks "
                f"{sep_name}-separated, and {fmt} splits on {splits}; {fix}"
            )


def _read_parquet(path: Path, gz: bool) -> Iterator[Row]:
    import pyarrow as pa  # imported here: pyarrow is heavy and only Parquet needs it
    import pyarrow.parquet as pq

    name = str(path)
    try:
        data = gzip.decompress(path.read_bytes()) if gz else None
    except GZIP_ERRORS as err:
        raise DataError(f"{name}: {gzip_problem(err)}") from None
    try:
        table = pq.ParquetFile(pa.BufferReader(data) if data is not None else str(path))
    except (pa.ArrowException, OSError, EOFError) as err:
        raise DataError(f"{name}: not a readable Parquet file: {err}") from None
    n = 0
    batches = table.iter_batches(batch_size=_PARQUET_BATCH)
    while True:
        # A corrupt page or a column type pyarrow cannot convert fails here, mid-file: the file is unusable as a
        # whole (its later rows cannot be reached), so it is a DataError naming the rows read so far.
        try:
            batch = next(batches, None)
            rows = batch.to_pylist() if batch is not None else None
        except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
            raise DataError(f"{name}: cannot read the Parquet data after row {n}: {err}") from None
        if rows is None:
            return
        for row in rows:
            n += 1
            yield n, row


def _read_txt(path: Path, gz: bool) -> Iterator[Row]:
    name = str(path)
    for n, text, bad in _lines(path, gz):
        if bad is not None:
            yield n, RowError(name, n, "row", bad)
            continue
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        too_long = _too_long(name, n, text)
        yield n, too_long if too_long is not None else {"text": text}
