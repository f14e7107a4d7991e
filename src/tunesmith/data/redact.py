"""Write a redacted copy of a dataset file: every string value scanned, each PII hit replaced by "<KIND>".

    from tunesmith.data.redact import redact_file
    report = redact_file(Path("train.jsonl.gz"), Path("clean/train.jsonl.gz"))
    print(report.rows_changed, report.hits_by_kind, *report.examples, sep="\n")

The copy has the source's format: JSONL (every string inside each line's value, recursively, key order kept), JSON,
CSV and TSV (same header and delimiter; headerless files name their columns with `columns`, as in loading.py), plain
text line by line, and Parquet (string values, nested ones included, same schema). A gzip source gives a gzip copy.
Rows with no hit are copied byte for byte; a changed row is written back by the format's serializer.

Nothing is dropped. A line that cannot be parsed (broken JSON in a JSONL file, a CSV record the csv module rejects)
is copied through with the PII in its raw text replaced, counted in `unparsed` and named in `problems` (file:line and
why), so that a reader of the copy sees the same breakage as in the source. A whole file that cannot be parsed
(JSON, Parquet) raises DataError naming it. Bytes that are not UTF-8 survive the round trip unchanged.

loading.py's readers are not reused for rows: they strip cells, skip blank lines and keep no raw text, which suits
training and not a faithful copy. Its format detection and DataError are.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from tunesmith.data.files import GZIP_ERRORS, check_data_file, gzip_problem
from tunesmith.data.jsonrows import parse_json, row_problem
from tunesmith.data.loading import FORMATS, TEXT_FORMATS, DataError, detect_format, parse_json_document
from tunesmith.data.pii import PII_KINDS, PiiHit, redact_text

MAX_EXAMPLES = 10
_BOM = codecs.BOM_UTF8.decode()


@dataclass
class RedactReport:
    """What one redact_file call did. `rows` counts rows read, parsed or not (CSV: data records; JSONL/text:
    non-blank lines; JSON: items of the row list; Parquet: rows); `rows_changed` those written with a placeholder.
    `examples` are the first hits as "FILE:LINE: field: KIND masked"; `problems` the first unparsed lines as
    "FILE:LINE: reason"."""

    rows: int
    rows_changed: int
    hits_by_kind: dict[str, int]
    examples: list[str]
    unparsed: int = 0
    problems: list[str] = field(default_factory=list)


class _Tally:
    """Counts hits and keeps the first examples while a file is rewritten."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.report = RedactReport(0, 0, dict.fromkeys(PII_KINDS, 0), [])

    def text(self, value: str, line: int, where: str) -> str:
        redacted, hits = redact_text(value)
        self.count(hits, line, where)
        return redacted

    def count(self, hits: list[PiiHit], line: int, where: str) -> None:
        for hit in hits:
            self.report.hits_by_kind[hit.kind] += 1
            if len(self.report.examples) < MAX_EXAMPLES:
                self.report.examples.append(f"{self.name}:{line}: {where}: {hit.kind} {hit.masked}")

    def row(self, changed: bool) -> None:
        self.report.rows += 1
        self.report.rows_changed += changed

    def unparsed(self, raw: str, line: int, reason: str) -> str:
        """The raw text of a line that cannot be parsed, with its PII replaced."""
        self.report.unparsed += 1
        if len(self.report.problems) < MAX_EXAMPLES:
            self.report.problems.append(f"{self.name}:{line}: {reason}")
        redacted = self.text(raw, line, "raw line")
        self.row(redacted != raw)
        return redacted


def redact_file(src: Path, dst: Path, format: str = "auto", columns: list[str] | None = None) -> RedactReport:
    """Write `src` to `dst` with every PII hit replaced by its placeholder, and report what was found.

    `format` is one of loading.FORMATS or "auto" (from the extension); `columns` names the columns of a headerless
    CSV/TSV file. `dst` is written through a temporary file beside it, so a failure leaves no half-written copy."""
    src, dst = Path(src), Path(dst)
    name = str(src)
    fmt = detect_format(src) if format == "auto" else format
    check_data_file(src, text=fmt in TEXT_FORMATS, single_byte=False)
    if fmt not in FORMATS:
        raise DataError(f"{name}: cannot tell the file format from its name; set format to one of {', '.join(FORMATS)}")
    if columns is not None and fmt not in ("csv", "tsv"):
        raise DataError(f"{name}: columns applies to headerless csv/tsv files, and this file is read as {fmt}")
    gz = src.suffix.lower() == ".gz"
    if gz != (dst.suffix.lower() == ".gz"):
        raise DataError(f"{dst}: the copy keeps the source's compression; name it {'with' if gz else 'without'} .gz")
    if dst.exists() and dst.resolve() == src.resolve():
        raise DataError(f"{dst}: is the source file; write the redacted copy to another path")
    tally = _Tally(name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        with _open(src, "rb", gz) as fin, _open(tmp, "wb", gz) as fout:
            _WRITERS[fmt](fin, fout, tally, columns)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return tally.report


def _open(path: Path, mode: str, gz: bool) -> BinaryIO:
    return cast(BinaryIO, gzip.open(path, mode) if gz else path.open(mode))


def _lines(fin: BinaryIO) -> Iterator[tuple[int, bytes, str]]:
    """(line number, raw bytes, text) per physical line; bytes that are not UTF-8 become surrogates that encode back
    to the same bytes, so a line with one bad byte is still redacted and copied faithfully."""
    try:
        for n, raw in enumerate(fin, 1):
            yield n, raw, raw.decode("utf-8", errors="surrogateescape")
    except GZIP_ERRORS as err:  # gzip.BadGzipFile is an OSError; a cut-off stream is an EOFError
        raise DataError(f"{getattr(fin, 'name', 'file')}: {_read_problem(fin, err)}") from None


def _read_all(fin: BinaryIO, name: str) -> bytes:
    try:
        return fin.read()
    except GZIP_ERRORS as err:
        raise DataError(f"{name}: {_read_problem(fin, err)}") from None


def _read_problem(fin: BinaryIO, err: BaseException) -> str:
    return gzip_problem(err) if isinstance(fin, gzip.GzipFile) else f"cannot read the file: {err}"


def _dumps(value: Any, **kwargs: Any) -> bytes:
    """JSON text as bytes; a string holding a lone surrogate (from a \\ud800 escape) is written back as an escape."""
    try:
        return _encode(json.dumps(value, ensure_ascii=False, **kwargs))
    except UnicodeEncodeError:
        return json.dumps(value, **kwargs).encode("ascii")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _split_ending(text: str) -> tuple[str, str]:
    body = text.rstrip("\r\n")
    return body, text[len(body) :]


def _redact_value(value: Any, where: str, line: int, tally: _Tally) -> tuple[Any, bool]:
    """A JSON-like value with every string redacted (dict keys are kept), and whether anything changed."""
    if isinstance(value, str):
        redacted = tally.text(value, line, where or "value")
        return redacted, redacted != value
    if isinstance(value, dict):
        out, changed = {}, False
        for key, item in value.items():
            out[key], hit = _redact_value(item, f"{where}.{key}" if where else str(key), line, tally)
            changed |= hit
        return out, changed
    if isinstance(value, list):
        items = [_redact_value(item, f"{where}[{i}]", line, tally) for i, item in enumerate(value)]
        return [item for item, _ in items], any(hit for _, hit in items)
    return value, False


# --- one writer per format --------------------------------------------------------------------------------------


def _jsonl(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    for n, raw, text in _lines(fin):
        body, ending = _split_ending(text)
        if not body.strip():
            fout.write(raw)
            continue
        bom = _BOM if n == 1 and body.startswith(_BOM) else ""
        try:
            value = parse_json(body[len(bom) :])
        except json.JSONDecodeError as err:
            fout.write(_encode(tally.unparsed(body, n, f"not valid JSON: {err.msg} (column {err.colno})") + ending))
            continue
        except RecursionError:
            value = None
        # A row that cannot be written back as it was (repeated keys, a number too long to convert, deep nesting)
        # is copied as raw text, like a line that does not parse.
        problem = ("row", "nested too deeply to read") if value is None else row_problem({"": value}, unicode=False)
        if problem is not None:
            fout.write(_encode(tally.unparsed(body, n, f"{problem[0]}: {problem[1]}") + ending))
            continue
        redacted, changed = _redact_value(value, "", n, tally)
        tally.row(changed)
        fout.write(_encode(bom) + _dumps(redacted) + _encode(ending) if changed else raw)


def _txt(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    for n, raw, text in _lines(fin):
        body, ending = _split_ending(text)
        if not body.strip():
            fout.write(raw)
            continue
        redacted = tally.text(body, n, "text")
        tally.row(redacted != body)
        fout.write(_encode(redacted + ending) if redacted != body else raw)


def _tsv(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    """Tab-separated, no quoting (as loading.py reads it): one physical line is one record."""
    header = list(columns) if columns is not None else None
    for n, raw, text in _lines(fin):
        body, ending = _split_ending(text)
        if not body.strip():
            fout.write(raw)
            continue
        cells = body.split("\t")
        if header is None:
            header = cells
            fout.write(raw)
            continue
        redacted = [tally.text(c, n, _column(header, i)) for i, c in enumerate(cells)]
        changed = redacted != cells
        tally.row(changed)
        fout.write(_encode("\t".join(redacted) + ending) if changed else raw)


def _csv(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    """CSV with the csv module, so quoted cells may span lines; each record's raw lines are kept to copy it as-is."""
    consumed: list[tuple[int, bytes, str]] = []

    def feed() -> Iterator[str]:
        for item in _lines(fin):
            consumed.append(item)
            yield item[2]

    reader = csv.reader(feed())
    header = list(columns) if columns is not None else None
    while True:
        consumed.clear()
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            if consumed:
                raw_text = "".join(text for _, _, text in consumed)
                body, ending = _split_ending(raw_text)
                fout.write(_encode(tally.unparsed(body, consumed[0][0], f"not valid CSV: {err}") + ending))
            continue
        raw = b"".join(r for _, r, _ in consumed)
        if not cells or (header is None and not any(c.strip() for c in cells)):
            fout.write(raw)
            continue
        if header is None:
            header = cells
            fout.write(raw)
            continue
        line = consumed[0][0]
        redacted = [tally.text(c, line, _column(header, i)) for i, c in enumerate(cells)]
        changed = redacted != cells
        tally.row(changed)
        if changed:
            ending = "\r\n" if consumed[-1][2].endswith("\r\n") else "\n"
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator=ending).writerow(redacted)
            fout.write(_encode(buffer.getvalue()))
        else:
            fout.write(raw)


def _column(header: list[str], i: int) -> str:
    return header[i] if i < len(header) else f"column {i + 1}"


def _json(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    """The whole document is redacted (not only the row list); rows are numbered by their place in the list."""
    data = _read_all(fin, tally.name)
    doc = parse_json_document(data, tally.name)
    problem = row_problem({"": doc}, unicode=False)
    if problem is not None:
        raise DataError(f"{tally.name}: {problem[0]}: {problem[1]}; the document cannot be copied faithfully")
    rows, key = _json_rows(doc)
    changed_any = False
    if rows is None:
        doc, changed_any = _redact_value(doc, "", 1, tally)
        tally.row(changed_any)
    else:
        for i, row in enumerate(rows):
            rows[i], changed = _redact_value(row, "", i + 1, tally)
            tally.row(changed)
            changed_any |= changed
        if key is not None:  # strings beside the row list (a title, a description) are redacted too
            rest, changed = _redact_value({k: v for k, v in doc.items() if k != key}, "", 0, tally)
            doc = {k: (rows if k == key else rest[k]) for k in doc}
            changed_any |= changed
        else:
            doc = rows
    if not changed_any:
        fout.write(data)
        return
    indent = 2 if b"\n" in data.strip() else None
    fout.write(_dumps(doc, indent=indent) + (b"\n" if data.endswith(b"\n") else b""))


def _json_rows(doc: Any) -> tuple[list[Any] | None, str | None]:
    """The row list: the document itself, or the only list inside a top-level object (as loading.py finds it)."""
    if isinstance(doc, list):
        return doc, None
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(lists) == 1:
            return doc[lists[0]], lists[0]
    return None, None


def _parquet(fin: BinaryIO, fout: BinaryIO, tally: _Tally, columns: list[str] | None) -> None:
    import pyarrow as pa  # imported here: pyarrow is heavy and only Parquet needs it
    import pyarrow.parquet as pq

    data = _read_all(fin, tally.name)
    try:
        source = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError, EOFError) as err:
        raise DataError(f"{tally.name}: not a readable Parquet file: {err}") from None
    schema = source.schema_arrow
    sink = io.BytesIO()
    n = 0
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in source.iter_batches(batch_size=1024):
            rows = []
            try:
                batch_rows = batch.to_pylist()
            except (pa.ArrowException, UnicodeDecodeError) as err:
                raise DataError(f"{tally.name}: cannot read the Parquet data after row {n}: {err}") from None
            for row in batch_rows:
                n += 1
                redacted, changed = _redact_value(row, "", n, tally)
                tally.row(changed)
                rows.append(redacted)
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    fout.write(sink.getvalue())


_WRITERS: dict[str, Callable[[BinaryIO, BinaryIO, _Tally, list[str] | None], None]] = {
    "jsonl": _jsonl,
    "json": _json,
    "csv": _csv,
    "tsv": _tsv,
    "parquet": _parquet,
    "txt": _txt,
}
