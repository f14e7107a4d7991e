"""PII and secret detection (each kind, masks, checksums, look-alikes), redaction of text and of files in every format,
and recall/precision on a fresh sample of the planted benchmark set.

pytest tests/unit/test_pii.py -q
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import itertools
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tunesmith.data.loading import DataError
from tunesmith.data.pii import PII_KINDS, iban_ok, luhn_ok, redact_text, scan_text
from tunesmith.data.redact import redact_file

REPO = Path(__file__).resolve().parents[2]
PEM = "\n".join(
    [
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAx4UbaDzY5xjDpoc3Nl8xq1bUKVbNNdXGQpS4VWnbj2EYWrQw",
        "J8sQAh1xW3yMSlnYwbJX6TgkMwTcgTjOWJtQmUgu6O0zRh5WvYmHJm4yX2Hn6+fz",
        "-----END RSA PRIVATE KEY-----",
    ]
)

# (kind, text with the value in it, the value): what real tickets, chats, logs and configs look like.
FOUND = [
    (
        "EMAIL",
        "Please send the invoice to maria.garcia+billing@acme-corp.co.uk, thanks!",
        "maria.garcia+billing@acme-corp.co.uk",
    ),
    ("EMAIL", "From: user@example.com", "user@example.com"),
    ("EMAIL", '{"email": "Jörg.Müller@web.de"}', "Jörg.Müller@web.de"),
    ("PHONE", "call me back at +44 20 7946 0958 after 5pm", "+44 20 7946 0958"),
    ("PHONE", "Customer phone: (555) 123-4567 | order ORD-2024-118273", "(555) 123-4567"),
    ("PHONE", "reach me on 555-123-4567 or 555.123.4567", "555-123-4567"),
    ("PHONE", "Tel.: +33 (0)6 12 34 56 78", "+33 (0)6 12 34 56 78"),
    ("PHONE", "Kontakt: Jörg, Telefon 030 12345678", "030 12345678"),
    ("PHONE", "my mobile is 07700 900123", "07700 900123"),
    ("PHONE", "Móvil: 612 345 678", "612 345 678"),
    ("PHONE", "toll free 1-800-555-0199", "1-800-555-0199"),
    ("CREDIT_CARD", "I paid with 4111 1111 1111 1111 exp 04/27", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "amex 3782-822463-10005 was declined", "3782-822463-10005"),
    ("CREDIT_CARD", '{"cc": "5555555555554444"}', "5555555555554444"),
    ("IBAN", "Please wire it to IBAN DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "payout_iban=GB29NWBK60161331926819 currency=GBP", "GB29NWBK60161331926819"),
    ("NATIONAL_ID", "My social security number is 123-45-6789.", "123-45-6789"),
    ("NATIONAL_ID", "National Insurance number: AB 12 34 56 C", "AB 12 34 56 C"),
    ("NATIONAL_ID", "ssn: 123456789", "123456789"),
    ("NATIONAL_ID", "SIN 046 454 286 (Canada)", "046 454 286"),
    ("IP_ADDRESS", "Failed password for root from 203.0.113.42 port 52144 ssh2", "203.0.113.42"),
    ("IP_ADDRESS", "upstream [2001:db8::8a2e:370:7334]:8443 timed out", "2001:db8::8a2e:370:7334"),
    ("IP_ADDRESS", "link fe80::1ff:fe23:4567:890a%eth0 is up", "fe80::1ff:fe23:4567:890a%eth0"),
    (
        "API_KEY",
        "export OPENAI_API_KEY=sk-proj-4fGh7Jk9Lm2Np5Qr8St1Uv3Wx6Yz0Ab",
        "sk-proj-4fGh7Jk9Lm2Np5Qr8St1Uv3Wx6Yz0Ab",
    ),
    ("API_KEY", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a here", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("API_KEY", "aws key AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE"),
    ("API_KEY", 'api_key = "a8f5f167f44f4964e6c998dee827110c"', "a8f5f167f44f4964e6c998dee827110c"),
    ("API_KEY", "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("PRIVATE_KEY", f"our deploy key leaked:\n{PEM}\nplease rotate", PEM),
]

NOT_PII = [
    "Order ORD-2024-118273 placed on 2024-03-15 at 14:30:00 for $1,299.99",
    "Upgraded from v10.4.12 to 1.2.3 (build 20240315.1), Windows 10.0.19045.3803",
    "ISBN 978-3-16-148410-0 and ISBN-10: 0-306-40615-2",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b, request 550e8400-e29b-41d4-a716-446655440000",
    "card 4111 1111 1111 1112 failed the check",  # Luhn fails
    "IBAN DE89 3704 0044 0532 0130 01 has a typo",  # mod-97 fails
    "test SSNs 000-12-3456, 666-12-3456 and 912-34-5678 are never issued, nor NINO prefix QQ 12 34 56 C",
    "OID 1.3.6.1.4.1.311, firmware v1.2.3.4, version 4.2.0.1, netmask 255.255.255.0, bind 0.0.0.0",
    "admin@localhost, npm install lodash@4.17.21, git@github.com:acme/repo.git, logo@2x.png",
    "Set api_key=YOUR_API_KEY or token: ${OPENAI_API_KEY}; tokenizer: meta-llama/Llama-3.2-1B-Instruct",
    "the number of bales is 16128-3294 = 12834, and 0.4827586157431629 is a score",
    "tracking 1Z999AA10123456784, EAN 4006381333931, 12,345,678 tokens, Visa •••• 4242",
    "MAC 00:1A:2B:3C:4D:5E at 12:34:56.789 UTC, std::vector, Face::add",
    "prices: €1.234,56 and 1 234,56 € and CHF 2'450.00; coordinates 52.5200, 13.4050",
]


@pytest.mark.parametrize(("kind", "text", "value"), FOUND, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(FOUND)])
def test_each_kind_found_with_a_safe_mask(kind: str, text: str, value: str) -> None:
    start = text.index(value)
    hits = [h for h in scan_text(text) if (h.kind, h.start, h.end) == (kind, start, start + len(value))]
    assert len(hits) == 1, scan_text(text)
    assert value not in hits[0].masked and "*" in hits[0].masked


def test_masks_read_as_documented() -> None:
    masks = {h.kind: h.masked for h in scan_text("j.doe@example.com 4242424242424242 192.168.1.20 " + PEM)}
    assert masks["EMAIL"] == "j***@e***.com"
    assert masks["CREDIT_CARD"] == "**** **** **** 4242"
    assert masks["IP_ADDRESS"] == "192.168.*.*"
    assert masks["PRIVATE_KEY"] == "-----BEGIN *** PRIVATE KEY-----"
    assert scan_text("key sk-a1b2c3d4e5f6g7h8i9j0k1l2")[0].masked == "sk-a***"


@pytest.mark.parametrize("text", NOT_PII)
def test_look_alikes_not_flagged(text: str) -> None:
    assert [(h.kind, text[h.start : h.end]) for h in scan_text(text)] == []


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # one character short for Germany
    assert not iban_ok("XX89370400440532013000")  # no such country


def test_redact_text_placeholders_and_order() -> None:
    text = (
        "Hi, I'm Ana (ana@globex.io, +1 (555) 123-4567). Card 4111-1111-1111-1111, IBAN GB29 NWBK 6016 1331 9268 19, "
        "SSN 123-45-6789, from 10.0.3.17, token=ghp_16C7e42F292c6912E7710c838347Ae178B4a\n" + PEM
    )
    redacted, hits = redact_text(text)
    assert redacted == (
        "Hi, I'm Ana (<EMAIL>, <PHONE>). Card <CREDIT_CARD>, IBAN <IBAN>, SSN <NATIONAL_ID>, from <IP_ADDRESS>, "
        "token=<API_KEY>\n<PRIVATE_KEY>"
    )
    assert [h.kind for h in hits] == [
        "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "NATIONAL_ID", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY"
    ]  # fmt: skip
    assert all(a.end <= b.start for a, b in itertools.pairwise(hits))
    assert set(h.kind for h in hits) == set(PII_KINDS)
    assert redact_text("nothing to see here, order #1234") == ("nothing to see here, order #1234", [])


# --- files ------------------------------------------------------------------------------------------------------


def write(path: Path, content: str | bytes) -> Path:
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def read(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def test_jsonl_round_trip_keeps_order_and_copies_broken_lines(tmp_path: Path) -> None:
    rows = [
        {"id": 1, "messages": [{"role": "user", "content": "mail me at bo@acme.com"}, {"role": "assistant"}]},
        {"id": 2, "text": "nothing here", "score": 0.5},
        {"z": "call 555-123-4567", "a": {"deep": ["ok", "SSN 123-45-6789"]}},
    ]
    lines = [json.dumps(rows[0]), json.dumps(rows[1]), '{"broken": "jane@acme.com", ', "", json.dumps(rows[2])]
    src = write(tmp_path / "train.jsonl", "\n".join(lines) + "\n")
    report = redact_file(src, tmp_path / "out" / "train.jsonl")
    out = read(tmp_path / "out" / "train.jsonl").split("\n")
    assert json.loads(out[0])["messages"][0]["content"] == "mail me at <EMAIL>"
    assert out[1] == lines[1]  # untouched rows are copied byte for byte
    assert out[2] == '{"broken": "<EMAIL>", '
    assert out[3] == ""
    third = json.loads(out[4])
    assert list(third) == ["z", "a"] and third == {"z": "call <PHONE>", "a": {"deep": ["ok", "SSN <NATIONAL_ID>"]}}
    assert (report.rows, report.rows_changed, report.unparsed) == (4, 3, 1)
    assert report.hits_by_kind == {**dict.fromkeys(PII_KINDS, 0), "EMAIL": 2, "PHONE": 1, "NATIONAL_ID": 1}
    assert report.examples[0] == f"{src}:1: messages[0].content: EMAIL b***@a***.com"
    assert f"{src}:5: a.deep[1]: NATIONAL_ID ***-**-**89" in report.examples
    assert report.problems == [
        f"{src}:3: not valid JSON: Expecting property name enclosed in double quotes (column 29)"
    ]


def test_csv_quoted_multiline_cell(tmp_path: Path) -> None:
    content = 'prompt,completion\r\n"Hi,\r\nmy card is 4111 1111 1111 1111","Thanks"\r\nplain,row\r\n'
    src = write(tmp_path / "data.csv", content)
    report = redact_file(src, tmp_path / "clean.csv")
    out = read(tmp_path / "clean.csv")
    assert list(csv.reader(io.StringIO(out))) == [
        ["prompt", "completion"], ["Hi,\r\nmy card is <CREDIT_CARD>", "Thanks"], ["plain", "row"]
    ]  # fmt: skip
    assert out.endswith("\r\nplain,row\r\n") and out.startswith("prompt,completion\r\n")
    assert (report.rows, report.rows_changed, report.hits_by_kind["CREDIT_CARD"]) == (2, 1, 1)
    assert report.examples == [f"{src}:2: prompt: CREDIT_CARD **** **** **** 1111"]


def test_tsv_headerless_with_columns(tmp_path: Path) -> None:
    src = write(tmp_path / "pairs.tsv", 'ask "bob@x.org"\tsure\nno pii\there\n')
    report = redact_file(src, tmp_path / "pairs.out.tsv", columns=["prompt", "completion"])
    assert read(tmp_path / "pairs.out.tsv") == 'ask "<EMAIL>"\tsure\nno pii\there\n'
    assert (report.rows, report.rows_changed) == (2, 1)
    assert report.examples == [f"{src}:1: prompt: EMAIL b***@x***.org"]


def test_txt_and_gzip(tmp_path: Path) -> None:
    src = write(tmp_path / "notes.txt.gz", "server 192.168.1.20 down\n\nall good\r\nkey AKIAIOSFODNN7EXAMPLE\n")
    report = redact_file(src, tmp_path / "notes.clean.txt.gz")
    assert read(tmp_path / "notes.clean.txt.gz") == "server <IP_ADDRESS> down\n\nall good\r\nkey <API_KEY>\n"
    assert (report.rows, report.rows_changed, report.hits_by_kind["IP_ADDRESS"]) == (3, 2, 1)
    with pytest.raises(DataError, match="compression"):
        redact_file(src, tmp_path / "notes.clean.txt")


def test_json_and_parquet(tmp_path: Path) -> None:
    doc = {"name": "support set", "rows": [{"q": "my ip is 203.0.113.7", "a": "noted"}, {"q": "hi", "a": "hello"}]}
    src = write(tmp_path / "set.json", json.dumps(doc, indent=2) + "\n")
    report = redact_file(src, tmp_path / "set.out.json")
    assert json.loads(read(tmp_path / "set.out.json"))["rows"][0]["q"] == "my ip is <IP_ADDRESS>"
    assert (report.rows, report.rows_changed) == (2, 1)

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": ["mail a.b@corp.com", "fine"], "n": [1, 2]})
    pq.write_table(table, tmp_path / "t.parquet")
    report = redact_file(tmp_path / "t.parquet", tmp_path / "t.out.parquet")
    out = pq.read_table(tmp_path / "t.out.parquet")
    assert out.schema == table.schema and out.to_pylist() == [
        {"text": "mail <EMAIL>", "n": 1},
        {"text": "fine", "n": 2},
    ]
    assert (report.rows, report.rows_changed) == (2, 1)


def test_redact_file_refuses_unknown_format_and_same_path(tmp_path: Path) -> None:
    src = write(tmp_path / "data.bin", "x")
    with pytest.raises(DataError, match="format"):
        redact_file(src, tmp_path / "out.bin")
    src = write(tmp_path / "data.txt", "x\n")
    with pytest.raises(DataError, match="source file"):
        redact_file(src, src)


# --- the benchmark, on a sample the detector was not tuned on ----------------------------------------------------


def _load(name: str) -> ModuleType:
    path = REPO / "benchmarks" / "pii" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pii_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_planted_set_recall_and_precision() -> None:
    make_planted, measure = _load("make_planted"), _load("measure")
    rows = make_planted.make_rows(pii_rows=240, decoy_rows=100, seed=7)
    assert rows == make_planted.make_rows(pii_rows=240, decoy_rows=100, seed=7)  # deterministic
    for row in rows:
        for p in row["pii"]:
            assert p["kind"] in PII_KINDS and 0 <= p["start"] < p["end"] <= len(row["text"])
    scores = measure.measure(rows)
    overall = scores.overall
    assert overall.planted >= 240
    assert overall.recall >= 0.99, scores.misses
    assert overall.precision >= 0.95, scores.false_positives
