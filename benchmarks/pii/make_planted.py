"""Write the planted PII test set: support-ticket, chat, CRM and log text with PII at known spans, plus look-alikes.

    python benchmarks/pii/make_planted.py /tmp/pii_planted.jsonl    # 640 rows with PII + 240 rows of look-alikes

One JSON object per line: {"id": "pii-0001", "text": "...", "pii": [{"kind": "EMAIL", "start": 17, "end": 35}],
"decoys": ["order", "date"]}. `pii` is the ground truth (every planted value, kind and character span); `decoys`
names the PII-like values that are not PII, so that a false positive can be traced to its look-alike.

The value formats were written from what real tickets, chats, config files and logs hold, before the detector was
tuned, and the detector's tests run this generator with another seed. Documentation placeholders count: an email at
example.com is an email. Phone numbers that only a nearby word makes a phone (a Spanish "612 345 678", ten bare
digits) appear only in sentences that have such a word ("call", "Tel.", "móvil"), as they do in real text. The output
is generated data: write it under /tmp, never commit it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import string
import sys
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PII_KINDS = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "NATIONAL_ID", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY")
Gen = Callable[[random.Random], str]

# --- fillers (not PII for this detector: names and places are out of its scope) -------------------------------

FIRST = ["James", "Maria", "Wei", "Aisha", "Lukas", "Sofia", "Mateo", "Priya", "Olivia", "Hiroshi", "Fatima", "Noah"]
FIRST += ["Chloé", "Jörg", "Siobhan", "Rahul", "Ana", "Tomasz", "Emma", "Kwame", "Lena", "Diego", "Yuki", "Oliver"]
LAST = ["Smith", "García", "Chen", "Khan", "Müller", "Rossi", "Okafor", "Nguyen", "Johnson", "Tanaka", "Dubois"]
LAST += ["O'Brien", "Kowalski", "Patel", "Silva", "Jansen", "Murphy", "Schmidt", "Ivanova", "Andersson", "Lefèvre"]
CITY = ["Berlin", "Leeds", "Austin", "Lyon", "Madrid", "Osaka", "Toronto", "Pune", "Utrecht", "Milan", "Dublin"]
PRODUCT = ["Pro plan", "router X200", "annual licence", "headset", "standing desk", "API add-on", "SSD 2TB"]
DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.com", "hotmail.fr", "web.de", "proton.me", "icloud.com"]
DOMAINS += ["acme-corp.com", "globex.io", "initech.co.uk", "umbrella-group.de", "mail.stark-industries.net"]
DOMAINS += ["cs.uni-heidelberg.de", "stanford.edu", "example.com", "example.org", "company.com.au", "startup.ai"]


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalpha())


def _d(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
HEX = "0123456789abcdef"


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:  # doubled: the check digit, appended after, sits at the undoubled position
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str((10 - total % 10) % 10)


# --- PII values ----------------------------------------------------------------------------------------------


def email(rng: random.Random) -> str:
    first, last = _ascii(rng.choice(FIRST)), _ascii(rng.choice(LAST))
    f, la = first.lower(), last.lower()
    tag = rng.choice(["newsletter", "work", "2024", "shop"])
    role = rng.choice(["support", "billing", "no-reply", "it.helpdesk", "hr-team", "user"])
    locals_ = [f"{f}.{la}", f"{f[0]}{la}", f"{f}{rng.randint(1, 99)}", f"{f}.{la}+{tag}", f"{la}_{f}", f"{f}-{la}"]
    local = rng.choice([*locals_, f, f"{first}.{last}", role])
    value = f"{local}@{rng.choice(DOMAINS)}"
    return value.upper() if rng.random() < 0.04 else value  # some systems store addresses upper-cased


def _pairs(rng: random.Random, n: int, sep: str) -> str:
    return sep.join(_d(rng, 2) for _ in range(n))


def phone(rng: random.Random) -> str:
    """A phone number as people write it in 12 countries; every format here reads as a phone without context."""
    d = lambda n: _d(rng, n)  # noqa: E731
    area, exch, line = str(rng.randint(201, 989)), str(rng.randint(200, 999)), d(4)
    return rng.choice(
        [
            f"({area}) {exch}-{line}",
            f"{area}-{exch}-{line}",
            f"{area}.{exch}.{line}",
            f"+1 {area}-{exch}-{line}",
            f"+1 ({area}) {exch}-{line}",
            f"1-{area}-{exch}-{line}",
            f"+1.{area}.{exch}.{line}",
            f"{area} {exch} {line}",
            f"+1{area}{exch}{line}",
            f"({area}){exch}-{line}",
            f"{area}-{exch}-{line} ext. {rng.randint(10, 9999)}",
            f"1 (800) {exch}-{line}",
            f"+44 20 7946 {d(4)}",
            f"020 7946 {d(4)}",
            f"07700 900{d(3)}",
            f"+44 7700 900{d(3)}",
            f"+44 (0)20 7946 {d(4)}",
            f"0161 496 {d(4)}",
            f"+447700900{d(3)}",
            f"+49 30 {d(8)}",
            f"030 {d(8)}",
            f"+49 151 {d(8)}",
            f"0151 {d(8)}",
            f"+49 (0)89 {d(7)}",
            f"030/{d(7)}",
            f"0049 30 {d(8)}",
            f"+49-171-{d(7)}",
            f"+33 {rng.randint(1, 7)} {_pairs(rng, 4, ' ')}",
            f"0{rng.randint(1, 7)} {_pairs(rng, 4, ' ')}",
            f"06.{_pairs(rng, 4, '.')}",
            f"+33 (0)6 {_pairs(rng, 4, ' ')}",
            f"0033 6 {_pairs(rng, 4, ' ')}",
            f"+31 6 {d(8)}",
            f"06-{d(8)}",
            f"+31 20 {d(3)} {d(4)}",
            f"020-{d(7)}",
            f"+39 02 {d(4)} {d(4)}",
            f"+39 3{d(2)} {d(3)} {d(4)}",
            f"+39 3{d(2)} {d(7)}",
            f"+34 6{d(2)} {d(2)} {d(2)} {d(2)}",
            f"+34 9{d(2)} {d(3)} {d(3)}",
            f"+34 6{d(8)}",
            f"+91 9{d(4)} {d(5)}",
            f"+91-9{d(9)}",
            f"09{d(4)} {d(5)}",
            f"+61 2 {d(4)} {d(4)}",
            f"04{d(2)} {d(3)} {d(3)}",
            f"(02) {d(4)} {d(4)}",
            f"+61 4{d(2)} {d(3)} {d(3)}",
            f"+81 3-{d(4)}-{d(4)}",
            f"03-{d(4)}-{d(4)}",
            f"090-{d(4)}-{d(4)}",
            f"+55 11 9{d(4)}-{d(4)}",
            f"(11) 9{d(4)}-{d(4)}",
            f"+353 1 {d(3)} {d(4)}",
            f"+46 8 {d(3)} {d(3)} {d(2)}",
            f"+41 44 {d(3)} {d(2)} {d(2)}",
            f"+48 {d(3)} {d(3)} {d(3)}",
            f"+49 (0)151 {d(4)} {d(4)}",
            f"+1 {area} {exch} {line} x{rng.randint(10, 999)}",
            f"tel:+1-{area}-{exch}-{line}",
        ]
    )


def phone_local(rng: random.Random) -> str:
    """Numbers that read as phones only beside a phone word: Spanish and Italian mobiles, bare digit strings."""
    d = lambda n: _d(rng, n)  # noqa: E731
    return rng.choice(
        [
            f"6{d(2)} {d(3)} {d(3)}",
            f"6{d(2)} {d(2)} {d(2)} {d(2)}",
            f"3{d(2)} {d(7)}",
            f"{rng.randint(201, 989)}{rng.randint(200, 999)}{d(4)}",
            f"07700900{d(3)}",
            f"015{d(9)}",
        ]
    )


_CARD_IINS = [  # (prefix choices, lengths) from the published IIN ranges
    (["4"], [16, 16, 16, 19]),
    ([str(p) for p in range(51, 56)] + [str(p) for p in range(2221, 2721, 37)], [16]),
    (["34", "37"], [15]),
    (["6011", "65", "644"], [16]),
    ([str(p) for p in range(3528, 3590, 7)], [16]),
    (["36", "300", "305", "38"], [14]),
    (["62"], [16, 19]),
]


def _card_number(rng: random.Random, valid: bool = True) -> str:
    prefixes, lengths = rng.choice(_CARD_IINS)
    prefix, length = rng.choice(prefixes), rng.choice(lengths)
    body = prefix + _d(rng, length - len(prefix) - 1)
    check = _luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def _card_format(rng: random.Random, number: str) -> str:
    sep = rng.choice([" ", " ", "-", ""])
    groups = {15: [4, 6, 5], 14: [4, 6, 4], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3]}[len(number)]
    parts, i = [], 0
    for g in groups:
        parts.append(number[i : i + g])
        i += g
    return sep.join(parts)


def credit_card(rng: random.Random) -> str:
    return _card_format(rng, _card_number(rng))


_IBAN_BBAN = {  # country: BBAN layout as (kind, count) runs; n digits, a upper letters, c alphanumerics
    "DE": [("n", 18)],
    "GB": [("a", 4), ("n", 14)],
    "FR": [("n", 10), ("c", 11), ("n", 2)],
    "NL": [("a", 4), ("n", 10)],
    "ES": [("n", 20)],
    "IT": [("a", 1), ("n", 10), ("c", 12)],
    "CH": [("n", 5), ("c", 12)],
    "BE": [("n", 12)],
    "AT": [("n", 16)],
    "PL": [("n", 24)],
    "IE": [("a", 4), ("n", 14)],
    "SE": [("n", 20)],
    "PT": [("n", 21)],
}


def _iban_compact(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(list(_IBAN_BBAN))
    alphabets = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}
    bban = "".join(_chars(rng, alphabets[k], n) for k, n in _IBAN_BBAN[country])
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = rng.choice([c for c in range(2, 99) if c != check])
    return f"{country}{check:02d}{bban}"


def _iban_format(rng: random.Random, compact: str) -> str:
    if rng.random() < 0.3:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def iban(rng: random.Random) -> str:
    return _iban_format(rng, _iban_compact(rng))


def _ssn(rng: random.Random) -> tuple[str, str, str]:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def national_id(rng: random.Random) -> str:
    """A US SSN or a UK National Insurance number in the forms that read as one without a label."""
    if rng.random() < 0.6:
        a, g, s = _ssn(rng)
        return rng.choice([f"{a}-{g}-{s}", f"{a}-{g}-{s}", f"{a} {g} {s}"])
    while True:
        prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if prefix not in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}:
            break
    digits, suffix = _d(rng, 6), rng.choice("ABCD")
    return rng.choice([f"{prefix}{digits}{suffix}", f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"])


def ssn_bare(rng: random.Random) -> str:
    """A nine-digit SSN without separators: it needs its label to be told from any other number."""
    return "".join(_ssn(rng))


def sin(rng: random.Random) -> str:
    """A Canadian Social Insurance Number (Luhn-valid), written after its label."""
    body = str(rng.choice([1, 2, 3, 4, 5, 6, 7, 9])) + _d(rng, 7)
    number = body + _luhn_digit(body)
    return rng.choice([" ", "-", ""]).join([number[:3], number[3:6], number[6:]])


def ip_address(rng: random.Random) -> str:
    r = rng.randint
    kind = rng.random()
    if kind < 0.25:
        return rng.choice(
            [
                f"10.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}",
                f"192.168.{r(0, 255)}.{r(1, 254)}",
                f"172.{r(16, 31)}.{r(0, 255)}.{r(1, 254)}",
            ]
        )
    if kind < 0.65:
        return f"{rng.choice([23, 34, 52, 81, 91, 104, 151, 185, 203, 213])}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"
    groups = [rng.getrandbits(16) for _ in range(8)]
    style = rng.random()
    if style < 0.25:
        return ":".join(f"{g:04x}" for g in [0x2001, 0x0DB8, *groups[2:]])
    if style < 0.6:
        groups[3:6] = [0, 0, 0]
        return ipaddress.IPv6Address(":".join(f"{g:x}" for g in [0x2A02, *groups[1:]])).compressed
    if style < 0.85:
        return "fe80::" + ":".join(f"{g:x}" for g in groups[:4])
    return f"::ffff:{r(1, 223)}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"


def api_key(rng: random.Random) -> str:
    """A provider token with its published prefix."""
    return rng.choice(
        [
            f"sk-{_chars(rng, B62, 48)}",
            f"sk-proj-{_chars(rng, B62 + '-_', 64)}",
            f"sk-ant-api03-{_chars(rng, B62 + '-_', 86)}AA",
            f"sk_live_{_chars(rng, B62, 24)}",
            f"sk_test_{_chars(rng, B62, 24)}",
            f"pk_live_{_chars(rng, B62, 24)}",
            f"rk_live_{_chars(rng, B62, 24)}",
            f"ghp_{_chars(rng, B62, 36)}",
            f"gho_{_chars(rng, B62, 36)}",
            f"github_pat_11{_chars(rng, B62.upper(), 20)}_{_chars(rng, B62, 59)}",
            f"AKIA{_chars(rng, string.ascii_uppercase + string.digits, 16)}",
            f"xoxb-{_d(rng, 12)}-{_d(rng, 13)}-{_chars(rng, B62, 24)}",
            f"xoxp-{_d(rng, 12)}-{_d(rng, 12)}-{_d(rng, 13)}-{_chars(rng, HEX, 32)}",
            f"AIza{_chars(rng, B62 + '-_', 35)}",
            f"glpat-{_chars(rng, B62 + '-_', 20)}",
            f"hf_{_chars(rng, string.ascii_letters, 34)}",
            f"npm_{_chars(rng, B62, 36)}",
            f"SG.{_chars(rng, B62 + '-_', 22)}.{_chars(rng, B62 + '-_', 43)}",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + f"eyJ{_chars(rng, B62, 40)}.{_chars(rng, B62 + '-_', 43)}",
            f"whsec_{_chars(rng, B62, 32)}",
            f"https://hooks.slack.com/services/T{_chars(rng, B62.upper(), 8)}/B{_chars(rng, B62.upper(), 10)}/"
            + _chars(rng, B62, 24),
        ]
    )


def secret_value(rng: random.Random) -> str:
    """The value of a `api_key = ...` / `token: ...` assignment: random, in the alphabets real secrets use."""
    alphabet, n = rng.choice([(HEX, 32), (HEX, 40), (B62, 32), (B64, 40), (B62 + "-_", 43)])
    return _chars(rng, alphabet, n)


def django_secret(rng: random.Random) -> str:
    return "django-insecure-" + _chars(rng, string.ascii_lowercase + string.digits + "!@#$%^&*(-_=+)", 50)


_KEY_TYPES = ["RSA ", "", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "]


def private_key(rng: random.Random) -> str:
    kind = rng.choice(_KEY_TYPES)
    lines = [_chars(rng, B64, 64) for _ in range(rng.randint(3, 9))] + [_chars(rng, B64, rng.randint(8, 60)) + "=="]
    begin, end = f"-----BEGIN {kind}PRIVATE KEY-----", f"-----END {kind}PRIVATE KEY-----"
    style = rng.random()
    if style < 0.5:
        return "\n".join([begin, *lines, end])
    if style < 0.7:  # pasted into a chat box that turned newlines into spaces
        return " ".join([begin, *lines, end])
    if style < 0.85:  # a JSON credentials file quoted inside text keeps its escaped newlines
        return "\\n".join([begin, *lines, end]) + "\\n"
    return "\n".join([begin, *lines[:3]])  # cut off: the END line never made it into the message


# --- look-alikes ---------------------------------------------------------------------------------------------


def _pick(*options: Gen) -> Gen:
    return lambda rng: rng.choice(options)(rng)


def _year(rng: random.Random) -> int:
    return rng.randint(2019, 2025)


def _date(rng: random.Random) -> str:
    y, m, day = _year(rng), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        [
            f"{y}-{m:02d}-{day:02d}",
            f"{day:02d}.{m:02d}.{y}",
            f"{m:02d}/{day:02d}/{y}",
            f"{y}-{m:02d}-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
            f"{day:02d}/{m:02d}/{y} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            f"{y}{m:02d}{day:02d}",
            f"{['Jan', 'Mar', 'Jun', 'Sep', 'Nov'][m % 5]} {day}, {y}",
        ]
    )


DECOYS: dict[str, Gen] = {
    "order": lambda rng: rng.choice(
        [
            f"ORD-{_year(rng)}-{_d(rng, 6)}",
            f"#{_d(rng, 7)}",
            f"INV-{_d(rng, 8)}",
            f"PO-45{_d(rng, 8)}",
            f"SO{_d(rng, 8)}",
            f"{_year(rng)}-{_d(rng, 5)}",
            f"A{_d(rng, 9)}",
            f"{_year(rng)}-{_d(rng, 4)}-{_d(rng, 4)}",
        ]
    ),
    "date": _date,
    "time": lambda rng: rng.choice(
        [
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{_d(rng, 3)}",
            f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} PM",
        ]
    ),
    "version": lambda rng: rng.choice(
        [
            f"{rng.randint(0, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
            f"v{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
            f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
            f"10.0.{rng.randint(17000, 26000)}.{rng.randint(100, 4000)}",
            f"{rng.randint(1, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}-rc.{rng.randint(1, 5)}",
            f"5.15.0-{rng.randint(50, 130)}-generic",
            f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        ]
    ),
    "build": lambda rng: rng.choice(
        [f"build {_year(rng)}0315.{rng.randint(1, 9)}", f"build #{_d(rng, 4)}", f"1.0.0+{_year(rng)}0315.{_d(rng, 4)}"]
    ),
    "tracking": lambda rng: rng.choice(
        [
            f"1Z{_chars(rng, string.ascii_uppercase + string.digits, 6)}{_d(rng, 10)}",
            f"9400 1{_d(rng, 3)} {_d(rng, 4)} {_d(rng, 4)} {_d(rng, 4)} {_d(rng, 2)}",
            f"{_d(rng, 4)} {_d(rng, 4)} {_d(rng, 4)}",
            f"JD0146{_d(rng, 14)}",
            f"RR{_d(rng, 9)}DE",
        ]
    ),
    "price": lambda rng: rng.choice(
        [
            f"${rng.randint(1, 9)},{_d(rng, 3)}.{_d(rng, 2)}",
            f"€{rng.randint(1, 9)}.{_d(rng, 3)},{_d(rng, 2)}",
            f"USD {rng.randint(10, 99)},{_d(rng, 3)}.00",
            f"{rng.randint(1, 9)} {_d(rng, 3)},{_d(rng, 2)} €",
            f"£{rng.randint(1, 99)}.{_d(rng, 2)}",
            f"${rng.randint(1, 9)},{_d(rng, 3)},{_d(rng, 3)}.00",
            f"CHF 2'{_d(rng, 3)}.00",
        ]
    ),
    "isbn": lambda rng: rng.choice(
        ["ISBN 978-3-16-148410-0", "ISBN-10: 0-306-40615-2", "ISBN 9780134685991", "978-1-4028-9462-6"]
    ),
    "sha": lambda rng: rng.choice(
        [_chars(rng, HEX, 40), _chars(rng, HEX, 7), _chars(rng, HEX, 64), "sha256:" + _chars(rng, HEX, 64)]
    ),
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "luhn_fail": lambda rng: _card_format(rng, _card_number(rng, valid=False)),
    "bad_iban": lambda rng: _iban_format(rng, _iban_compact(rng, valid=False)),
    "bad_ssn": lambda rng: rng.choice(
        [f"000-{_d(rng, 2)}-{_d(rng, 4)}", f"666-{_d(rng, 2)}-{_d(rng, 4)}", f"9{_d(rng, 2)}-{_d(rng, 2)}-{_d(rng, 4)}"]
    ),
    "bad_ip": lambda rng: rng.choice(
        [
            f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
            "1.3.6.1.4.1.311",
        ]
    ),
    "mac": lambda rng: ":".join(_chars(rng, "0123456789ABCDEF", 2) for _ in range(6)),
    "timestamp": lambda rng: rng.choice([str(rng.randint(1_600_000_000, 1_750_000_000)), _d(rng, 13)]),
    "count": lambda rng: rng.choice(
        [
            f"{rng.randint(1, 99)},{_d(rng, 3)},{_d(rng, 3)}",
            str(rng.randint(10**9, 10**10)),
            f"3 {_d(rng, 3)} {_d(rng, 3)}",
        ]
    ),
    "local_email": lambda rng: rng.choice(["admin@localhost", "root@localhost", "postgres@db"]),
    "pin": lambda rng: rng.choice(["lodash@4.17.21", "@types/node@20.11.0", "react@18.2.0", "requests==2.31.0"]),
    "ssh_remote": lambda rng: rng.choice(["git@github.com:acme/tunesmith.git", "git@gitlab.com:data/pipeline.git"]),
    "retina": lambda rng: rng.choice(["logo@2x.png", "icon@3x.webp", "hero@2x.jpg"]),
    "card_last4": lambda rng: rng.choice([f"card ending in {_d(rng, 4)}", f"Visa •••• {_d(rng, 4)}"]),
    "placeholder_key": lambda rng: rng.choice(
        ["YOUR_API_KEY", "<your-token-here>", "${OPENAI_API_KEY}", "xxxxxxxxxxxxxxxxxxxxxxxx", "changeme"]
    ),
    "model_id": lambda rng: rng.choice(["meta-llama/Llama-3.2-1B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"]),
    "code": lambda rng: rng.choice(
        ["HTTP 404", "port 8080", "error 0x80070005", "exit code 137", "PROJ-1234", f"case 00{_d(rng, 6)}"]
    ),
    "mask": lambda rng: rng.choice(["255.255.255.0", "255.255.240.0", "0.0.0.0"]),
    "coords": lambda rng: f"{rng.randint(-80, 80)}.{_d(rng, 4)}, {rng.randint(-170, 170)}.{_d(rng, 4)}",
    "ean": lambda rng: "40" + _d(rng, 11),
}

GENERATORS: dict[str, Gen] = {
    "EMAIL": email,
    "PHONE": phone,
    "PHONE_LOCAL": phone_local,
    "CREDIT_CARD": credit_card,
    "IBAN": iban,
    "NATIONAL_ID": national_id,
    "SSN_BARE": ssn_bare,
    "SIN": sin,
    "IP_ADDRESS": ip_address,
    "API_KEY": api_key,
    "SECRET": secret_value,
    "DJANGO_SECRET": django_secret,
    "TELEGRAM": lambda rng: f"{rng.randint(10**8, 10**10)}:AA{_chars(rng, B62 + '-_', 33)}",
    "PRIVATE_KEY": private_key,
    "name": lambda rng: f"{rng.choice(FIRST)} {rng.choice(LAST)}",
    "first": lambda rng: rng.choice(FIRST),
    "city": lambda rng: rng.choice(CITY),
    "product": lambda rng: rng.choice(PRODUCT),
    **DECOYS,
}
SLOT_KIND = {"PHONE_LOCAL": "PHONE", "SSN_BARE": "NATIONAL_ID", "SIN": "NATIONAL_ID"}
SLOT_KIND |= {"SECRET": "API_KEY", "DJANGO_SECRET": "API_KEY", "TELEGRAM": "API_KEY"}
SLOT_KIND.update({k: k for k in PII_KINDS})

# --- sentences ----------------------------------------------------------------------------------------------
# Templates hold {SLOT}s: upper-case slots are planted PII, lower-case ones fillers and look-alikes.

PII_TEMPLATES: dict[str, list[str]] = {
    "EMAIL": [
        "Hi, this is {name}. Please send the invoice for {order} to {EMAIL} instead of my old address.",
        "Customer {name} <{EMAIL}> reported that the {product} stopped working after the {version} update.",
        "From: {EMAIL}\nSubject: Refund for {order}\n\nI was charged {price} twice on {date}.",
        "user: can you cc {EMAIL} on the ticket? thanks",
        "mailto:{EMAIL}",
        "[{time}] INFO auth: login succeeded for {EMAIL} from {city}",
        '{{"customer": "{name}", "email": "{EMAIL}", "plan": "{product}"}}',
        "Please reach out to our billing team ({EMAIL}) with your order number {order}.",
        "Example: curl -u {EMAIL}:password https://api.example.com/v1/me",
        "Forwarding to {EMAIL}, {EMAIL}; they own the {city} account.",
        "My email is {EMAIL}.",
    ],
    "PHONE": [
        "Hi, it's {name}, please call me back at {PHONE} about order {order}.",
        "Customer phone: {PHONE} | city: {city} | order {order}",
        "{name} ({PHONE}) asked to reschedule the delivery of the {product} to {date}.",
        "Tel.: {PHONE}",
        "You can reach our {city} office on {PHONE} between 9:00 and 17:30.",
        "[{date}] callback requested -> {PHONE}, ticket {code}",
        "Mobile {PHONE}, landline {PHONE}",
        "Contact: {name}, {PHONE}, {EMAIL}",
        "my number is {PHONE} if the courier needs it",
        "Call {PHONE} or {PHONE} for urgent issues.",
        "Kontakt: {name}, Telefon {PHONE}",
        "whatsapp me on {PHONE} :)",
        "Móvil: {PHONE_LOCAL}",
        "Please call me on {PHONE_LOCAL}, I am in {city} all week.",
        "Tel. {PHONE_LOCAL} (solo mañanas)",
        "cellulare {PHONE_LOCAL}",
        "phone={PHONE_LOCAL} status=verified",
    ],
    "CREDIT_CARD": [
        "I paid with my card {CREDIT_CARD} exp 04/27 but the order {order} still shows unpaid.",
        "Card number: {CREDIT_CARD}",
        "pls charge {CREDIT_CARD} for the {product}, the {card_last4} one expired",
        "[{time}] WARN payments: declined card={CREDIT_CARD} amount={price}",
        "Can you refund {price} to {CREDIT_CARD}? It was billed on {date}.",
        '{{"cc": "{CREDIT_CARD}", "name": "{name}"}}',
        "my new card is {CREDIT_CARD}, cvv is on the back",
    ],
    "IBAN": [
        "Please wire the refund to IBAN {IBAN} (account holder {name}).",
        "Bankverbindung: {IBAN}, BIC COBADEFFXXX",
        "IBAN: {IBAN}",
        "Our new account is {IBAN}; invoice {order} should be paid there.",
        "payout_iban={IBAN} currency=EUR amount={price}",
        "Kindly update my bank details to {IBAN} before {date}.",
    ],
    "NATIONAL_ID": [
        "My social security number is {NATIONAL_ID}, I need it removed from the form.",
        "SSN {NATIONAL_ID} on file for {name}",
        "National Insurance number: {NATIONAL_ID}",
        "Applicant {name}, NI {NATIONAL_ID}, started {date}",
        '{{"employee": "{name}", "ssn": "{NATIONAL_ID}"}}',
        "The tax form still shows {NATIONAL_ID} next to my name, please fix it.",
        "ssn: {SSN_BARE}",
        "SIN {SIN} (Canada)",
        "social insurance number {SIN}",
    ],
    "IP_ADDRESS": [
        '{IP_ADDRESS} - - [15/Mar/2024:14:30:00 +0000] "GET /v1/models HTTP/1.1" 200 512',
        "Failed password for {first} from {IP_ADDRESS} port 52144 ssh2",
        "[{time}] ERROR proxy: upstream {IP_ADDRESS}:8443 timed out after 30000 ms",
        "The customer says the dashboard is blocked from {IP_ADDRESS}, can we whitelist it?",
        "client_ip={IP_ADDRESS} user_agent=Mozilla/5.0 request_id={uuid}",
        "Listening on http://[{IP_ADDRESS}]:8000 (build {build})",
        "My home IP is {IP_ADDRESS} and the office one is {IP_ADDRESS}.",
        "ping {IP_ADDRESS} returns timeouts since {date}",
    ],
    "API_KEY": [
        "export OPENAI_API_KEY={API_KEY}",
        "I accidentally pasted my key {API_KEY} in the last message, can you delete it?",
        "[{time}] DEBUG http: Authorization: Bearer {API_KEY}",
        "Config dump: model={model_id} token={API_KEY} retries=3",
        'api_key = "{SECRET}"',
        "X-Api-Key: {SECRET}",
        "aws_secret_access_key = {SECRET}",
        "Authorization: Bearer {SECRET}",
        "SECRET_KEY='{SECRET}'",
        "SECRET_KEY = '{DJANGO_SECRET}'",
        "client_secret: {SECRET}  # rotate before {date}",
        '{{"service": "billing", "access_token": "{SECRET}"}}',
        "here is the deploy token {API_KEY} for the {city} cluster",
        "TELEGRAM_BOT_TOKEN={TELEGRAM}",
    ],
    "PRIVATE_KEY": [
        "Our deploy key leaked in the build log:\n{PRIVATE_KEY}\nPlease rotate it.",
        "{PRIVATE_KEY}",
        "I'm getting 'bad permissions' with this key: {PRIVATE_KEY} what am I doing wrong?",
        '{{"type": "service_account", "private_key": "{PRIVATE_KEY}", "client_email": "{EMAIL}"}}',
    ],
}

DECOY_TEMPLATES = [
    "Order {order} placed on {date} for {price}; tracking {tracking}.",
    "Upgraded from {version} to {version} ({build}); see commit {sha}.",
    "Request {uuid} finished at {time} on {date}, {count} tokens processed.",
    "Invoice {order} is due {date}. Amount: {price}.",
    "The book is {isbn}, we shipped it with {tracking} on {date}.",
    "[{date} {time}] INFO worker: processed {count} rows in {timestamp} ms",
    "Card declined: the number {luhn_fail} failed validation, please re-enter.",
    "That IBAN ({bad_iban}) has a typo, the checksum does not match.",
    "Test data uses {bad_ssn}, which can never be issued.",
    "Host {bad_ip} is not a valid address; OID {bad_ip} is a MIB path.",
    "Device MAC {mac}, firmware {version}, {code}.",
    "Connect as {local_email}, then run npm install {pin}.",
    "git clone {ssh_remote} && git checkout {sha}",
    "Images {retina} and {retina} are missing from build {build}.",
    "Payment received from {card_last4} on {date}.",
    "Set api_key={placeholder_key} in your .env, then run the job.",
    "token: {placeholder_key}",
    "tokenizer: {model_id}\nmax_tokens: 4096\nbase_model: {model_id}",
    "netmask {mask}, gateway listening on {mask}:8080",
    "Location {coords}, delivery window {time}-{time}.",
    "EAN {ean}, SKU {order}, {price} incl. VAT",
    "{code}: upstream returned an error at {time}, retry {order}.",
    "Release notes for {version}: fixes {code}, performance up 12.5% on {date}.",
    "The train loss at step {count} was 1.2345 (lr 3e-4, {timestamp}).",
    "Shipment {tracking} ({order}) left the depot on {date} at {time}.",
    "Ticket #{timestamp} merged into {code}; ETA {date}.",
    "Checksum {sha} for release {version} built on {date}.",
]


def _fill(template: str, rng: random.Random) -> tuple[str, list[dict[str, Any]], list[str]]:
    out: list[str] = []
    pii: list[dict[str, Any]] = []
    decoys: list[str] = []
    pos = 0
    for literal, slot, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if slot is None:
            continue
        value = GENERATORS[slot](rng)
        if slot in SLOT_KIND:
            pii.append({"kind": SLOT_KIND[slot], "start": pos, "end": pos + len(value)})
        elif slot in DECOYS:
            decoys.append(slot)
        out.append(value)
        pos += len(value)
    return "".join(out), pii, decoys


def make_rows(pii_rows: int = 640, decoy_rows: int = 240, seed: int = 20240315) -> list[dict[str, Any]]:
    """Rows with planted PII (each kind leads in turn) followed by rows of look-alikes only."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(pii_rows):
        text, pii, decoys = _fill(rng.choice(PII_TEMPLATES[PII_KINDS[i % len(PII_KINDS)]]), rng)
        rows.append({"id": f"pii-{i + 1:04d}", "text": text, "pii": pii, "decoys": decoys})
    for i in range(decoy_rows):
        text, pii, decoys = _fill(rng.choice(DECOY_TEMPLATES), rng)
        rows.append({"id": f"decoy-{i + 1:04d}", "text": text, "pii": pii, "decoys": decoys})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp/pii_planted.jsonl", help="where to write the JSONL")
    parser.add_argument("--pii-rows", type=int, default=640)
    parser.add_argument("--decoy-rows", type=int, default=240)
    parser.add_argument("--seed", type=int, default=20240315)
    args = parser.parse_args(argv)
    rows = make_rows(args.pii_rows, args.decoy_rows, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    planted = sum(len(r["pii"]) for r in rows)
    print(f"wrote {len(rows)} rows ({args.pii_rows} with PII, {planted} planted values) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
