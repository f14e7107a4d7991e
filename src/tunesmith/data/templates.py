"""Turn canonical examples into token ids and loss labels, with the tokenizer's own chat template.

The masking rule: loss falls on assistant / completion tokens and on the end-of-turn token that closes them,
nothing else. Each assistant turn is cut out of the rendering by rendering the conversation up to that turn with
`add_generation_prompt=True` (exactly what inference will feed the model) and the conversation including it; the
difference is the answer. Every row is checked for train/serve parity: the token ids in front of each trained turn
must equal the ids of the inference prompt for that turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from jinja2 import TemplateError as JinjaError

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.errors import TunesmithError

IGNORE = -100  # label value that contributes no loss
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Segment:
    text: str
    trained: bool
    prompt: str | None = None  # trained chat segments: the whole inference prompt that precedes this answer


@dataclass
class Encoded:
    """One example as model input. For token-level objectives `labels` align with `input_ids` (IGNORE marks
    untrained positions); a classification row instead carries its class index in `target` and no labels."""

    input_ids: list[int]
    labels: list[int]
    source: str
    line: int
    truncated: bool = False
    target: int | None = None
    dataset: int = 0  # index of the dataset entry (data.train or data.eval) the row came from
    # Replay rows under data.replay.kl: at each of target_positions, in order, the base model's most likely next
    # tokens and their log-probabilities.
    teacher: tuple[list[list[int]], list[list[float]]] | None = None
    # Preference pairs (data/pairs.py): this row is the chosen side, `rejected` the other, with the same prompt; and
    # the reference model's summed log-probabilities of (chosen, rejected) answers, read once before training.
    rejected: Encoded | None = None
    reference: tuple[float, float] | None = None
    # KTO (data/pairs.py): whether the row's answer is desirable; `rejected` then holds the row's prompt with another
    # row's answer, the mismatched sequence KTO's KL estimate reads.
    desirable: bool | None = None

    @property
    def trained_tokens(self) -> int:
        return 1 if self.target is not None else sum(1 for x in self.labels if x != IGNORE)

    @property
    def sides(self) -> list[Encoded]:
        """The sequences the model computes for this row: itself, and a preference pair's rejected side."""
        return [self] if self.rejected is None else [self, self.rejected]

    @property
    def target_positions(self) -> list[int]:
        """Positions whose token the loss predicts: trained labels from position 1 on (position 0 is never a target:
        predictions read position p - 1)."""
        return [p for p in range(1, len(self.labels)) if self.labels[p] != IGNORE]


class RowEncoder(Protocol):
    """One source row as model input, or the reason it cannot be one (FILE:LINE: field: reason): the Renderer for
    token-level methods, data/classify.HeadEncoder for a classification head."""

    def encode(self, example: Example, system: str | None = None) -> Encoded | RowError: ...


class TemplateError(TunesmithError, ValueError):
    """The chat template cannot be used for training (its renderings are not prefixes of each other)."""


class Renderer:
    """Renders examples for one tokenizer. `prompt_format` is chat, plain, or auto (chat when a template exists)."""

    def __init__(self, tokenizer, prompt_format: str = "auto", max_length: int = 1024, system: str | None = None):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if prompt_format == "chat" and not has_template:
            raise TemplateError("data.prompt_format=chat but the tokenizer has no chat template")
        self.chat = prompt_format == "chat" or (prompt_format == "auto" and has_template)
        self.max_length = max_length
        self.system = system
        # Named special tokens plus every added token marked special: an end-of-turn marker need not be eos.
        added = getattr(tokenizer, "added_tokens_decoder", {})
        self.special_ids = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
        # The text of those tokens: inside a message the tokenizer reads it as the control token, not as text.
        specials = {t for t in tokenizer.all_special_tokens if t} | {t.content for t in added.values() if t.special}
        longest_first = sorted((t for t in specials if t), key=len, reverse=True)
        self.special_text = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None
        self.eos_id = tokenizer.eos_token_id
        self.adds_bos = _adds_bos(tokenizer)

    # --- text ---------------------------------------------------------------------------------------------

    def messages(self, example: Example, system: str | None = None) -> list[dict[str, str]]:
        """The example as a conversation (prompt kinds become one user turn and one assistant turn)."""
        system = system if system is not None else self.system
        if example.kind is Kind.chat:
            msgs = list(example.messages or [])
        else:
            msgs = [{"role": "user", "content": example.prompt or ""}]
            msgs.append({"role": "assistant", "content": example.completion or ""})
        if system and (not msgs or msgs[0]["role"] != "system"):
            msgs.insert(0, {"role": "system", "content": system})
        return msgs

    def first_turn(self, example: Example, system: str | None = None) -> tuple[list[dict[str, str]], str]:
        """(the conversation before the first assistant turn, that turn's content): the question a user of the model
        would ask and the answer the data gives, for side-by-side answers and task scoring."""
        msgs = self.messages(example, system)
        first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return msgs[:first], msgs[first]["content"]

    def render_prompt(self, messages: list[dict[str, str]]) -> str:
        """The inference prompt for the next assistant turn (opening with the renderer's system message when the
        conversation has none, as the training rows did)."""
        if self.system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.system}, *messages]
        if self.chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _plain_prompt(messages)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the inference prompt, exactly as training puts them in front of the answer."""
        ids = self._ids(self.render_prompt(messages))
        return [self.tokenizer.bos_token_id, *ids] if self._leading_bos(Kind.chat) else ids

    def stop_ids(self) -> list[int]:
        """Ids that end an answer: eos, and the end-of-turn token the chat template writes after an answer."""
        stops = {self.eos_id}
        if self.chat:
            probe = Example(
                Kind.chat,
                "",
                0,
                messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            )
            trained, _ = self._answer_ids(self.segments(probe)[-1].text)
            stops.add(trained[-1])
        return sorted(stops)

    def _leading_bos(self, kind: Kind) -> bool:
        # Chat templates write their own special tokens; plain prompts and raw text get bos if the tokenizer adds one.
        bos = self.tokenizer.bos_token_id
        return (not self.chat or kind is Kind.text) and bos is not None and self.adds_bos

    def segments(self, example: Example, system: str | None = None) -> list[Segment]:
        if example.kind is Kind.text:
            return [Segment(example.text or "", True)]
        msgs = self.messages(example, system)
        if not self.chat:
            # Plain text has no turn markers, so only the last answer trains; turns after it are dropped.
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None:
                raise TemplateError("the conversation has no assistant turn to train on")
            return [Segment(_plain_prompt(msgs[:last]), False), Segment(msgs[last]["content"], True)]
        out: list[Segment] = []
        done = ""
        for i, msg in enumerate(msgs):
            if msg["role"] != "assistant":
                continue
            prompt = self.render_prompt(msgs[:i])
            full = self.tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise TemplateError(
                    f"the chat template's rendering of turn {i + 1} does not extend the inference prompt "
                    "(train/serve mismatch); this template cannot be trained turn by turn"
                )
            out.append(Segment(prompt[len(done) :], False))
            out.append(Segment(full[len(prompt) :], True, prompt))
            done = full
        return out

    # --- tokens -------------------------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _answer_ids(self, text: str) -> tuple[list[int], list[int]]:
        """Split an answer into (trained, untrained tail). Training goes through the first special token (the
        end-of-turn marker the template writes, e.g. <|im_end|>); text after it (a newline) is not trained.
        With no such token the answer gets eos appended, so the model learns to stop."""
        ids = self._ids(text)
        for j, tok in enumerate(ids):
            if tok in self.special_ids:
                return ids[: j + 1], ids[j + 1 :]
        return [*ids, self.eos_id], []

    def encode(self, example: Example, system: str | None = None) -> Encoded | RowError:
        """Token ids and labels for one example, or a RowError saying why the row cannot train."""
        if example.kind in (Kind.classification, Kind.preference):
            # A whole-dataset limit, not a row's fault: refuse once, clearly, instead of one RowError per row.
            instead = (
                "train the label word generatively: template: 'Text: {text}\\nLabel:' with fields: {label: completion}"
                if example.kind is Kind.classification
                else "train them with method: {type: dpo} (or simpo, orpo), or the chosen side as chat: "
                "fields: {chosen: messages}"
            )
            raise TemplateError(
                f"{example.kind} rows cannot be trained by the causal-LM objective yet ({example.source}); {instead}"
            )
        problem = self._content_problem(example, system)
        if problem is not None:
            return RowError(example.source, example.line, *problem)
        try:
            segments = self.segments(example, system)
        except TemplateError as err:
            return RowError(example.source, example.line, _main_field(example), str(err))
        except (JinjaError, ValueError) as err:  # the template's own raise_exception, or an empty conversation
            reason = f"the chat template cannot render this conversation: {err}"
            return RowError(example.source, example.line, _main_field(example), reason)
        ids: list[int] = []
        labels: list[int] = []
        if self._leading_bos(example.kind):
            ids.append(self.tokenizer.bos_token_id)
            labels.append(IGNORE)
        for seg in segments:
            if not seg.trained:
                part = self._ids(seg.text)
                ids += part
                labels += [IGNORE] * len(part)
                continue
            trained, tail = self._text_ids(seg.text) if example.kind is Kind.text else self._answer_ids(seg.text)
            if seg.prompt is not None and ids != self._ids(seg.prompt):
                return RowError(
                    example.source,
                    example.line,
                    _main_field(example),
                    "train/serve mismatch: the tokens before this answer differ from the inference prompt's tokens",
                )
            ids += trained + tail
            labels += trained + [IGNORE] * len(tail)
        truncated = len(ids) > self.max_length
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        # The first position has no prediction behind it, so a label there never trains anything.
        if all(x == IGNORE for x in labels[1:]):
            reason = (
                f"no trained token left after truncation to data.max_length={self.max_length}"
                if truncated
                else "the row has no trained token"
            )
            return RowError(example.source, example.line, _main_field(example), reason)
        return Encoded(ids, labels, example.source, example.line, truncated)

    def _content_problem(self, example: Example, system: str | None) -> tuple[str, str] | None:
        """(field, reason) when a message's text cannot be rendered and tokenized as written: it is not valid Unicode,
        or it holds a special token's text. The tokenizer would read that text as the control token itself, and an
        answer holding the end-of-turn marker's text would end its trained span there, before the rest of the answer
        and the real end-of-turn token. Text rows are exempt from the second: all their tokens train, none is cut."""
        texts: list[tuple[str, str, str]]  # (field, what, text)
        if example.kind is Kind.text:
            texts = [("text", "the text", example.text or "")]
        elif example.kind is Kind.chat:
            msgs = self.messages(example, system)
            texts = [("messages", f"message {i + 1} ({m['role']})", m["content"]) for i, m in enumerate(msgs)]
        else:
            system = system if system is not None else self.system
            texts = [
                ("prompt", "the prompt", example.prompt or ""),
                ("completion", "the answer", example.completion or ""),
            ]
            texts += [("system", "the system message", system)] if system else []
        for field, what, text in texts:
            if _SURROGATE.search(text):
                return field, f"{what} is not valid Unicode text (it holds a lone surrogate); fix or remove it"
            found = self.special_text.search(text) if self.special_text and example.kind is not Kind.text else None
            if found is not None:
                return field, (
                    f"{what} holds {found.group()!r}, the text of a special token: the tokenizer would read it as that "
                    "control token, not as text (in an answer, training would stop there); remove or rewrite it"
                )
        return None

    def _text_ids(self, text: str) -> tuple[list[int], list[int]]:
        return [*self._ids(text), self.eos_id], []


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """Plain concatenation for tokenizers without a chat template: turns joined by newlines, ending in one."""
    text = "\n".join(m["content"] for m in messages)
    return text if not text or text[-1].isspace() else text + "\n"


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def _main_field(example: Example) -> str:
    return {Kind.chat: "messages", Kind.text: "text"}.get(example.kind, "completion")
