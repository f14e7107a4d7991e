"""Record kinds, kind detection, field mapping, and the checks that turn one raw row into a canonical `Example`.

    from tunesmith.data.formats import RowRules, detect_kind
    RowRules(Kind.completion, {"question": "prompt", "answer": "completion"}).example(row, "train.jsonl", 3)

Rows arrive here as plain dicts; files, formats and line numbers are loading.py's business. A row that cannot
become an example raises `RowProblem` (field, reason), which the loader turns into a `RowError` with the file and
line, so that a bad row is always reported and never dropped in silence.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import Kind

MAX_ROW_CHARS = 1_000_000  # a row this long is almost always a broken file (a missing newline), not an example
ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant"}  # ShareGPT speaker names
# Every name a `fields:` mapping may target.
CANONICAL = (
    "messages",
    "instruction",
    "input",
    "output",
    "prompt",
    "completion",
    "text",
    "label",
    "chosen",
    "rejected",
    "references",  # every gold answer of a completion/instruction row, for task scoring (the target stays first)
)
REFERENCE_KINDS = (Kind.completion, Kind.instruction)
KIND_FIELDS = {
    Kind.chat: ("messages",),
    Kind.instruction: ("instruction", "output"),
    Kind.completion: ("prompt", "completion"),
    Kind.text: ("text",),
    Kind.classification: ("text", "label"),
    Kind.preference: ("chosen", "rejected"),
}
# `Example.extra` keeps the source columns a row did not use (for `--slice FIELD`), small values only: a column
# whose value is longer than this is free text, not a slice, and would only cost memory.
EXTRA_MAX_CHARS = 200
EXTRA_MAX_COLUMNS = 32
# Layouts of common public datasets, tried in order when a spec maps nothing: (columns needed, renames,
# columns that veto the rule). A rule never renames onto a column that already exists.
_ALIASES: list[tuple[set[str], dict[str, str], set[str]]] = [
    # OpenAI's preference fine-tuning rows: input.messages, then one assistant message on each side.
    (
        {"input", "preferred_output", "non_preferred_output"},
        {"input": "prompt", "preferred_output": "chosen", "non_preferred_output": "rejected"},
        set(),
    ),
    ({"conversations"}, {"conversations": "messages"}, set()),
    ({"question", "answer"}, {"question": "prompt", "answer": "completion"}, set()),
    ({"question", "response"}, {"question": "prompt", "response": "completion"}, set()),
    ({"instruction", "response"}, {"response": "output"}, set()),
    ({"prompt", "response"}, {"response": "completion"}, set()),
    ({"input", "output"}, {"input": "prompt", "output": "completion"}, {"instruction"}),
    ({"answer", "answers"}, {"answers": "references"}, set()),  # the SQuAD loader's rows: all gold answers
]
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class RowError:
    """One row that cannot be used. `line` is the 1-based physical line for jsonl/csv/tsv/txt (the first line of a
    multi-line CSV record), the 1-based row number for json/parquet, and 0 for a problem with the whole file."""

    path: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.reason}"


@dataclass
class Example:
    """One row in canonical form. Chat rows fill `messages`; completion and instruction rows fill `prompt` and
    `completion`; text rows fill `text`; classification rows fill `text` and `label` (the raw value as text, or its
    word from `labels:`).

    Preference rows fill `chosen` and `rejected`, and `prompt` when the pair has one. Human/Assistant transcript
    pairs (HH-RLHF) are split: `prompt` is the shared transcript before the last "Assistant:" turn, `messages` the
    same as user/assistant turns, and `chosen`/`rejected` the final replies. A pair whose transcripts differ earlier
    cannot be split: it keeps both whole transcripts with `prompt` and `messages` None (the audit reports it).

    `references` holds every gold answer of a completion or instruction row that has more than one, `completion`
    (the trained target) first; they come from a list-valued target column (SciTLDR's TLDRs) and from a column
    mapped to `references` (SQuAD's answers). None when the target is the only answer, and for rows whose target
    goes through `labels:` (a label is one answer).

    `extra` holds the source columns the row did not use (str/int/float/bool values as text), for the audit's
    slices; `row` is the source row itself, for grouped splits, eval slices and prompt variants."""

    kind: Kind
    source: str
    line: int
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    completion: str | None = None
    text: str | None = None
    label: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    references: list[str] | None = None
    extra: dict[str, str] | None = None
    row: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def column(self, name: str) -> str | None:
        """A source column's value as text (None when the row lacks it or it is not a scalar)."""
        if self.row is not None:
            value = self.row.get(name)
            return label_key(value) if isinstance(value, str | int | float | bool) else None
        return (self.extra or {}).get(name)


class RowProblem(Exception):
    """Raised while converting one row; the loader adds file and line and records it as a RowError."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def alias_fields(columns: Iterable[str]) -> dict[str, str]:
    """Source -> canonical renames for well-known layouts (question/answer, ShareGPT conversations, ...), so that
    common public datasets load with no `fields:` mapping at all."""
    cols = set(columns)
    out: dict[str, str] = {}
    for needs, renames, vetoes in _ALIASES:
        taken = cols | set(out.values())
        if needs <= cols and not (set(renames.values()) | vetoes) & taken and not set(renames) & set(out):
            out.update(renames)
    return out


def detect_kind(fields: Iterable[str]) -> Kind | None:
    """The kind whose required fields are present, from canonical (already mapped) names; None when no supported
    kind fits (see `undetected_reason` for what to tell the user)."""
    names = set(fields)
    if "messages" in names:
        return Kind.chat
    if {"chosen", "rejected"} <= names:
        return Kind.preference
    if {"instruction", "output"} <= names:
        return Kind.instruction
    if {"prompt", "completion"} <= names:
        return Kind.completion
    if {"text", "label"} <= names and not names & {"completion", "output"}:
        return Kind.classification
    if "text" in names and not names & {"label", "completion", "output", "chosen", "rejected"}:
        return Kind.text
    return None


def undetected_reason(columns: list[str], fields: dict[str, str]) -> str:
    """Why no kind was detected, and the smallest config change that fixes it."""
    names = {fields.get(c, c) for c in columns}
    found = ", ".join(columns) or "(none)"
    if len(names & {"chosen", "rejected"}) == 1:
        have, lack = ("chosen", "rejected") if "chosen" in names else ("rejected", "chosen")
        return f"preference rows need both chosen and rejected, and only {have} was found; map a column to {lack}"
    if "label" in names and "text" not in names:
        return "classification rows need text and label; map the text column, e.g. fields: {sentence: text}"
    first, second = ([c for c in columns if c.strip()] + ["<column>", "<column>"])[:2]
    return (
        f"cannot tell the record kind from the columns found ({found}); name them with a mapping such as "
        f"fields: {{{first}: prompt, {second}: completion}}, or set kind and fields"
    )


def label_key(value: Any) -> str:
    """The `labels:` key for a raw target: 0, 0.0 and "0" all look up "0", booleans look up "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def template_columns(template: str) -> list[str]:
    """Column names used by a template; ValueError when it is not a format string over named columns."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if any(not name or name.isdigit() for name in names):
        raise ValueError("every placeholder must name a column, like {sentence}")
    return list(dict.fromkeys(names))


def row_chars(value: Any) -> int:
    """Characters of text in a row, nested lists and objects included."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(row_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(row_chars(v) for v in value)
    return 0


def is_transcript(text: str) -> bool:
    """Whether a string is a Human:/Assistant: transcript (it starts with one of the two speakers)."""
    head = text.lstrip()
    return head.startswith("Human:") or head.startswith("Assistant:")


def transcript_turns(text: str) -> list[dict[str, str]]:
    """The turns of a "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript as user/assistant messages, in order.

    Consecutive turns of one speaker are joined into one message: in these transcripts they are one reply broken
    in two, and several chat templates refuse roles that do not alternate. Raises ValueError with the reason."""
    body = "\n\n" + text.lstrip()
    parts = _TURN.split(body)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError(
            "a string must be a transcript of 'Human:' and 'Assistant:' turns, and this one starts with neither"
        )
    messages: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = "\n\n".join(c for c in (messages[-1]["content"], content) if c)
        else:
            messages.append({"role": role, "content": content})
    return messages


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(shared prompt, chosen reply, rejected reply) of two transcripts that differ only in their last Assistant
    turn; None when they differ earlier or do not end with an Assistant turn. The prompt is everything before the
    last "\\n\\nAssistant:" (the HH-RLHF convention); replies are stripped of surrounding whitespace."""
    c, r = "\n\n" + chosen.lstrip(), "\n\n" + rejected.lstrip()
    ic, ir = c.rfind(_ASSISTANT), r.rfind(_ASSISTANT)
    if ic < 0 or ir < 0 or c[:ic] != r[:ir]:
        return None
    reply_c, reply_r = c[ic + len(_ASSISTANT) :], r[ir + len(_ASSISTANT) :]
    if "\n\nHuman:" in reply_c or "\n\nHuman:" in reply_r:
        return None
    return c[:ic].strip(), reply_c.strip(), reply_r.strip()


def parse_transcript(text: str) -> list[dict[str, str]]:
    """A transcript as messages (see `transcript_turns`) that ends with a non-empty Assistant turn to train on."""
    messages = transcript_turns(text)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the transcript does not end with an 'Assistant:' turn, so there is nothing to train on")
    if not messages[-1]["content"]:
        raise ValueError("the transcript's last 'Assistant:' turn is empty")
    return messages


def _finite(value: Any, name: str) -> None:
    """Refuse NaN and infinity as a label: they would become the labels "nan" and "inf" (JSON NaN, a Parquet gap)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RowProblem(name, f"{value} is not a label (a NaN or infinite number, often a missing value); fill it in")


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass
class RowRules:
    """How the rows of one dataset become examples: the resolved kind, the source -> canonical mapping, and the
    spec's template, labels and system message."""

    kind: Kind
    fields: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    system: str | None = None

    def __post_init__(self) -> None:
        self._source = {canon: src for src, canon in self.fields.items()}
        # Columns the row uses; every other scalar column is kept in Example.extra.
        self._used = set(self.fields) | set(CANONICAL)
        if self.template is not None:
            self._used |= set(template_columns(self.template))

    def name(self, canon: str) -> str:
        """The name the user knows a canonical field by: its source column when mapped."""
        return self._source.get(canon, canon)

    def example(self, row: dict[str, Any], source: str, line: int) -> Example:
        """The row as an Example; raises RowProblem naming the field and the reason when it cannot be one."""
        size = row_chars(row)
        if size > MAX_ROW_CHARS:
            raise RowProblem("row", f"row has {size:,} characters, over the {MAX_ROW_CHARS:,} limit")
        if "references" in self._source and self.kind not in REFERENCE_KINDS:
            raise RowProblem(
                self.name("references"), f"references apply to completion and instruction rows, not {self.kind}"
            )
        rendered = self._render(row) if self.template is not None else None
        mapped = {k: v for k, v in row.items() if k not in self.fields}
        mapped.update((self.fields[k], v) for k, v in row.items() if k in self.fields)
        ex = Example(self.kind, source, line, extra=self._extra(row), row=row)
        if self.kind is Kind.chat:
            ex.messages = self._messages(mapped)
        elif self.kind is Kind.text:
            ex.text = rendered if rendered is not None else self._text(mapped, "text")
        elif self.kind is Kind.classification:
            ex.text = rendered if rendered is not None else self._text(mapped, "text")
            ex.label = self._label(mapped)
        elif self.kind is Kind.preference:
            self._pair(mapped, ex)
        elif self.kind is Kind.completion:
            ex.prompt = rendered if rendered is not None else self._text(mapped, "prompt")
            ex.completion = self._target(mapped, "completion", "output")
            ex.references = self._references(mapped, "completion", "output", ex.completion)
        else:
            instruction = rendered if rendered is not None else self._text(mapped, "instruction")
            extra = self._optional_text(mapped, "input")
            ex.prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
            ex.completion = self._target(mapped, "output", "completion")
            ex.references = self._references(mapped, "output", "completion", ex.completion)
        return ex

    def _extra(self, row: dict[str, Any]) -> dict[str, str] | None:
        extra: dict[str, str] = {}
        for key, value in row.items():
            if key in self._used or value is None or not isinstance(value, str | int | float | bool):
                continue
            text = label_key(value)
            if len(text) <= EXTRA_MAX_CHARS:
                extra[key] = text
                if len(extra) >= EXTRA_MAX_COLUMNS:
                    break
        return extra or None

    # --- prompt kinds ---------------------------------------------------------------------------------------

    def _render(self, row: dict[str, Any]) -> str:
        assert self.template is not None
        for col in template_columns(self.template):
            if col not in row:
                raise RowProblem(col, f"missing; the template uses {{{col}}}")
            if row[col] is None:
                raise RowProblem(col, f"null; the template uses {{{col}}}")
        # A list of strings (an abstract's sentences, a paper's sections) fills its placeholder one item per line.
        values = {k: "\n".join(v) if is_str_list(v) else v for k, v in row.items()}
        try:
            return self.template.format_map(values)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:  # e.g. {x:d} over a string
            raise RowProblem("template", f"cannot fill the template from this row: {err}") from None

    def _text(self, mapped: dict[str, Any], canon: str) -> str:
        if canon not in mapped:
            mapped_note = f" (mapped to {canon})" if canon in self._source else ""
            raise RowProblem(self.name(canon), f"missing field{mapped_note}; {self.kind} rows need {self._needs()}")
        value = mapped[canon]
        if not isinstance(value, str):
            raise RowProblem(self.name(canon), f"expected string, got {_type_name(value)}")
        if not value.strip():
            raise RowProblem(self.name(canon), "empty or whitespace only")
        return value

    def _optional_text(self, mapped: dict[str, Any], canon: str) -> str:
        value = mapped.get(canon)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise RowProblem(self.name(canon), f"expected string, got {_type_name(value)}")
        return value

    def _target(self, mapped: dict[str, Any], canon: str, fallback: str) -> str:
        if canon not in mapped and fallback in mapped:
            canon = fallback
        if is_str_list(mapped.get(canon)) and mapped[canon]:
            # Several references (SciTLDR's TLDRs, SQuAD's answers): the first is the target that is trained.
            mapped = {**mapped, canon: mapped[canon][0]}
        if not self.labels or canon not in mapped or mapped[canon] is None:
            return self._text(mapped, canon)
        _finite(mapped[canon], self.name(canon))
        key = label_key(mapped[canon])
        if key not in self.labels:
            raise RowProblem(self.name(canon), f"label {key} not in labels {self.labels}")
        return self.labels[key]

    def _references(self, mapped: dict[str, Any], canon: str, fallback: str, target: str) -> list[str] | None:
        """Every gold answer, the trained `target` first, each once: a list-valued target's items, then those of the
        column mapped to references; None when there is only the target (see `Example.references`)."""
        if self.labels:
            return None
        if canon not in mapped and fallback in mapped:
            canon = fallback
        found = [target, *(mapped[canon] if is_str_list(mapped.get(canon)) else [])]
        value = mapped.get("references")
        if isinstance(value, dict) and "text" in value:
            value = value["text"]  # Hugging Face's SQuAD layout: {text: [...], answer_start: [...]}
        if isinstance(value, str):
            value = [value]
        if value is not None and not is_str_list(value):
            raise RowProblem(
                self.name("references"), f"expected a string or a list of strings, got {_type_name(value)}"
            )
        found += value or []
        unique = list(dict.fromkeys(r for r in found if r.strip()))
        return unique if len(unique) > 1 else None

    def _label(self, mapped: dict[str, Any]) -> str:
        name = self.name("label")
        if "label" not in mapped:
            raise RowProblem(name, f"missing field; classification rows need {self._needs()}")
        value = mapped["label"]
        if not isinstance(value, str | int | float | bool):
            raise RowProblem(name, f"expected a label (string or number), got {_type_name(value)}")
        _finite(value, name)
        key = label_key(value)
        if not key.strip():
            raise RowProblem(name, "empty or whitespace only")
        if not self.labels:
            return key
        if key not in self.labels:
            raise RowProblem(name, f"label {key} not in labels {self.labels}")
        return self.labels[key]

    def _needs(self) -> str:
        needs = list(KIND_FIELDS[self.kind])
        if self.template is not None:
            needs = [n for n in needs if n not in ("prompt", "instruction", "text")]
        return " and ".join(self.name(n) for n in needs) if needs else "the template's columns"

    # --- preference -----------------------------------------------------------------------------------------

    def _pair(self, mapped: dict[str, Any], ex: Example) -> None:
        """Fill prompt/chosen/rejected; empty sides are kept (the audit counts them), missing or non-text ones not."""
        sides = []
        for canon in ("chosen", "rejected"):
            if canon not in mapped:
                raise RowProblem(self.name(canon), f"missing field; preference rows need {self._needs()}")
            if isinstance(mapped[canon], list):  # OpenAI's format: a list holding one assistant message
                mapped[canon] = self._one_reply(canon, mapped[canon])
            if not isinstance(mapped[canon], str):
                raise RowProblem(self.name(canon), f"expected string, got {_type_name(mapped[canon])}")
            sides.append(mapped[canon])
        ex.chosen, ex.rejected = sides
        if isinstance(mapped.get("prompt"), dict):  # OpenAI's format: input: {messages: [...]}
            self._input_conversation(mapped["prompt"], ex)
            return
        prompt = self._optional_text(mapped, "prompt")
        if prompt.strip():
            ex.prompt = prompt
            return
        if not (is_transcript(ex.chosen) and is_transcript(ex.rejected)):
            return  # a pair with no prompt of its own: reward-model data, kept as it is
        split = split_pair(ex.chosen, ex.rejected)
        if split is None:
            return  # the transcripts differ before their last reply: kept whole, prompt None
        ex.prompt, ex.chosen, ex.rejected = split
        try:
            ex.messages = transcript_turns(ex.prompt)
        except ValueError as err:
            raise RowProblem(self.name("chosen"), str(err)) from None
        if self.system:
            ex.messages.insert(0, {"role": "system", "content": self.system})

    def _one_reply(self, canon: str, value: list) -> Any:
        """The text of a side given as [{"role": "assistant", "content": TEXT}]."""
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise RowProblem(self.name(canon), "expected a string, or a list of exactly one assistant message")
        return value[0].get("content")

    def _input_conversation(self, value: dict, ex: Example) -> None:
        """input.messages as the conversation both answers reply to; it ends with the user's turn."""
        src = self.name("prompt")
        if not isinstance(value.get("messages"), list) or not value["messages"]:
            raise RowProblem(src, "expected an object with a non-empty messages list")
        messages = [self._message(item, f"{src}.messages[{i}]") for i, item in enumerate(value["messages"])]
        if messages[-1]["role"] != "user":
            raise RowProblem(
                src,
                f"the conversation's last message is the {messages[-1]['role']}'s; both answers reply to a user",
            )
        if self.system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system})
        ex.messages, ex.prompt = messages, messages[-1]["content"]

    # --- chat -----------------------------------------------------------------------------------------------

    def _messages(self, mapped: dict[str, Any]) -> list[dict[str, str]]:
        src = self.name("messages")
        if "messages" not in mapped:
            raise RowProblem(src, "missing field; chat rows need a list of messages")
        value = mapped["messages"]
        if isinstance(value, str):
            try:
                messages = parse_transcript(value)
            except ValueError as err:
                raise RowProblem(src, str(err)) from None
            self._check_turns(messages, src, lambda i: f"{src} (turn {i + 1})")
        elif isinstance(value, list):
            if not value:
                raise RowProblem(src, "empty list; a chat row needs at least one assistant message")
            messages = [self._message(item, f"{src}[{i}]") for i, item in enumerate(value)]
            self._check_turns(messages, src, lambda i: f"{src}[{i}]")
        else:
            raise RowProblem(
                src, f"expected a list of messages or a Human:/Assistant: transcript, got {_type_name(value)}"
            )
        if self.system and messages[0]["role"] != "system":  # a row's own system message wins over the default
            messages.insert(0, {"role": "system", "content": self.system})
        return messages

    @staticmethod
    def _message(item: Any, where: str) -> dict[str, str]:
        if not isinstance(item, dict):
            raise RowProblem(where, f"expected an object with role and content, got {_type_name(item)}")
        role_key = "role" if "role" in item else "from" if "from" in item else None
        content_key = "content" if "content" in item else "value" if "value" in item else None
        if role_key is None or content_key is None:
            raise RowProblem(where, f"expected keys role and content (or from and value), got {', '.join(item)}")
        role, content = item[role_key], item[content_key]
        if not isinstance(role, str) or ROLE_ALIASES.get(role, role) not in ROLES:
            shown = repr(role) if isinstance(role, str) else _type_name(role)
            raise RowProblem(
                f"{where}.{role_key}", f"{shown} is not one of system, user, assistant (or human, gpt, bot)"
            )
        if not isinstance(content, str):
            raise RowProblem(f"{where}.{content_key}", f"expected string, got {_type_name(content)}")
        return {"role": ROLE_ALIASES.get(role, role), "content": content}

    @staticmethod
    def _check_turns(messages: list[dict[str, str]], src: str, where: Callable[[int], str]) -> None:
        first = next((i for i, m in enumerate(messages) if m["role"] != "system"), None)
        if first is not None and messages[first]["role"] == "assistant":
            # Nothing asked this answer: there is no inference prompt in front of it to check parity against, and
            # chat templates render such a turn differently (some refuse it), so training could not match serving.
            raise RowProblem(
                where(first), "the conversation starts with the assistant's message; start it with a user message"
            )
        for i, msg in enumerate(messages):
            if msg["role"] == "system" and i > 0:
                raise RowProblem(where(i), "system message after the first message; only the first may be system")
            if msg["role"] == "user" and not msg["content"].strip():
                raise RowProblem(where(i), "user message is empty")
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            raise RowProblem(src, "no assistant message with content, so there is nothing to train on")
