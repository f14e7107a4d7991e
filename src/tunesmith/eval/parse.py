"""Reading a prediction out of generated text, before it is scored by `tunesmith.eval.metrics`.

    from tunesmith.eval.parse import first_line, match_label, strip_prefix, extract_number
    match_label(strip_prefix(first_line("\\nSentiment: Positive.\\nThe review...")), ["negative", "positive"])
    extract_number("She makes 9 * 2 = $18 every day.\\n#### 18")  # "18"

Each helper does one thing and returns None (never a guess) when there is nothing to read; the metrics count
None as a wrong or invalid prediction, so unparseable generations are reported, not dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

# Lead-ins that instruction-tuned models put before the answer; matched case-insensitively before a colon.
DEFAULT_PREFIXES = (
    "answer",
    "final answer",
    "the answer is",
    "sentiment",
    "label",
    "category",
    "class",
    "classification",
    "output",
    "response",
    "prediction",
    "summary",
    "tl;dr",
    "tldr",
    "translation",
    "assistant",
)

# A number: thousands groups of exactly three digits ("1,234"), or plain digits; an optional decimal part. A sign
# ("-", or the typographic minus U+2212) may stand before a currency sign ("-$7" is minus seven).
# (?<![\w.]) keeps "3-4" from reading as "-4" and "x2"/"v1.2" from reading as numbers mid-word.
_NUMBER = re.compile(r"(?<![\w.])[-\u2212]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_NOT_PART = str.maketrans({",": None, "$": None, "€": None, "£": None, "¥": None, "\u2212": "-"})
_GSM8K_MARKER = "####"


def first_line(text: str) -> str:
    """The first line that is not blank, stripped (models often open with a newline); "" when there is none."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def strip_prefix(text: str, prefixes: Sequence[str] = DEFAULT_PREFIXES) -> str:
    """Removes a leading "Answer:"-style lead-in (case-insensitive, colon required, markdown bold/headers
    tolerated: "**Answer:** x", "## Sentiment: x"), repeatedly ("Answer: Label: x" → "x"), and strips the rest."""
    names = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    pattern = re.compile(rf"^[\s*_#>]*(?:{names})[\s*_]*[:：][\s*_]*", re.IGNORECASE)
    while True:
        stripped = pattern.sub("", text, count=1)
        if stripped == text:
            return text.strip()
        text = stripped


def match_label(text: str, labels: Sequence[str]) -> str | None:
    """The label (spelled as in `labels`) that `text` names, matched case-insensitively as whole words.

    The label found at the start of the text wins, and failing that the one that appears earliest; both are
    "the earliest occurrence", since the start is the earliest place. Ties at the same position go to the
    longest label ("very positive" over "positive"), then to the one listed first. None when no label appears.
    No negation handling: "not positive" matches "positive"; prompt for the bare label to avoid that.
    """
    best: tuple[int, int, int] | None = None  # (position, -length, index in labels): smallest wins
    lowered = text.lower()
    for i, label in enumerate(labels):
        found = re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", lowered) if label else None
        if found:
            key = (found.start(), -len(label), i)
            best = key if best is None or key < best else best
    return None if best is None else labels[best[2]]


def extract_number(text: str) -> str | None:
    """The answer number of a generation: the one after the last GSM8K "####" marker when there is one, else
    the last number in the text. Thousands commas are removed ("1,234" → "1234"), a sign and decimals kept
    as written ("-3.50" stays "-3.50", "-$7" is "-7"); currency signs, units and a closing full stop are not part
    of it."""
    marker = text.rfind(_GSM8K_MARKER)
    if marker >= 0:
        found = _NUMBER.search(text, marker + len(_GSM8K_MARKER))
        if found:
            return found.group().translate(_NOT_PART)
    numbers = _NUMBER.findall(text)
    return numbers[-1].translate(_NOT_PART) if numbers else None


def number_value(text: str) -> Decimal | None:
    """The value of `text`'s answer number (`extract_number`), to compare numbers as numbers: "$18.00", "18" and
    "18." are all 18, while "-7" is not 7 and "1.8" is not 18 (SQuAD text normalisation drops "-" and ".", so it
    would call both pairs equal). Decimal, not float: exact answers compare exactly, with no rounding tolerance
    to choose. None when the text holds no number."""
    number = extract_number(text)
    return None if number is None else Decimal(number)


def number_text(value: Decimal | None) -> str | None:
    """A value as plain text without trailing zeros or an exponent ("18.00" -> "18", "1E+3" -> "1000"), for the
    per-row report."""
    return None if value is None else format((value + 0).normalize(), "f")  # + 0 turns -0 into 0
