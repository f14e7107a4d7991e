"""Encode preference pairs for the preference methods (DPO, SimPO, ORPO): the prompt with each answer, rendered as
the run renders a chat turn, with the loss on the final answer only.

    encoded = PairEncoder(renderer).encode(example)    # Encoded (the chosen side, .rejected the other) | RowError

Each side is the prompt (its own messages for a split HH-RLHF transcript, else one user turn) followed by one
assistant answer, encoded by the Renderer exactly as an SFT row is (same chat template, same end-of-turn token, the
same train/serve parity check), so a preference run trains the answers the served model will write. Only the final
answer's tokens are labelled: earlier assistant turns of a transcript are context. Both sides must start with the
same prompt tokens.

Row errors (FILE:LINE, field, reason), as for every other row kind: an empty side, a pair whose sides are the same
text, a pair with no prompt (transcripts that differ before their last reply cannot be split into a shared prompt and
two answers), and a side whose answer data.max_length cuts down to nothing.
"""

from __future__ import annotations

from dataclasses import replace

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.data.templates import IGNORE, Encoded, Renderer, TemplateError


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
