"""JSON parsing for data rows, and the checks that keep one pathological row from ending the file or crashing later.

    from tunesmith.data.jsonrows import parse_json, row_problem
    row = parse_json(line)                # may raise JSONDecodeError or RecursionError (one row's problem)
    problem = row_problem(row)            # (field, reason) or None

Python's json module accepts things a training row must not hold, silently or with an exception that is not a
JSONDecodeError: a repeated key keeps only the last value; an integer longer than Python's int-string limit raises
ValueError; deep nesting raises RecursionError; a `\\ud800` escape yields a string that is not valid Unicode and that
every tokenizer refuses. Here the parser marks repeated keys and over-long integers instead of dropping or raising,
and `row_problem` reports the first such thing in a row (and nesting deeper than MAX_DEPTH) with the field it is in.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # far deeper than any record layout (chat rows are 3 levels); deeper is a broken or hostile row
_SURROGATE = re.compile("[\ud800-\udfff]")


class DuplicateKeys(dict):
    """A JSON object that repeated a key; holds the last value of each key, like a plain parse would."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]], duplicates: list[str]) -> None:
        super().__init__(pairs)
        self.duplicates = duplicates


class LongInteger:
    """An integer literal with more digits than Python converts (sys.get_int_max_str_digits)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return DuplicateKeys(pairs, list(dict.fromkeys(duplicates)))


def _integer(text: str) -> int | LongInteger:
    try:
        return int(text)
    except ValueError:  # only the digit limit: the scanner hands over valid integer literals alone
        return LongInteger(len(text.lstrip("-")))


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_integer)


def parse_json(text: str) -> Any:
    """Parse one JSON text, marking repeated keys (DuplicateKeys) and over-long integers (LongInteger)."""
    return _DECODER.decode(text)


def with_key_column(key: str, record: dict[str, Any]) -> dict[str, Any]:
    """`{"_key": key, **record}` that keeps the record's repeated-key mark."""
    row = {"_key": key, **record}
    if isinstance(record, DuplicateKeys):
        return DuplicateKeys(list(row.items()), record.duplicates)
    return row


def row_problem(row: dict[str, Any], unicode: bool = True) -> tuple[str, str] | None:
    """(field, reason) for the first value in a parsed row that training cannot use, or None. Without `unicode`,
    lone surrogates pass (a copy of the file can write them back as the escapes they were).

    Walks the row without recursion, so a row nested arbitrarily deep is reported instead of overflowing the stack."""
    stack: list[tuple[Any, str, int]] = [(row, "row", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            field = re.split(r"[.\[]", where, maxsplit=1)[0]  # the column: the full path would be MAX_DEPTH long
            return field, f"nested more than {MAX_DEPTH} levels deep; a data row is a flat record or a list of messages"
        if isinstance(value, str):
            reason = _surrogate(value) if unicode else None
            if reason is not None:
                return where, reason
        elif isinstance(value, dict):
            if isinstance(value, DuplicateKeys):
                keys = ", ".join(repr(k) for k in value.duplicates)
                return where, f"repeats the key {keys}; JSON keeps only the last value, so the row is ambiguous"
            for key, item in reversed(value.items()):
                reason = _surrogate(key) if unicode else None
                if reason is not None:
                    return where, f"a key is {reason}"
                stack.append((item, key if where == "row" else f"{where}.{key}", depth + 1))
        elif isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], f"{where}[{i}]", depth + 1))
        elif isinstance(value, LongInteger):
            return where, f"a number with {value.digits:,} digits, more than a data value can be; quote it as a string"
    return None


def _surrogate(text: str) -> str | None:
    bad = _SURROGATE.search(text)
    if bad is None:
        return None
    return (
        f"not valid Unicode text: a lone surrogate \\u{ord(bad.group()):04x} at character {bad.start()} (a broken "
        "\\u escape); fix or remove it"
    )
