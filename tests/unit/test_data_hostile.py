"""Hostile data files: every whole-file problem is one clear error line and exit 2 from every verb that reads data;
every pathological row is a FILE:LINE: field: reason row error; a row that passes `data check` trains.

pytest tests/unit/test_data_hostile.py -q
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tunesmith.cli import main
from tunesmith.config import Config, DatasetSpec
from tunesmith.data.loading import DataError, load_dataset
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.serve.uploads import UploadRejected, check_upload
from tunesmith.training.prepare import DataRefused, prepare_data

sys.path.insert(0, str(Path(__file__).parent))
from test_training import tiny_config, write_chat_data

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def jsonl_text(*rows: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


# --- whole-file problems: (file name, how to make it, what the error says) ---------------------------------------


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _write(data: bytes):
    return lambda path: path.write_bytes(data)


GOOD_LINE = json.dumps(GOOD).encode() + b"\n"
WHOLE_FILE = {
    "missing": ("train.jsonl", lambda path: None, "file not found"),
    "empty": ("train.jsonl", _write(b""), "file is empty"),
    "blank lines only": ("train.jsonl", _write(b"\n  \n\n"), "no rows found"),
    "directory": ("train.jsonl", lambda path: path.mkdir(), "is a directory"),
    "symlink loop": ("train.jsonl", _symlink_loop, "loop of symbolic links"),
    "fifo": ("train.jsonl", _fifo, "named pipe"),
    "utf-16 with bom": ("train.jsonl", _write(GOOD_LINE.decode().encode("utf-16")), "UTF-16 text.*iconv"),
    "utf-16 without bom": ("train.jsonl", _write(GOOD_LINE.decode().encode("utf-16-le")), "UTF-16 text"),
    "latin-1": (
        "train.csv",
        _write("prompt,completion\ncafé?,oui\nthé?,non\n".encode("latin-1")),
        "not UTF-8 text.*Latin-1.*iconv",
    ),
    "semicolon csv": ("train.csv", _write(b"prompt;completion\na;b\n"), "semicolon-separated"),
    "tab-separated .csv": ("train.csv", _write(b"prompt\tcompletion\na\tb\n"), "tab-separated.*format: tsv"),
    "comma-separated .tsv": ("train.tsv", _write(b"prompt,completion\na,b\n"), "comma-separated.*format: csv"),
    "not gzip": ("train.jsonl.gz", _write(GOOD_LINE), "not gzip-compressed"),
    "truncated gzip": ("train.jsonl.gz", _write(gzip.compress(GOOD_LINE * 2000)[:300]), "gzip file is truncated"),
    "corrupt gzip": ("train.jsonl.gz", _write(gzip.compress(GOOD_LINE)[:12] + b"\xff" * 40), "gzip"),
    "not parquet": ("train.parquet", _write(GOOD_LINE), "not a readable Parquet file"),
    "parquet of other columns": (
        "train.parquet",
        lambda path: parquet(path, pa.table({"a": [1, 2], "b": [3, 4]})),
        "cannot tell the record kind",
    ),
    "json number": ("train.json", _write(b"42\n"), "got a JSON number"),
    "json string": ("train.json", _write(b'"rows"\n'), "got a JSON string"),
}


@pytest.mark.parametrize("case", list(WHOLE_FILE))
def test_whole_file_problem_is_one_line_and_exit_2(case, tmp_path, capsys, tiny_model_dir):
    name, make, reason = WHOLE_FILE[case]
    path = tmp_path / name
    make(path)
    assert main(["data", "check", str(path), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and len(err.strip().splitlines()) == 1, err
    assert re.search(reason, err), err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_permission_denied(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(jsonl_text(GOOD), encoding="utf-8")
    path.chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        load_dataset(DatasetSpec(path=str(path)))


def test_data_error_is_a_user_error():
    assert issubclass(DataError, TunesmithError)


@pytest.mark.parametrize("name", ["train.jsonl", "train.csv", "train.json", "train.jsonl.gz"])
def test_utf8_byte_order_mark_is_accepted(name, tmp_path):
    if name == "train.csv":
        text = "prompt,completion\na?,b\n"
    elif name == "train.json":
        text = json.dumps([GOOD])
    else:
        text = jsonl_text(GOOD)
    data = b"\xef\xbb\xbf" + text.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    result = load_dataset(DatasetSpec(path=str(path)))
    assert len(result.examples) == 1 and not result.errors


def test_every_verb_that_reads_data_exits_2_on_a_bad_file(tmp_path, capsys, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(GOOD_LINE.decode().encode("utf-16"))
    cfg = tiny_config(tiny_model_dir, bad, tmp_path / "run")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    verbs = [
        ["data", "audit", str(bad), "--model", str(tiny_model_dir), "--out", str(tmp_path / "audit")],
        ["data", "redact", str(bad), str(tmp_path / "clean.jsonl")],
        ["data", "preview", str(config)],
        ["train", str(config)],
    ]
    for argv in verbs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{bad}: the file is UTF-16 text" in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "clean.jsonl").exists()


def test_redact_refuses_a_fifo_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    assert main(["data", "redact", str(fifo), str(tmp_path / "out.jsonl")]) == 2
    assert "named pipe" in capsys.readouterr().err


# --- pathological rows: one row error each, the other rows still load ---------------------------------------------


ROWS = {
    "nested 200,000 deep": ('{"messages": ' + "[" * 200_000 + "]" * 200_000 + "}", "row", "nested too deeply"),
    "nested 70 deep": ('{"messages": ' + "[" * 70 + "]" * 70 + "}", "messages", "nested more than 64 levels"),
    "5,000-digit integer": ('{"messages": [], "n": ' + "7" * 5000 + "}", "n", "5,000 digits"),
    "repeated key": (
        '{"messages": [{"role": "user", "content": "a", "content": "b"}, {"role": "assistant", "content": "c"}]}',
        "messages[0]",
        "repeats the key 'content'",
    ),
    "lone surrogate": (json.dumps(chat("hi \ud800 there", "hello")), "messages[0].content", "lone surrogate"),
    "assistant first": (
        json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}),
        "messages[0]",
        "starts with the assistant's message",
    ),
}


@pytest.mark.parametrize("case", list(ROWS))
def test_pathological_row_is_a_row_error(case, tmp_path):
    line, field, reason = ROWS[case]
    path = tmp_path / "train.jsonl"
    path.write_text(jsonl_text(GOOD, line, GOOD), encoding="utf-8")
    result = load_dataset(DatasetSpec(path=str(path)))
    assert len(result.examples) == 2 and [(e.line, e.field) for e in result.errors] == [(2, field)]
    assert reason in result.errors[0].reason


def test_pathological_rows_inside_a_json_document_are_row_errors(tmp_path):
    path = tmp_path / "train.json"
    rows = [jsonl_text(GOOD).strip(), '{"messages": [], "n": ' + "9" * 5000 + "}", '{"a": 1, "a": 2}']
    path.write_text("[" + ",\n".join(rows) + "]", encoding="utf-8")
    result = load_dataset(DatasetSpec(path=str(path)))
    assert len(result.examples) == 1
    assert [(e.line, e.field) for e in result.errors] == [(2, "n"), (3, "row")]
    assert "repeats the key 'a'" in result.errors[1].reason


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_label_is_a_row_error_not_a_label(value, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(f'{{"text": "good", "label": 1}}\n{{"text": "bad", "label": {value}}}\n', encoding="utf-8")
    result = load_dataset(DatasetSpec(path=str(path)))
    assert [e.label for e in result.examples] == ["1"]
    assert [(e.line, e.field) for e in result.errors] == [(2, "label")] and "not a label" in result.errors[0].reason


def test_nan_in_a_parquet_label_column_is_a_row_error(tmp_path):
    path = parquet(tmp_path / "train.parquet", pa.table({"text": ["a", "b"], "label": [1.0, float("nan")]}))
    result = load_dataset(DatasetSpec(path=str(path)))
    assert [e.label for e in result.examples] == ["1"] and [e.line for e in result.errors] == [2]


def test_nested_parquet_column_is_a_row_error_not_a_crash(tmp_path):
    table = pa.table({"prompt": [{"a": "x"}, {"a": "y"}], "completion": ["b", "c"]})
    result = load_dataset(DatasetSpec(path=str(parquet(tmp_path / "train.parquet", table))))
    assert not result.examples
    assert {(e.field, e.reason) for e in result.errors} == {("prompt", "expected string, got dict")}


# --- a row that passes data check trains ----------------------------------------------------------------------


SPECIAL_IN_ANSWER = chat("how do turns end?", "with <|im_end|> and then the next turn")
SPECIAL_IN_PROMPT = chat("what is <|im_start|>?", "a marker")


def test_special_token_text_in_content_is_a_row_error_not_a_cut_answer(tiny_tokenizer):
    from tunesmith.config import Kind
    from tunesmith.data.formats import Example, RowError

    renderer = Renderer(tiny_tokenizer)
    for row in (SPECIAL_IN_ANSWER, SPECIAL_IN_PROMPT):
        result = renderer.encode(Example(Kind.chat, "train.jsonl", 7, messages=row["messages"]))
        assert isinstance(result, RowError) and result.line == 7 and result.field == "messages"
        assert "special token" in result.reason
    plain = Example(Kind.completion, "train.jsonl", 8, prompt="q", completion="a <|endoftext|> b")
    result = Renderer(tiny_tokenizer, "plain").encode(plain)
    assert isinstance(result, RowError) and result.field == "completion"


def test_rows_that_encode_train_their_whole_answer_and_end_of_turn(tiny_tokenizer):
    from tunesmith.config import Kind
    from tunesmith.data.formats import Example

    renderer = Renderer(tiny_tokenizer)
    answer = "with im_end and then the next turn"  # the same answer, written without the special token's text
    enc = renderer.encode(Example(Kind.chat, "t", 1, messages=chat("how do turns end?", answer)["messages"]))
    assert isinstance(enc, Encoded)
    trained = [t for t in enc.labels if t != IGNORE]
    assert tiny_tokenizer.decode(trained) == answer + "<|im_end|>"


HOSTILE_CHATS = [
    json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}),
    json.dumps(chat("hi \ud800", "hello")),
    json.dumps(SPECIAL_IN_ANSWER),
    json.dumps(SPECIAL_IN_PROMPT),
]


def test_data_check_renders_every_row_with_the_models_tokenizer(tmp_path, capsys, tiny_model_dir):
    path = tmp_path / "train.jsonl"
    path.write_text(jsonl_text(GOOD, *HOSTILE_CHATS, GOOD), encoding="utf-8")
    assert main(["data", "check", str(path), "--model", str(tiny_model_dir)]) == 1
    out = capsys.readouterr().out
    for line in (2, 3, 4, 5):
        assert f"{path}:{line}: messages" in out, out
    assert "6 rows read, 2 valid chat rows, 4 bad" in out


def test_data_check_with_a_config_uses_its_max_length(tmp_path, capsys, tiny_model_dir):
    path = tmp_path / "train.jsonl"
    path.write_text(jsonl_text(GOOD, chat("long " * 200, "x")), encoding="utf-8")
    cfg = tiny_config(tiny_model_dir, path, tmp_path / "run")
    cfg["data"]["max_length"] = 32
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["data", "check", str(path), "--config", str(config)]) == 1
    assert (
        f"{path}:2: messages: no trained token left after truncation to data.max_length=32" in capsys.readouterr().out
    )


def test_skip_invalid_skips_the_rows_data_check_rejects(tmp_path, tiny_model_dir, tiny_tokenizer):
    path = write_chat_data(tmp_path / "train.jsonl", n=12)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(jsonl_text(*HOSTILE_CHATS))
    raw = tiny_config(tiny_model_dir, path, tmp_path / "run")
    with pytest.raises(DataRefused, match="4 bad row"):
        prepare_data(Config.model_validate(raw), Renderer(tiny_tokenizer))
    raw["data"]["skip_invalid"] = True
    prepared = prepare_data(Config.model_validate(raw), Renderer(tiny_tokenizer))
    assert sorted(e.line for e in prepared.errors) == [13, 14, 15, 16]
    assert len(prepared.train) + len(prepared.eval) == 12


def test_data_audit_reports_hostile_rows_instead_of_crashing(tmp_path, capsys, tiny_model_dir):
    path = write_chat_data(tmp_path / "train.jsonl", n=6)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(jsonl_text(*HOSTILE_CHATS))
    out = tmp_path / "audit"
    assert main(["data", "audit", str(path), "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert report["files"][0]["rejected"] == 4


def test_upload_check_renders_rows_as_training_will(tmp_path, tiny_tokenizer):
    path = tmp_path / "upload.jsonl"
    path.write_text(jsonl_text(GOOD, SPECIAL_IN_ANSWER), encoding="utf-8")
    assert check_upload(path, "mine.jsonl", 100).rows == 2  # without a tokenizer, special-token text cannot be seen
    path.write_text(jsonl_text(GOOD, *HOSTILE_CHATS), encoding="utf-8")
    with pytest.raises(UploadRejected) as err:
        check_upload(path, "mine.jsonl", 100, Renderer(tiny_tokenizer))
    message = str(err.value)
    assert message.startswith("4 invalid row(s) of 5") and str(tmp_path) not in message
    assert all(f"mine.jsonl:{line}: messages" in message for line in (2, 3, 4, 5))
