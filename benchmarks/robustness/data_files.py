"""Hostile data files: whole-file problems (issue 12 item 2) and pathological rows (items 3 and 7).

Each maker writes into a folder and returns the path a verb is pointed at. `rows` are the good rows of the kind the
verb expects (chat rows for most verbs, classification rows for `predict`), so that a file that is only badly
encoded still holds sensible content.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Level = str  # "file": a whole-file user error (exit 2) | "accept": must just work | "either": error or rows


@dataclass(frozen=True)
class FileProblem:
    name: str
    level: Level
    make: Callable[[Path, list[dict]], Path]
    root_only_skip: bool = False  # cannot be reproduced for the root user without dropping privileges


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _with_accents(rows: list[dict]) -> list[dict]:
    """The same rows with non-ASCII text, so an encoding problem really shows."""
    out = json.loads(json.dumps(rows))
    for row in out:
        if "messages" in row:
            row["messages"][0]["content"] += " café naïve"
        else:
            row["tweet"] = row["tweet"] + " café"
    return out


def _parquet(path: Path, columns: dict[str, list]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def _symlink_loop(d: Path, _: list[dict]) -> Path:
    a, b = d / "a.jsonl", d / "b.jsonl"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _fifo(d: Path, _: list[dict]) -> Path:
    os.mkfifo(d / "pipe.jsonl")
    return d / "pipe.jsonl"


def _unreadable(d: Path, rows: list[dict]) -> Path:
    path = _write(d / "secret.jsonl", _jsonl(rows))
    path.chmod(0)
    return path


def _truncated_gzip(d: Path, rows: list[dict]) -> Path:
    packed = gzip.compress(_jsonl(rows * 4).encode())
    return _write(d / "cut.jsonl.gz", packed[: len(packed) // 2])


def _semicolon_csv(d: Path, rows: list[dict]) -> Path:
    text = "prompt;completion\n" + "".join(f"question {i};answer {i}\n" for i in range(len(rows)))
    return _write(d / "semi.csv", text)


def _comma_tsv(d: Path, rows: list[dict]) -> Path:
    text = "prompt,completion\n" + "".join(f"question {i},answer {i}\n" for i in range(len(rows)))
    return _write(d / "commas.tsv", text)


FILE_PROBLEMS = [
    FileProblem("missing file", "file", lambda d, r: d / "nowhere.jsonl"),
    FileProblem("empty file", "file", lambda d, r: _write(d / "empty.jsonl", b"")),
    FileProblem("only blank lines", "file", lambda d, r: _write(d / "blank.jsonl", "\n\n   \n\t\n")),
    FileProblem("a directory", "file", lambda d, r: (d / "folder.jsonl").mkdir() or d / "folder.jsonl"),
    FileProblem("symlink loop", "file", _symlink_loop),
    FileProblem("dangling symlink", "file", lambda d, r: (d / "gone.jsonl").symlink_to(d / "x") or d / "gone.jsonl"),
    FileProblem("FIFO", "file", _fifo),
    FileProblem("permission denied", "file", _unreadable, root_only_skip=True),
    FileProblem(
        "UTF-16 with BOM", "file", lambda d, r: _write(d / "u16.jsonl", _jsonl(_with_accents(r)).encode("utf-16"))
    ),
    FileProblem("UTF-16-LE no BOM", "file", lambda d, r: _write(d / "u16le.jsonl", _jsonl(r).encode("utf-16-le"))),
    FileProblem(
        "latin-1 text", "file", lambda d, r: _write(d / "latin.jsonl", _jsonl(_with_accents(r)).encode("latin-1"))
    ),
    FileProblem("UTF-8 BOM", "accept", lambda d, r: _write(d / "bom.jsonl", b"\xef\xbb\xbf" + _jsonl(r).encode())),
    FileProblem("CRLF line ends", "accept", lambda d, r: _write(d / "crlf.jsonl", _jsonl(r).replace("\n", "\r\n"))),
    FileProblem(
        "blank lines between rows", "accept", lambda d, r: _write(d / "gaps.jsonl", _jsonl(r).replace("\n", "\n\n"))
    ),
    FileProblem("CSV with ; delimiter", "file", _semicolon_csv),
    FileProblem("TSV with , delimiter", "file", _comma_tsv),
    FileProblem("CSV header only", "file", lambda d, r: _write(d / "header.csv", "prompt,completion\n")),
    FileProblem("gzip that is not gzip", "file", lambda d, r: _write(d / "plain.jsonl.gz", _jsonl(r))),
    FileProblem("truncated gzip", "file", _truncated_gzip),
    FileProblem("fake parquet", "file", lambda d, r: _write(d / "fake.parquet", _jsonl(r))),
    FileProblem(
        "parquet wrong schema", "file", lambda d, r: _parquet(d / "schema.parquet", {"a": [1, 2], "b": [3, 4]})
    ),
    FileProblem(
        "parquet nested types",
        "either",
        lambda d, r: _parquet(d / "nested.parquet", {"prompt": [{"x": {"y": 1}}] * 4, "completion": [[1, 2]] * 4}),
    ),
    FileProblem("JSON top-level number", "file", lambda d, r: _write(d / "number.json", "42\n")),
    FileProblem("JSON top-level string", "file", lambda d, r: _write(d / "string.json", '"hello"\n')),
    FileProblem("JSON truncated", "file", lambda d, r: _write(d / "cut.json", json.dumps(r)[:-20])),
    FileProblem("binary garbage", "either", lambda d, r: _write(d / "noise.jsonl", bytes(range(256)) * 8)),
    FileProblem("unknown extension", "file", lambda d, r: _write(d / "data.xlsx", _jsonl(r))),
]


@dataclass(frozen=True)
class RowProblem:
    """One bad line (line 3) among good rows. level: "bad" is a row error; "warn" an error or a warning that names
    `word`; "maybe" may be accepted or refused but must not crash; "special" is special-token text in an answer."""

    name: str
    level: str
    line: str
    classification: bool = False  # the good rows around it are (text, label) rows
    word: str = ""


def _chat(user: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


DEEP = '{"messages": ' + "[" * 200_000 + "]" * 200_000 + "}"
ROW_PROBLEMS = [
    RowProblem(
        "assistant-first chat",
        "bad",
        json.dumps(
            {
                "messages": [
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "bye"},
                ]
            }
        ),
    ),
    RowProblem("lone surrogate in answer", "bad", _chat("what is 1 plus 1?", "two").replace("two", "tw\\ud800o")),
    RowProblem(
        "lone surrogate in prompt", "bad", _chat("what is 1 plus 1?", "two").replace("1 plus", "1 \\udfff plus")
    ),
    RowProblem("JSON nested 200,000 deep", "bad", DEEP),
    RowProblem("5,000-digit integer", "bad", _chat("q", "a")[:-1] + ', "n": ' + "7" * 5000 + "}"),
    RowProblem("invalid JSON line", "bad", '{"messages": [{"role": "user", "content": "unterminated'),
    RowProblem("row is a JSON array", "bad", json.dumps([{"role": "user", "content": "hi"}])),
    RowProblem("empty answer", "bad", _chat("what is 2 plus 2?", "")),
    RowProblem("content is a number", "bad", _chat("q", "a").replace('"a"', "42")),
    RowProblem("unknown role", "bad", _chat("q", "a").replace('"assistant"', '"robot"')),
    RowProblem("user-only chat", "bad", json.dumps({"messages": [{"role": "user", "content": "hello?"}]})),
    RowProblem("duplicate JSON keys", "warn", _chat("q", "a")[:-1] + ', "messages": []}', word="messages"),
    RowProblem("NaN label", "warn", '{"text": "the quick fox", "label": NaN}', classification=True, word="NaN"),
    RowProblem(
        "Infinity label", "warn", '{"text": "the lazy dog", "label": Infinity}', classification=True, word="Infinity"
    ),
    RowProblem("NUL byte in content", "maybe", _chat("what is\u0000 3 plus 3?", "six")),
    RowProblem("100k-char answer", "maybe", _chat("say a lot", "blah " * 20_000)),
    RowProblem("<|im_end|> inside answer", "special", _chat("what is 4 plus 4?", "eight<|im_end|> and more")),
    RowProblem("<|endoftext|> inside answer", "special", _chat("what is 5 plus 5?", "ten <|endoftext|>, surely")),
    RowProblem("<|im_start|> inside answer", "special", _chat("what is 6 plus 6?", "twelve<|im_start|>user hi")),
]


def classification_rows(n: int = 24) -> list[dict]:
    words = ["good", "bad"]
    return [{"text": f"this is {words[i % 2]} number {i}", "label": words[i % 2]} for i in range(n)]


def write_row_problem(folder: Path, problem: RowProblem, chat_rows: list[dict]) -> Path:
    """Good rows with the bad one on line 3."""
    rows = classification_rows() if problem.classification else chat_rows
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, problem.line)
    return _write(folder / "rows.jsonl", "\n".join(lines) + "\n")
