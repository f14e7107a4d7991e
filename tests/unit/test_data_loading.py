"""Data loading: every format, field mapping and kind detection, templates and labels, and one RowError per bad row.

pytest tests/unit/test_data_loading.py -q
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.formats import (
    MAX_ROW_CHARS,
    RowError,
    alias_fields,
    detect_kind,
    label_key,
    parse_transcript,
)
from tunesmith.data.loading import DataError, LoadResult, load_dataset, read_rows

SHARED = Path(__file__).parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not found at {SHARED}")


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """Write a fixture file; a name ending in .gz is gzip-compressed."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def jsonl(*rows: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def load(path: Path, **spec: Any) -> LoadResult:
    return load_dataset(DatasetSpec(path=str(path), **spec))


def errors(result: LoadResult) -> list[str]:
    return [str(e) for e in result.errors]


QA = [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}]
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


# --- formats ------------------------------------------------------------------------------------------------


def test_jsonl_with_mapping_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"q": "a?", "a": "b"}\n\n  \n{"q": "c?", "a": "d"}\n')
    result = load(path, fields={"q": "prompt", "a": "completion"})
    assert result.kind is Kind.completion and result.rows == 2 and not result.errors
    assert [(e.line, e.prompt, e.completion) for e in result.examples] == [(1, "a?", "b"), (4, "c?", "d")]
    assert result.examples[0].source == str(path)


@pytest.mark.parametrize("content", [json.dumps(QA), json.dumps({"meta": 1, "rows": QA})])
def test_json_list_or_the_only_list_key(tmp_path: Path, content: str) -> None:
    result = load(write(tmp_path, "d.json", content))
    assert [e.completion for e in result.examples] == ["4", "6"]
    assert [e.line for e in result.examples] == [1, 2]


def test_json_dotted_key_and_row_numbers(tmp_path: Path) -> None:
    doc = {"data": {"train": [QA[0], [1, 2], QA[1]]}, "other": []}
    result = load(write(tmp_path, "d.json", json.dumps(doc)), json_key="data.train")
    assert len(result.examples) == 2
    assert errors(result) == [f"{tmp_path / 'd.json'}:2: row: expected a JSON object, got array"]


def test_json_without_a_clear_list_needs_json_key(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", json.dumps({"a": QA, "b": QA}))
    with pytest.raises(DataError, match="set json_key"):
        load(path)
    with pytest.raises(DataError, match="has no key 'c'"):
        load(path, json_key="a.c")


def test_csv_with_header_and_quoted_newlines(tmp_path: Path) -> None:
    content = 'question,answer\n"multi\nline, with comma",yes\n"say ""hi""",x,extra\n"ok",""\n'
    path = write(tmp_path, "d.csv", content)
    result = load(path)
    assert result.examples[0].prompt == "multi\nline, with comma"
    # the quoted cell spans lines 2-3, so the bad rows are on physical lines 4 and 5
    assert errors(result) == [
        f"{path}:4: row: 3 cells, but there are 2 columns (question, answer)",
        f"{path}:5: answer: empty or whitespace only",
    ]


def test_tsv_headerless_with_columns_quotes_and_trailing_space(tmp_path: Path) -> None:
    path = write(tmp_path, "reviews", 'a "quoted" film . \t1\nbleak \t0\n')
    result = load(path, format="tsv", columns=["prompt", "completion"])
    assert [(e.prompt, e.completion) for e in result.examples] == [('a "quoted" film .', "1"), ("bleak", "0")]


def test_tsv_with_header(tmp_path: Path) -> None:
    result = load(write(tmp_path, "d.tsv", "text\nfirst doc\nsecond doc\n"))
    assert result.kind is Kind.text and [e.text for e in result.examples] == ["first doc", "second doc"]


def test_parquet_rows_and_nested_messages(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([CHAT, CHAT, {"messages": []}]), path, row_group_size=2)
    result = load(path)
    assert result.kind is Kind.chat and len(result.examples) == 2
    assert result.examples[1].messages == CHAT["messages"]
    assert errors(result) == [f"{path}:3: messages: empty list; a chat row needs at least one assistant message"]


def test_txt_one_text_row_per_non_empty_line(tmp_path: Path) -> None:
    result = load(write(tmp_path, "d.txt", "first line\n\n   \nsecond line\r\n"))
    assert result.kind is Kind.text
    assert [(e.line, e.text) for e in result.examples] == [(1, "first line"), (4, "second line")]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.jsonl.gz", jsonl(*QA)),
        ("d.json.gz", json.dumps(QA)),
        ("d.csv.gz", "question,answer\n2+2?,4\n3+3?,6\n"),
        ("d.tsv.gz", "question\tanswer\n2+2?\t4\n3+3?\t6\n"),
    ],
)
def test_gzip_of_each_format(tmp_path: Path, name: str, content: str) -> None:
    result = load(write(tmp_path, name, content))
    assert [e.completion for e in result.examples] == ["4", "6"] and not result.errors


def test_gzip_parquet_and_txt(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(QA), tmp_path / "plain.parquet")
    write(tmp_path, "d.parquet.gz", (tmp_path / "plain.parquet").read_bytes())
    assert len(load(tmp_path / "d.parquet.gz").examples) == 2
    assert [e.text for e in load(write(tmp_path, "d.txt.gz", "a\nb\n")).examples] == ["a", "b"]


def test_format_overrides_extension_and_unknown_extension_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "data.dat", jsonl(*QA))
    assert len(load(path, format="jsonl").examples) == 2
    with pytest.raises(DataError, match=r"data\.dat: cannot tell the file format.*set format"):
        load(path)


def test_read_rows_yields_raw_rows_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"a": 1}\n{bad\n')
    rows = list(read_rows(path))
    assert rows[0] == (1, {"a": 1})
    assert rows[1][0] == 2 and isinstance(rows[1][1], RowError)


# --- field mapping, aliases, kind detection -----------------------------------------------------------------


def test_detect_kind() -> None:
    assert detect_kind(["messages", "id"]) is Kind.chat
    assert detect_kind(["instruction", "input", "output"]) is Kind.instruction
    assert detect_kind(["prompt", "completion"]) is Kind.completion
    assert detect_kind(["text"]) is Kind.text
    assert detect_kind(["text", "label"]) is Kind.classification
    assert detect_kind(["prompt", "chosen", "rejected"]) is Kind.preference
    assert detect_kind(["chosen", "rejected"]) is Kind.preference
    assert detect_kind(["messages", "rejected"]) is Kind.chat  # hh_rlhf with fields: {chosen: messages}
    assert detect_kind(["foo"]) is None


def test_alias_fields() -> None:
    assert alias_fields(["question", "answer"]) == {"question": "prompt", "answer": "completion"}
    assert alias_fields(["instruction", "input", "output"]) == {}
    assert alias_fields(["instruction", "response"]) == {"response": "output"}
    assert alias_fields(["prompt", "response"]) == {"response": "completion"}
    assert alias_fields(["input", "output"]) == {"input": "prompt", "output": "completion"}
    assert alias_fields(["conversations"]) == {"conversations": "messages"}
    assert alias_fields(["conversations", "messages"]) == {}


def test_instruction_kind_joins_input(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Translate.", "input": "chat", "output": "cat"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "Say bye.", "response": "bye"},
    ]
    result = load(write(tmp_path, "d.jsonl", jsonl(*rows[:2])))
    assert result.kind is Kind.instruction
    assert [e.prompt for e in result.examples] == ["Translate.\n\nchat", "Say hi."]
    assert load(write(tmp_path, "r.jsonl", jsonl(rows[2]))).examples[0].completion == "bye"


def test_sharegpt_conversations(tmp_path: Path) -> None:
    conv = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]
    result = load(write(tmp_path, "d.jsonl", jsonl({"conversations": conv})))
    assert result.kind is Kind.chat and result.fields == {"conversations": "messages"}
    assert [m["role"] for m in result.examples[0].messages or []] == ["system", "user", "assistant"]


def test_explicit_kind_and_mapping_wins_over_same_named_column(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"q": "x", "completion": "ignored", "gold": "y"}))
    result = load(path, kind="completion", fields={"q": "prompt", "gold": "completion"})
    assert (result.examples[0].prompt, result.examples[0].completion) == ("x", "y")


def test_undetectable_kinds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"need both chosen and rejected, and only chosen was found"):
        load(write(tmp_path, "p.jsonl", jsonl({"prompt": "p", "chosen": "a"})))
    with pytest.raises(DataError, match=r"classification rows need text and label.*fields: \{sentence: text\}"):
        load(write(tmp_path, "c.jsonl", jsonl({"sentence": "good", "label": 1})))
    with pytest.raises(DataError, match=r"columns found \(src, tgt\).*fields: \{src: prompt, tgt: completion\}"):
        load(write(tmp_path, "u.jsonl", jsonl({"src": "a", "tgt": "b"})))


def test_bad_field_mappings_fail_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(*QA))
    with pytest.raises(DataError, match="no column 'quest'"):
        load(path, fields={"quest": "prompt"})
    with pytest.raises(DataError, match="'completions', which is not one of"):
        load(path, fields={"answer": "completions"})
    with pytest.raises(DataError, match="more than one column to prompt"):
        load(path, fields={"question": "prompt", "answer": "prompt"})


# --- templates, labels, system ------------------------------------------------------------------------------


def test_template_and_labels(tmp_path: Path) -> None:
    rows = [{"s": "great", "y": 1}, {"s": "bad", "y": "0"}, {"s": "meh", "y": 2}, {"y": 1}, {"s": "ok", "y": 1.0}]
    path = write(tmp_path, "d.jsonl", jsonl(*rows))
    result = load(path, template="Review: {s}\nSentiment:", fields={"y": "completion"}, labels={"0": "neg", "1": "pos"})
    assert result.kind is Kind.completion
    assert [(e.prompt, e.completion) for e in result.examples] == [
        ("Review: great\nSentiment:", "pos"),
        ("Review: bad\nSentiment:", "neg"),
        ("Review: ok\nSentiment:", "pos"),
    ]
    assert errors(result) == [
        f"{path}:3: y: label 2 not in labels {{'0': 'neg', '1': 'pos'}}",
        f"{path}:4: s: missing; the template uses {{s}}",
    ]


def test_template_for_instruction_kind_and_bad_templates(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"topic": "cats", "out": "meow"}))
    result = load(path, kind="instruction", template="Write about {topic}.", fields={"out": "output"})
    assert (result.examples[0].prompt, result.examples[0].completion) == ("Write about cats.", "meow")
    bad_spec = load(path, template="{topic:d}", fields={"out": "completion"})
    assert errors(bad_spec) == [
        f"{path}:1: template: cannot fill the template from this row: Unknown format code 'd' for object of type 'str'"
    ]
    with pytest.raises(DataError, match="not usable"):
        load(path, template="Write {}", fields={"out": "completion"})
    with pytest.raises(DataError, match="no column is mapped to the target"):
        load(path, template="Write about {topic}.")
    assert label_key(0) == label_key("0") == label_key(0.0) == "0" and label_key(True) == "true"


def test_system_prepended_to_chat_unless_row_has_one(tmp_path: Path) -> None:
    own = {"messages": [{"role": "system", "content": "own"}, *CHAT["messages"]]}
    result = load(write(tmp_path, "d.jsonl", jsonl(CHAT, own)), system="default")
    assert [e.messages[0]["content"] for e in result.examples if e.messages] == ["default", "own"]


# --- bad rows: one RowError each, FILE:LINE: field: reason --------------------------------------------------


def test_row_errors_in_completion_rows(tmp_path: Path) -> None:
    lines = [
        json.dumps(QA[0]),
        '{"question": "x", "answer": ',
        json.dumps({"question": 7, "answer": "y"}),
        json.dumps({"question": "x"}),
        json.dumps({"question": "x", "answer": "   "}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"question": "x", "answer": None}),
    ]
    path = write(tmp_path, "d.jsonl", "\n".join(lines) + "\n")
    result = load(path, fields={"question": "prompt", "answer": "completion"})
    assert result.rows == 7 and len(result.examples) == 1
    assert errors(result) == [
        f"{path}:2: row: not valid JSON: Expecting value (column 29)",
        f"{path}:3: question: expected string, got int",
        f"{path}:4: answer: missing field (mapped to completion); completion rows need question and answer",
        f"{path}:5: answer: empty or whitespace only",
        f"{path}:6: row: expected a JSON object, got array",
        f"{path}:7: answer: expected string, got null",
    ]


def test_non_utf8_line_is_one_row_error(tmp_path: Path) -> None:
    data = jsonl(QA[0]).encode() + b'{"question": "caf\xe9", "answer": "x"}\n' + jsonl(QA[1]).encode()
    result = load(write(tmp_path, "d.jsonl", data))
    assert len(result.examples) == 2
    assert errors(result) == [
        f"{tmp_path / 'd.jsonl'}:2: row: not valid UTF-8 (byte 0xe9 at byte 18 of the line); "
        "the file must be UTF-8 text"
    ]


def test_non_utf8_in_csv_and_txt(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "d.csv", b'question,answer\n"a\n\xff",b\nc,d\n')
    result = load(csv_path)
    assert [e.prompt for e in result.examples] == ["c"]
    assert errors(result) == [
        f"{csv_path}:3: row: not valid UTF-8 (byte 0xff at byte 1 of the line); the file must be UTF-8 text"
    ]
    txt = load(write(tmp_path, "d.txt", b"ok\n\xc3(\nfine\n"))
    assert [e.text for e in txt.examples] == ["ok", "fine"] and [e.line for e in txt.errors] == [2]


def test_huge_row(tmp_path: Path) -> None:
    big = "x" * (MAX_ROW_CHARS + 1)
    path = write(tmp_path, "d.jsonl", jsonl({"text": big}, {"text": "small"}))
    result = load(path)
    assert [e.text for e in result.examples] == ["small"]
    assert len(result.errors) == 1 and result.errors[0].line == 1
    assert "over the 1,000,000 limit" in result.errors[0].reason
    csv_result = load(write(tmp_path, "d.csv", f"text\n{big}\nsmall\n"))
    assert (
        str(csv_result.errors[0])
        == f"{tmp_path / 'd.csv'}:2: row: row has 1,000,001 characters, over the 1,000,000 limit"
    )


def test_chat_row_errors(tmp_path: Path) -> None:
    u, a = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}
    rows = [
        {"messages": []},
        {"messages": [u, {"role": "tool", "content": "x"}, a]},
        {"messages": [u, a, {"role": "system", "content": "late"}]},
        {"messages": [u]},
        {"messages": [u, {"role": "assistant", "content": " "}]},
        {"messages": [{"role": "user", "content": ""}, a]},
        {"messages": [u, {"role": "assistant", "content": 5}]},
        {"messages": [u, "yo"]},
        {"messages": {"role": "user"}},
        {"messages": [u, {"role": "assistant"}]},
        {"messages": [u, a]},
    ]
    path = write(tmp_path, "d.jsonl", jsonl(*rows))
    result = load(path)
    assert len(result.examples) == 1 and result.examples[0].line == 11
    assert errors(result) == [
        f"{path}:1: messages: empty list; a chat row needs at least one assistant message",
        f"{path}:2: messages[1].role: 'tool' is not one of system, user, assistant (or human, gpt, bot)",
        f"{path}:3: messages[2]: system message after the first message; only the first may be system",
        f"{path}:4: messages: no assistant message with content, so there is nothing to train on",
        f"{path}:5: messages: no assistant message with content, so there is nothing to train on",
        f"{path}:6: messages[0]: user message is empty",
        f"{path}:7: messages[1].content: expected string, got int",
        f"{path}:8: messages[1]: expected an object with role and content, got str",
        f"{path}:9: messages: expected a list of messages or a Human:/Assistant: transcript, got dict",
        f"{path}:10: messages[1]: expected keys role and content (or from and value), got role",
    ]


def test_transcripts(tmp_path: Path) -> None:
    assert parse_transcript("Human: hi\n\nAssistant: yo") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    merged = parse_transcript("\n\nHuman: a\n\nAssistant: b\n\nAssistant: c")
    assert merged[-1] == {"role": "assistant", "content": "b\n\nc"}
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: and?\n\nAssistant: so."},
        {"chosen": "just some text"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: and?"},
        {"chosen": "\n\nHuman: hi\n\nAssistant:  "},
        {"chosen": "\n\nHuman:  \n\nAssistant: yo"},
    ]
    path = write(tmp_path, "hh.jsonl.gz", jsonl(*rows))
    result = load(path, fields={"chosen": "messages"})
    assert [m["content"] for m in result.examples[0].messages or []] == ["hi", "yo", "and?", "so."]
    assert errors(result) == [
        f"{path}:2: chosen: a string must be a transcript of 'Human:' and 'Assistant:' turns, and this one "
        "starts with neither",
        f"{path}:3: chosen: the transcript does not end with an 'Assistant:' turn, so there is nothing to train on",
        f"{path}:4: chosen: the transcript's last 'Assistant:' turn is empty",
        f"{path}:5: chosen (turn 1): user message is empty",
    ]


# --- whole-file problems and limit --------------------------------------------------------------------------


def test_whole_file_problems(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.jsonl: file not found"):
        load(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        load(tmp_path, format="jsonl")
    with pytest.raises(DataError, match="file is empty"):
        load(write(tmp_path, "empty.jsonl", ""))
    with pytest.raises(DataError, match="no rows found"):
        load(write(tmp_path, "blank.jsonl", "\n\n"))
    with pytest.raises(DataError, match="no rows found"):
        load(write(tmp_path, "header.csv", "question,answer\n"))
    with pytest.raises(DataError, match="cannot detect the record kind: none of the first 2 rows"):
        load(write(tmp_path, "broken.jsonl", "{\n[1]\n"))
    with pytest.raises(DataError, match="not valid JSON"):
        load(write(tmp_path, "broken.json", "[{"))
    with pytest.raises(DataError, match=r"not UTF-8 text .* Latin-1"):
        load(write(tmp_path, "latin1.json", b'[{"text": "caf\xe9"}]'))
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not gzip-compressed"):
        load(tmp_path / "fake.jsonl.gz")
    with pytest.raises(DataError, match="repeats column a"):
        load(write(tmp_path, "dup.csv", "a,a\n1,2\n"))


def test_relative_path_resolves_against_base_dir(tmp_path: Path) -> None:
    write(tmp_path, "d.jsonl", jsonl(*QA))
    result = load_dataset(DatasetSpec(path="d.jsonl"), base_dir=tmp_path)
    assert len(result.examples) == 2 and result.examples[0].source == str(tmp_path / "d.jsonl")


def test_limit_counts_valid_rows_and_stops_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(QA[0], {"question": 1, "answer": "x"}, QA[1], QA[0], QA[1]))
    result = load(path, limit=2)
    assert len(result.examples) == 2 and len(result.errors) == 1 and result.rows == 3


# --- classification and preference --------------------------------------------------------------------------


def test_classification_rows_labels_and_extra_columns(tmp_path: Path) -> None:
    rows = [
        {"tweet": "nice day", "class": 2, "source": "web", "score": 0.5, "meta": {"a": 1}},
        {"tweet": "awful", "class": "0", "source": "app", "score": True},
        {"tweet": "meh", "class": 7},
        {"tweet": "  ", "class": 1},
        {"tweet": "no label", "class": None},
    ]
    path = write(tmp_path, "d.jsonl", jsonl(*rows))
    result = load(path, fields={"tweet": "text", "class": "label"}, labels={0: "hate", 1: "offensive", 2: "neither"})
    assert result.kind is Kind.classification
    assert [(e.text, e.label) for e in result.examples] == [("nice day", "neither"), ("awful", "hate")]
    # Unused scalar columns are kept as text for slicing; nested values are not.
    assert result.examples[0].extra == {"source": "web", "score": "0.5"}
    assert result.examples[1].extra == {"source": "app", "score": "true"}
    assert errors(result) == [
        f"{path}:3: class: label 7 not in labels {{'0': 'hate', '1': 'offensive', '2': 'neither'}}",
        f"{path}:4: tweet: empty or whitespace only",
        f"{path}:5: class: expected a label (string or number), got null",
    ]
    raw = load(path, fields={"tweet": "text", "class": "label"})
    assert [e.label for e in raw.examples] == ["2", "0", "7"] and len(raw.errors) == 2


def test_classification_detected_and_built_by_a_template(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"text": "good", "label": 1}, {"text": "bad", "label": 0}))
    assert load(path).kind is Kind.classification
    path = write(tmp_path, "t.jsonl", jsonl({"title": "A", "body": "b", "y": "x"}))
    result = load(path, template="{title}: {body}", fields={"y": "label"})
    assert result.kind is Kind.classification and result.examples[0].text == "A: b"
    assert result.examples[0].extra is None  # every column was used


def test_preference_plain_rows_keep_empty_sides(tmp_path: Path) -> None:
    rows = [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5", "id": 7},
        {"prompt": "hi", "chosen": "", "rejected": "hello"},
        {"prompt": "x", "chosen": "y"},
        {"prompt": "x", "chosen": ["y"], "rejected": "z"},
    ]
    path = write(tmp_path, "p.jsonl", jsonl(*rows))
    result = load(path)
    assert result.kind is Kind.preference
    first = result.examples[0]
    assert (first.prompt, first.chosen, first.rejected, first.extra) == ("2+2?", "4", "5", {"id": "7"})
    assert result.examples[1].chosen == ""  # kept: the audit reports empty sides
    assert errors(result) == [
        f"{path}:3: rejected: missing field; preference rows need chosen and rejected",
        f"{path}:4: chosen: expected a string, or a list of exactly one assistant message",
    ]
    with pytest.raises(DataError, match=r"template applies to .* not preference rows"):
        load(path, template="{prompt}")


def test_preference_transcripts_split_at_the_last_assistant_turn(tmp_path: Path) -> None:
    shared = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit."
    rows = [
        {"chosen": shared + "\n\nAssistant: Apple.", "rejected": shared + "\n\nAssistant: No."},
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: A\n\nHuman: B\n\nAssistant: C",
            "rejected": "\n\nHuman: Hi\n\nAssistant: D",
        },
        {"chosen": shared + "\n\nAssistant:", "rejected": shared + "\n\nAssistant: Pear."},
    ]
    result = load(write(tmp_path, "hh.jsonl", jsonl(*rows)))
    assert result.kind is Kind.preference and not result.errors
    split, unsplit, empty = result.examples
    assert split.prompt == shared.strip() and (split.chosen, split.rejected) == ("Apple.", "No.")
    assert split.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a fruit."},
    ]
    # Transcripts that differ before the final reply keep both whole, with no prompt.
    assert unsplit.prompt is None and unsplit.messages is None and unsplit.chosen == rows[1]["chosen"]
    assert (empty.chosen, empty.rejected) == ("", "Pear.")


# --- real data ----------------------------------------------------------------------------------------------

SST2_TEMPLATE = "Review: {sentence}\nIs this review positive or negative?"


@needs_shared
@pytest.mark.parametrize("fields", [{"question": "prompt", "answer": "completion"}, {}])
def test_gsm8k(fields: dict[str, str]) -> None:
    result = load(SHARED / "gsm8k" / "train.jsonl", fields=fields)
    assert result.kind is Kind.completion and result.rows == 7473 and len(result.examples) == 7473
    assert not result.errors and "####" in (result.examples[0].completion or "")


@needs_shared
def test_hh_rlhf_chosen_as_chat() -> None:
    result = load(SHARED / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", fields={"chosen": "messages"})
    assert result.kind is Kind.chat and result.rows == 2354 and len(result.examples) == 2354 and not result.errors
    first = result.examples[0].messages or []
    assert first[0] == {"role": "user", "content": "Do you know why turkeys became the official food of thanksgiving?"}
    assert [m["role"] for m in first] == ["user", "assistant"]
    second = result.examples[1].messages or []
    assert [m["role"] for m in second] == ["user", "assistant"] * 3 and second[2]["content"] == "I am in Oregon."


@needs_shared
def test_sst2_headerless_tsv_with_template_and_labels() -> None:
    result = load(
        SHARED / "sst2" / "sentiment-dev",
        format="tsv",
        columns=["sentence", "label"],
        template=SST2_TEMPLATE,
        fields={"label": "completion"},
        labels={"0": "negative", "1": "positive"},
    )
    assert result.kind is Kind.completion and len(result.examples) == 872 and not result.errors
    assert {e.completion for e in result.examples} == {"negative", "positive"}
    assert result.examples[0].prompt == SST2_TEMPLATE.format(sentence="it 's a charming and often affecting journey .")


@needs_shared
def test_davidson_as_classification() -> None:
    result = load(
        SHARED / "davidson_hate_speech" / "labeled_data.csv",
        fields={"tweet": "text", "class": "label"},
        labels={0: "hate", 1: "offensive", 2: "neither"},
    )
    assert result.kind is Kind.classification and len(result.examples) == 24783 and not result.errors
    counts = {label: sum(1 for e in result.examples if e.label == label) for label in ("hate", "offensive", "neither")}
    assert counts == {"hate": 1430, "offensive": 19190, "neither": 4163}
    assert set(result.examples[0].extra or {}) == {"", "count", "hate_speech", "offensive_language", "neither"}


@needs_shared
@pytest.mark.parametrize(
    ("split", "rows", "shared_prompt"), [("helpful-base", 2354, 2345), ("harmless-base", 2312, 2307)]
)
def test_hh_rlhf_as_preference_pairs(split: str, rows: int, shared_prompt: int) -> None:
    result = load(SHARED / "hh_rlhf" / split / "test.jsonl.gz")
    assert result.kind is Kind.preference and len(result.examples) == rows and not result.errors
    # PROVENANCE.md: the shared prompt is everything up to the last "\n\nAssistant:" for all but a handful of rows.
    assert sum(1 for e in result.examples if e.prompt is not None) == shared_prompt
    first = result.examples[0]
    assert first.messages is not None and first.messages[-1]["role"] == "user"
    assert "Assistant:" not in (first.chosen or "") and first.prompt and first.prompt.startswith("Human:")
