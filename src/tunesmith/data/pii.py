"""Find personal data and secrets in text: regular expressions for the shapes, checksums and context for the proof.

    from tunesmith.data.pii import redact_text, scan_text
    text, hits = redact_text("mail jane@acme.com or call +44 20 7946 0958")  # "mail <EMAIL> or call <PHONE>"

Kinds and what counts (benchmarks/README.md has the measured recall and precision):
- EMAIL: local@domain.tld with an alphabetic TLD. Documentation addresses (user@example.com) count: an email is an
  email. Not matched: user@localhost, package pins (lodash@4.17.21), retina images (logo@2x.png), and the user@host
  of an SSH remote (git@github.com:org/repo).
- PHONE: international (+CC or 00CC, 8-15 digits), North American (3-3-4 digits, optional leading 1 and area code in
  parentheses), and national numbers with a trunk 0 or an area code in parentheses (9-12 digits, groups of 2+
  digits, one kind of separator). Other digit strings of phone length (ten bare digits, a Spanish "612 345 678")
  count only after a phone word ("call", "tel", "mobile", ...) with no "order"/"invoice"/... word in between.
- CREDIT_CARD: 14-19 digits with optional space/dash groups, a known issuer prefix for its length, and Luhn. The
  13-digit Visa numbers are left out: none are issued now, and allowing them flags EAN-13 barcodes.
- IBAN: country code with that country's length, check digits, mod-97, compact or with spaces.
- NATIONAL_ID: US SSN (3-2-4 with dashes or spaces; area not 000, 666 or 9xx, group not 00, serial not 0000; nine
  bare digits after "SSN"), UK National Insurance number, Canadian SIN (after "SIN", Luhn-valid).
- IP_ADDRESS: IPv4 (octets <= 255) and IPv6 (full, compressed, IPv4-mapped). Not an address: dotted numbers glued
  to a word or a longer dotted number (v1.2.3.4, 1.3.6.1.4.1), after "version"/"build"/"release", netmasks and
  broadcast (255.x.x.x), 0.0.0.0, and IPv6-shaped strings with no digit (a C++ `Face::add`).
- API_KEY: provider tokens by their published prefix (OpenAI/Anthropic sk-, Stripe sk_/pk_/rk_ live/test, GitHub,
  AWS access key ids, Slack tokens and webhook URLs, Discord webhook URLs, Stripe webhook secrets, Google AIza,
  GitLab, Hugging Face, npm, SendGrid, JWTs) and the value of an assignment to a secret-named key (api_key=,
  token:, password=, client_secret:, Bearer) when the value is 16+ characters, has letters and digits, is varied
  (3+ bits of entropy per character) and is not a placeholder (${VAR}, <your-key>).
- PRIVATE_KEY: a PEM/OpenSSH/PGP private key block from BEGIN through END; when END is missing, through the base64
  that follows.
Hits never overlap: where shapes collide, the kind earlier in _PRIORITY wins, then the longer match.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PII_KINDS = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "NATIONAL_ID", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY")
_PRIORITY = ("PRIVATE_KEY", "API_KEY", "EMAIL", "IBAN", "CREDIT_CARD", "NATIONAL_ID", "IP_ADDRESS", "PHONE")


@dataclass(frozen=True)
class PiiHit:
    """One finding: its kind, its span in the scanned text, and a masked form that is safe to print or log."""

    kind: str
    start: int
    end: int
    masked: str


Span = tuple[int, int]


def scan_text(text: str) -> list[PiiHit]:
    """Every PII and secret found in `text`, non-overlapping and sorted by start."""
    finders = _FINDERS if _DIGIT.search(text) else _TEXT_FINDERS  # most kinds need a digit; prose often has none
    found = [(_PRIORITY.index(kind), kind, s, e) for kind, find in finders.items() for s, e in find(text)]
    found.sort(key=lambda f: (f[0], f[2] - f[3], f[2]))  # by priority, then longest, then first
    starts: list[int] = []  # the spans taken so far, sorted; they never overlap, so their ends are sorted too
    ends: list[int] = []
    hits: list[PiiHit] = []
    for _, kind, start, end in found:
        i = bisect.bisect_right(starts, start)
        if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        hits.append(PiiHit(kind, start, end, _MASKS[kind](text[start:end])))
    return sorted(hits, key=lambda h: h.start)


def redact_text(text: str) -> tuple[str, list[PiiHit]]:
    """`text` with every hit replaced by its placeholder ("<EMAIL>", "<PHONE>", ...), and the hits (offsets refer to
    the original text)."""
    hits = scan_text(text)
    parts: list[str] = []
    pos = 0
    for hit in hits:
        parts += [text[pos : hit.start], f"<{hit.kind}>"]
        pos = hit.end
    parts.append(text[pos:])
    return "".join(parts), hits


# --- checksums -------------------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """Country length and mod-97 of an IBAN without spaces."""
    compact = compact.upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit() or not compact.isalnum():
        return False
    return int("".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])) % 97 == 1


# From the SWIFT IBAN registry.
_IBAN_LENGTHS = {
    entry[:2]: int(entry[2:])
    for line in [
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20",
        "EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30",
        "KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24",
        "PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29",
        "VA22 VG24 XK20",
    ]
    for entry in line.split(" ")
}

# (first digits, lengths) of card issuers: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir.
_CARD_PREFIXES: list[tuple[range, int, range]] = [
    (range(4, 5), 1, range(16, 20)),
    (range(51, 56), 2, range(16, 17)),
    (range(2221, 2721), 4, range(16, 17)),
    (range(34, 35), 2, range(15, 16)),
    (range(37, 38), 2, range(15, 16)),
    (range(6011, 6012), 4, range(16, 20)),
    (range(644, 650), 3, range(16, 20)),
    (range(65, 66), 2, range(16, 20)),
    (range(3528, 3590), 4, range(16, 20)),
    (range(300, 306), 3, range(14, 20)),
    (range(36, 37), 2, range(14, 20)),
    (range(38, 40), 2, range(14, 20)),
    (range(62, 63), 2, range(16, 20)),
    (range(50, 51), 2, range(16, 20)),
    (range(56, 59), 2, range(16, 20)),
    (range(67, 68), 2, range(16, 20)),
    (range(2200, 2205), 4, range(16, 20)),
]


def card_ok(digits: str) -> bool:
    known = any(int(digits[:n]) in first and len(digits) in lengths for first, n, lengths in _CARD_PREFIXES)
    return known and luhn_ok(digits)


# --- finders: each yields (start, end) spans of one kind --------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-][\w.%+-]*+@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+([^\W\d_]{2,24}))(?![\w-]|\.[^\W_]|@)"
)
_FILE_TLDS = {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "pdf"}
_SSH_PATH = re.compile(r":[\w.~-]*/")


def _emails(text: str) -> Iterator[Span]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        local = m.group()[: m.start(1) - m.start() - 1]
        if ".." in local or local.endswith(".") or m.group(2).lower() in _FILE_TLDS:
            continue
        if _SSH_PATH.match(text, m.end()):  # git@github.com:org/repo is a remote, not a mailbox
            continue
        yield m.span()


# A run of digits with the separators phones use; split at anything else and judged piece by piece.
_PHONE_RUN = re.compile(r"(?<![\w+\-./,'$€£¥#])(?:\+\ ?)?\(?\d[\d \-./()]*+")
_TRUNK0 = re.compile(r"\s*\(0\)\s*")
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|telephone|telefon\w*|tel[eé]fono|mobile?|m[oó]vil|cell\w*|cellulare|handy|call\w*|ring|"
    r"text|sms|whats\s?app|fax|contact|reach|number(?!\s+of)|n[uú]mero|num)\b"
)
_NOT_PHONE_WORDS = re.compile(
    r"(?i)\b(?:order|invoice|ticket|case|account|acct|tracking|ref\w*|po|sku|serial|id|iban|card|isbn|ean|"
    r"shipment|parcel)\b"
)
_CODE_TOKEN_BEFORE = re.compile(r"(?<![\w-])[A-Z]*\d[A-Z0-9]* $")
# A decimal, a price, a percentage or a sum: "1 234,56", "€ 1.234", "16128-3294 = 12834".
_NOT_PHONE_AFTER = re.compile(r",\d|\s?[%€$£]|\w|\s?[=*×]\s?\d")
_NOT_PHONE_BEFORE = re.compile(r"(?:[$€£¥]|\b(?:USD|EUR|GBP|CHF|JPY))\s?$")


def _phones(text: str) -> Iterator[Span]:
    for m in _PHONE_RUN.finditer(text):
        for start, end in _phone_pieces(m.group()):
            if text[m.start() + start] == "(" and m.group().count("(", start, end) > m.group().count(")", start, end):
                start += 1  # the parenthesis around the number, not around an area code
            if _is_phone(text, m.start() + start, m.start() + end):
                yield m.start() + start, m.start() + end


def _phone_pieces(run: str) -> Iterator[Span]:
    """Split a digit run at separators no phone uses ("  ", " / ", ". "). A piece starts at its first digit or at
    the "+" or "(" before it, and ends at a digit."""
    tokens = list(re.finditer(r"\d+|\D+", run))
    start: int | None = None
    last_digit = 0
    for i, token in enumerate(tokens):
        text = token.group()
        if text[0].isdigit():
            start = token.start() if start is None else start
            last_digit = token.end()
        elif start is None:
            start = token.start()  # the "+" or "(" that opens the run
        elif i + 1 == len(tokens) or not _phone_separator(text):
            yield start, last_digit
            start = token.start() + text.rindex("(") if "(" in text else None
    if start is not None and last_digit > start:
        yield start, last_digit


def _phone_separator(sep: str) -> bool:
    if sep.count("(") > 1 or sep.count(")") > 1:
        return False
    return sep.replace("(", "").replace(")", "") in ("", " ", "-", ".", "/")


def _is_phone(text: str, start: int, end: int) -> bool:
    piece = text[start:end]
    if piece.count("(") != piece.count(")"):
        return False
    before, after = text[max(0, start - 48) : start], text[end : end + 3]
    if _NOT_PHONE_AFTER.match(after) or _NOT_PHONE_BEFORE.search(before) or _CODE_TOKEN_BEFORE.search(before):
        return False
    body = _TRUNK0.sub(" ", piece)
    groups = re.findall(r"\d+", body)
    digits = "".join(groups)
    if not 8 <= len(digits) <= 17:
        return False
    seps = set(re.findall(r"[ \-./]", re.sub(r"^\+\s?|\s?\(\d+\)\s?", "", body)))
    if piece.startswith("+"):
        return len(digits) <= 15 and digits[0] != "0"
    if piece.startswith("00") and len(groups) > 1:  # 0049 30 ...: international, unless labelled as an id
        return 8 <= len(digits) - 2 <= 15 and digits[2] != "0" and not _labelled_other(before)
    if len(seps) > 1:  # one kind of separator outside the country code and area code: dates with times mix them
        return False
    if _labelled_other(before):
        return False
    sizes = [len(g) for g in groups]
    if sizes in ([3, 3, 4], [1, 3, 3, 4]) and digits[-10] in "23456789" and (len(digits) == 10 or digits[0] == "1"):
        return True
    trunk = (digits[0] == "0" and digits[1] != "0") or piece.startswith("(")
    if trunk and 9 <= len(digits) <= 12 and len(groups) > 1 and min(sizes) >= 2:
        return True
    return 9 <= len(digits) <= 12 and min(sizes) >= 2 and _phone_word_before(before)


def _phone_word_before(before: str) -> bool:
    return _PHONE_WORDS.search(before) is not None and not _labelled_other(before)


def _labelled_other(before: str) -> bool:
    """The nearest label says the number is something else: "order 0151 ...", "tracking number 0979 ..." (and
    not "order 123, call 0151 ...")."""
    other = [n.start() for n in _NOT_PHONE_WORDS.finditer(before)]
    if not other:
        return False
    phone_words = [w.start() for w in _PHONE_WORDS.finditer(before)]
    return not phone_words or other[-1] > phone_words[-1] - 16


_CARD = re.compile(
    r"(?<![\w.,-])"  # not the fraction of a decimal (0.4827586157431629) or the tail of a code
    r"(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{4}([ -]?)\d{6}\2\d{4,5}|\d{14,19})"
    r"(?![\w-]|[.,]\d)"
)


_DIGIT_THEN = {sep: {f"{d}{sep}" for d in "0123456789"} for sep in " -"}
_SEP_DIGIT = {sep: re.compile(rf"{sep}\d") for sep in " -"}


def _cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        sep = m.group(1) or m.group(2)
        if sep and (
            text[max(0, m.start() - 2) : m.start()] in _DIGIT_THEN[sep] or _SEP_DIGIT[sep].match(text, m.end())
        ):
            continue  # one stretch of a longer number grouped the same way: a 22-digit tracking number
        if card_ok(re.sub(r"\D", "", m.group())):
            yield m.span()


_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?= ?[A-Za-z0-9])")


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN_HEAD.finditer(text):
        length = _IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None:
            continue
        chars, i = [], m.start()
        while i < len(text) and len(chars) < length:  # walk alphanumerics, allowing one space between them
            if text[i].isascii() and text[i].isalnum():
                chars.append(text[i])
            elif not (text[i] == " " and chars and i + 1 < len(text) and text[i + 1] != " "):
                break
            i += 1
        if len(chars) == length and not (i < len(text) and text[i].isalnum()) and iban_ok("".join(chars)):
            yield m.start(), i


_SSN = re.compile(r"(?<![\w-])(?<!\d[ -])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])(?![ -]\d)")
_SSN_LABELLED = re.compile(
    r"(?i)\b(?:ssn|social security(?: number| no\.?)?)[\s:#=\"'.-]{0,6}"
    r"((?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4})\b"
)
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]( ?)\d{2}\1\d{2}\1\d{2}\1[A-D]"
    r"(?![A-Za-z0-9])"
)
_SIN = re.compile(r"(?:\bSIN|(?i:social insurance(?: number| no\.?)?))[\s:#=\"'.-]{0,6}(\d{3}([ -]?)\d{3}\2\d{3})\b")


def _national_ids(text: str) -> Iterator[Span]:
    yield from (m.span() for m in _SSN.finditer(text))
    yield from (m.span() for m in _NINO.finditer(text))
    lower = text.lower()
    if "ssn" in lower or "social security" in lower:
        yield from (m.span(1) for m in _SSN_LABELLED.finditer(text))
    if "SIN" in text or "social insurance" in lower:
        yield from (m.span(1) for m in _SIN.finditer(text) if luhn_ok(re.sub(r"\D", "", m.group(1))))


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]+(?:%[\w.]+)?")
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|ver|release|firmware|build|rev|v)\.?\s*[:=]?\s*$")


def _ip_addresses(text: str) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        if m.group().startswith("255.") or m.group() == "0.0.0.0":
            continue
        if not _VERSION_BEFORE.search(text, max(0, m.start() - 24), m.start()):
            yield m.span()
    if "::" not in text and text.count(":") < 7:
        return
    for m in _IPV6.finditer(text):
        address, _, zone = m.group().partition("%")
        address = address.rstrip(".")
        if address.endswith(":") and not address.endswith("::"):
            address = address[:-1]  # "fe80::1: timeout" ends a clause, not the address
        if not _ipv6_ok(address) and not zone:
            address = address.rsplit(":", 1)[0]  # a port written without brackets: 2001:db8::1:8443
            if not _ipv6_ok(address):
                continue
        if any(c.isdigit() for c in address):
            yield m.start(), m.start() + len(address) + (len(zone) + 1 if zone else 0)


def _ipv6_ok(address: str) -> bool:
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


_PROVIDER_KEY = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}"
    r"|[spr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}"
    r"|xox[baprse]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[0-9A-Za-z_-]{20,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|SG\.[\w-]{22}\.[\w-]{43}"
    r"|eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"
    r"|whsec_[A-Za-z0-9]{24,}"
    r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"
    r"|https://(?:discord|discordapp)\.com/api/webhooks/\d+/[A-Za-z0-9_-]{20,}"
    r")(?![\w-])"
)
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?key|token|passw(?:or)?d|pwd|"
    r"private[_-]?key|credentials?)(?![a-z0-9])[\"']?\s*(?:=>|:=|[:=])\s*(?:\"([^\"\s]+)\"|'([^'\s]+)'|([^\s\"',;]+))"
)
_SECRET_WORDS = ("key", "secret", "token", "passw", "pwd", "credential")
_BEARER = re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]+)")


def _api_keys(text: str) -> Iterator[Span]:
    for m in _PROVIDER_KEY.finditer(text):
        if not m.group().startswith("sk-") or _mixed(m.group()[3:]):
            yield m.span()
    lower = text.lower()
    if any(word in lower for word in _SECRET_WORDS):
        for m in _SECRET_ASSIGNMENT.finditer(text):
            group = next(g for g in (1, 2, 3) if m.group(g) is not None)
            if _secret_like(m.group(group)):
                yield m.span(group)
    if "bearer" in lower:
        for m in _BEARER.finditer(text):
            if _secret_like(m.group(1)):
                yield m.span(1)


def _mixed(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _secret_like(value: str) -> bool:
    """Random enough to be a credential: long, letters and digits, varied, and not a ${VAR} or <placeholder>."""
    if not 16 <= len(value) <= 1024 or not _mixed(value) or value[0] in "$<{%" or "://" in value:
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.0


_KEY_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")
_KEY_BODY = re.compile(r"(?:[A-Za-z0-9+/=\s]|\\[nr])*+")


def _private_keys(text: str) -> Iterator[Span]:
    if "-----BEGIN" not in text:
        return
    for m in _KEY_BEGIN.finditer(text):
        end_line = f"-----END {m.group(1)}PRIVATE KEY{m.group(2) or ''}-----"
        end = text.find(end_line, m.end())
        if end != -1:
            yield m.start(), end + len(end_line)
        else:  # cut off before END: take the base64 that follows, up to the first character a key cannot hold
            body = _KEY_BODY.match(text, m.end())
            yield m.start(), m.end() + len(body.group().rstrip() if body else "")


_DIGIT = re.compile(r"\d")
_FINDERS: dict[str, Callable[[str], Iterator[Span]]] = {
    "EMAIL": _emails,
    "PHONE": _phones,
    "CREDIT_CARD": _cards,
    "IBAN": _ibans,
    "NATIONAL_ID": _national_ids,
    "IP_ADDRESS": _ip_addresses,
    "API_KEY": _api_keys,
    "PRIVATE_KEY": _private_keys,
}
_TEXT_FINDERS = {kind: _FINDERS[kind] for kind in ("EMAIL", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY")}

# --- masks: enough to recognise a value in a report, never the value ------------------------------------------


def _mask_email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    tld = domain.rsplit(".", 1)[-1]
    return f"{local[0]}***@{domain[0]}***.{tld}"


def _mask_tail(value: str, keep: int) -> str:
    """Every letter and digit but the last `keep` starred; separators kept."""
    total = sum(c.isalnum() for c in value)
    out, seen = [], 0
    for c in value:
        if c.isalnum():
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_iban(value: str) -> str:
    masked = _mask_tail(value, 4)
    return value[:2] + masked[2:]


def _mask_ip(value: str) -> str:
    if ":" in value:
        return value.split(":")[0] + ":*:*"
    return ".".join(value.split(".")[:2]) + ".*.*"


def _mask_api_key(value: str) -> str:
    prefix = re.match(r"[A-Za-z]{2,10}[-_.](?:[A-Za-z]{2,10}[-_])?", value)
    keep = len(prefix.group()) + 1 if prefix and len(prefix.group()) < len(value) // 2 else 4
    return value[:keep] + "***"


_MASKS: dict[str, Callable[[str], str]] = {
    "EMAIL": _mask_email,
    "PHONE": lambda v: _mask_tail(v, 2),
    "CREDIT_CARD": lambda v: "**** **** **** " + re.sub(r"\D", "", v)[-4:],
    "IBAN": _mask_iban,
    "NATIONAL_ID": lambda v: _mask_tail(v, 2),
    "IP_ADDRESS": _mask_ip,
    "API_KEY": _mask_api_key,
    "PRIVATE_KEY": lambda v: "-----BEGIN *** PRIVATE KEY-----",
}
