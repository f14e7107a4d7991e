"""Encode preference data for the preference methods: pairs (DPO, SimPO, ORPO, reward models) and single answers
marked desirable or not (KTO): the prompt with each answer, rendered as the run renders a chat turn, with the loss
on the final answer only.

    encoded = PairEncoder(renderer).encode(example)    # Encoded (the chosen side, .rejected the other) | RowError
    encoded = KTOEncoder(renderer, "label").encode(example)   # Encoded with .desirable | RowError
    with_kl_sides(rows, max_length)                    # KTO: each row's prompt with another row's answer

Each side is the prompt (its own messages for a split HH-RLHF transcript, else one user turn) followed by one
assistant answer, encoded by the Renderer exactly as an SFT row is (same chat template, same end-of-turn token, the
same train/serve parity check), so a preference run trains the answers the served model will write. Only the final
answer's tokens are labelled: earlier assistant turns of a transcript are context. Both sides must start with the
same prompt tokens.

Row errors (FILE:LINE, field, reason), as for every other row kind: an empty side, a pair whose sides are the same
text, a pair with no prompt (transcripts that differ before their last reply cannot be split into a shared prompt and
two answers), and a side whose answer data.max_length cuts down to nothing; for KTO a missing or unreadable label
and a conversation that does not end with the assistant's answer.
"""

from __future__ import annotations

from dataclasses import replace

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError, label_key
from tunesmith.data.templates import IGNORE, Encoded, Renderer, TemplateError

DESIRABLE = {"true": True, "1": True, "yes": True, "good": True, "desirable": True,
             "false": False, "0": False, "no": False, "bad": False, "undesirable": False}  # fmt: skip


class PairEncoder:
    """`encode(example, system)` with the signature of `Renderer.encode`, so `prepare_data` encodes pairs."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer

    def encode(self, example: Example, system: str | None = None) -> Encoded | RowError:
        if example.kind is not Kind.preference:
            # A whole-dataset limit, refused once (as the causal-LM encoder refuses preference rows).
            raise TemplateError(
                f"{example.kind} rows cannot train a preference method ({example.source}); give rows with prompt, "
                "chosen and rejected (or HH-RLHF chosen/rejected transcripts), or use method.type: sft"
            )
        where = (example.source, example.line)
        chosen, rejected = example.chosen or "", example.rejected or ""
        for field, text in (("chosen", chosen), ("rejected", rejected)):
            if not text.strip():
                return RowError(*where, field, "empty answer: a pair needs two answers to compare")
        if chosen.strip() == rejected.strip():
            return RowError(*where, "rejected", "the same text as chosen: the pair prefers nothing")
        if example.prompt is None:
            return RowError(
                *where,
                "chosen",
                "no shared prompt: chosen and rejected differ before their last reply (or the row has no prompt), "
                "so there is no single question both answer",
            )
        context = example.messages or [{"role": "user", "content": example.prompt}]
        sides = []
        for field, answer in (("chosen", chosen), ("rejected", rejected)):
            side = self._side(example, context, answer, system)
            if isinstance(side, str):
                return RowError(*where, field, side)
            sides.append(side)
        (first, start), (second, _) = sides
        if first.input_ids[:start] != second.input_ids[:start]:
            return RowError(*where, "prompt", "chosen and rejected do not start with the same prompt tokens")
        return replace(first, rejected=second, truncated=first.truncated or second.truncated)

    def _side(
        self, example: Example, context: list[dict], answer: str, system: str | None
    ) -> tuple[Encoded, int] | str:
        """One side as an Encoded row trained on the final answer only with the length of its prompt, or the reason
        it cannot be one."""
        renderer = self.renderer
        messages = [*context, {"role": "assistant", "content": answer}]
        encoded = renderer.encode(Example(Kind.chat, example.source, example.line, messages=messages), system)
        if isinstance(encoded, RowError):
            return encoded.reason
        prompt = renderer.messages(Example(Kind.chat, "", 0, messages=messages), system)[:-1]
        start = len(renderer.prompt_ids(prompt))
        labels = [IGNORE] * min(start, len(encoded.labels)) + encoded.labels[start:]
        if all(x == IGNORE for x in labels[1:]):
            return f"no answer token left after truncation to data.max_length={renderer.max_length}"
        return replace(encoded, labels=labels), start


class KTOEncoder(PairEncoder):
    """Single answers (prompt/completion, instruction or chat rows whose last turn is the answer) with a label column
    marking each desirable or undesirable, for KTO."""

    def __init__(self, renderer: Renderer, label_field: str = "label"):
        super().__init__(renderer)
        self.label_field = label_field

    def encode(self, example: Example, system: str | None = None) -> Encoded | RowError:
        if example.kind not in (Kind.chat, Kind.completion, Kind.instruction):
            raise TemplateError(
                f"{example.kind} rows cannot train method kto ({example.source}); give single answers (prompt and "
                f"completion, or chat messages ending with the answer) with a {self.label_field} column, or train "
                "preference pairs with method.type: dpo"
            )
        where = (example.source, example.line)
        raw = (example.row or {}).get(self.label_field)
        if raw is None:
            return RowError(*where, self.label_field, "missing: kto needs each answer marked desirable or not")
        desirable = DESIRABLE.get(label_key(raw).strip().lower()) if isinstance(raw, str | int | float | bool) else None
        if desirable is None:
            return RowError(
                *where,
                self.label_field,
                f"{raw!r} is not a desirable/undesirable mark (true/false, 1/0, yes/no, good/bad)",
            )
        if example.kind is Kind.chat:
            messages = example.messages or []
            if not messages or messages[-1]["role"] != "assistant":
                return RowError(*where, "messages", "the conversation must end with the assistant's answer")
            context, answer = messages[:-1], messages[-1]["content"]
        else:
            context, answer = [{"role": "user", "content": example.prompt or ""}], example.completion or ""
        if not answer.strip():
            return RowError(*where, "completion" if example.kind is not Kind.chat else "messages", "empty answer")
        side = self._side(example, context, answer, system)
        if isinstance(side, str):
            return RowError(*where, "completion" if example.kind is not Kind.chat else "messages", side)
        return replace(side[0], desirable=desirable)


def answer_start(row: Encoded) -> int:
    """The position of a row's first answer token (its first trained label)."""
    return next((i for i, x in enumerate(row.labels) if x != IGNORE), len(row.labels))


def with_kl_sides(rows: list[Encoded], max_length: int) -> None:
    """Give every KTO row its mismatched sequence in `.rejected`: its own prompt followed by the next row's answer
    (the last row takes the first's), cut to max_length. KTO's KL term reads these under the policy and the
    reference; the pairing is fixed by the row order, so the reference log-probabilities can be read once."""
    for i, row in enumerate(rows):
        other = rows[(i + 1) % len(rows)]
        start, theirs = answer_start(row), answer_start(other)
        ids = (row.input_ids[:start] + other.input_ids[theirs:])[:max_length]
        labels = ([IGNORE] * start + other.labels[theirs:])[:max_length]
        row.rejected = Encoded(ids, labels, row.source, row.line)
