"""Encode rows for a classification head: the input text as token ids, the target as the index of its label.

    from tunesmith.data.classify import HeadEncoder
    encoded = HeadEncoder(renderer, ["negative", "positive"]).encode(example)   # Encoded | RowError

Which rows: classification rows (`text`, `label`) and completion / instruction rows whose completion is the label
word (sst2 as `template` + `labels`). The input is the text (classification) or the prompt (the others); the target
is the label's position in `task.labels`. A label that is not in `task.labels` is a RowError with file and line.

The returned `Encoded` carries the class as a one-element list: `labels == [class_index]` (not one label per
token). `training.objectives.collate` turns such rows into a (B,) label tensor, and a batch then counts rows, not
tokens, as its trained units, so the loop's normalisation averages the loss over rows.

How the input becomes tokens (the same here, in `tunesmith predict`, and for a plain transformers user):
- chat (data.prompt_format chat, or auto with a chat template): the text as one user turn (after the dataset's
  system message, if any) rendered by the tokenizer's own template with `add_generation_prompt=True`, i.e.
  `tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)`. The head then
  reads the state at the point where the instruct model would start its answer, and the input is exactly the prompt
  the zero-shot generation baseline answers, so base and head see the same text.
- plain: `tokenizer(text)["input_ids"]` (with the tokenizer's own special tokens), what any transformers text
  classification code does, so `final/` needs no tunesmith to reproduce it. A system message, if given, is put
  before the text with a newline, as plain prompts are everywhere else.

Truncation keeps the start (`data.max_length` tokens). The head pools the last token that is not the pad id (what
transformers' *ForSequenceClassification does), so trailing pad-id tokens are dropped here: where pad == eos, an
input that ends in eos would otherwise be pooled at the wrong place in a padded batch. Dropping them changes nothing
for transformers' own forward, which skips them anyway and, the attention being causal, computes the pooled state
from the tokens before it alone.
"""

from __future__ import annotations

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError

HEAD_KINDS = (Kind.classification, Kind.completion, Kind.instruction)


class HeadDataError(TunesmithError, ValueError):
    """A dataset whose kind a classification head cannot train on (a whole-dataset problem, not a row's)."""


def head_text(example: Example) -> tuple[str, str, str]:
    """(input text, label word, label field) of a row a head can train on."""
    if example.kind is Kind.classification:
        return example.text or "", (example.label or "").strip(), "label"
    if example.kind in (Kind.completion, Kind.instruction):
        return example.prompt or "", (example.completion or "").strip(), "completion"
    raise HeadDataError(
        f"{example.source}: {example.kind} rows cannot train a classification head; use classification rows "
        "(fields: {your_text: text, your_label: label}) or completion rows whose completion is the label word"
    )


def head_input_ids(text: str, renderer: Renderer, system: str | None = None) -> list[int]:
    """Token ids of one input before truncation (see the module docstring for chat vs plain)."""
    system = system if system is not None else renderer.system
    if renderer.chat:
        messages = [{"role": "system", "content": system}] if system else []
        return renderer.prompt_ids([*messages, {"role": "user", "content": text}])
    return renderer.tokenizer(f"{system}\n{text}" if system else text)["input_ids"]


def fit_input(ids: list[int], max_length: int, pad_id: int | None) -> tuple[list[int], bool]:
    """Keep the first `max_length` ids, then drop trailing pad ids so the pooled token is the last one kept."""
    truncated = len(ids) > max_length
    ids = ids[:max_length]
    while ids and pad_id is not None and ids[-1] == pad_id:
        ids = ids[:-1]
    return ids, truncated


def encode_for_head(
    example: Example,
    renderer_or_tokenizer: Renderer | object,
    labels: list[str],
    max_length: int,
    system: str | None = None,
) -> Encoded | RowError:
    """One row as (input ids, [class index]), or a RowError saying why it cannot train the head."""
    renderer = (
        renderer_or_tokenizer
        if isinstance(renderer_or_tokenizer, Renderer)
        else Renderer(renderer_or_tokenizer, "auto", max_length)
    )
    text, label, label_field = head_text(example)
    if label not in labels:
        return RowError(
            example.source, example.line, label_field, f"label {label!r} is not one of task.labels {labels}"
        )
    ids, truncated = fit_input(head_input_ids(text, renderer, system), max_length, renderer.tokenizer.pad_token_id)
    if not ids:
        field = "text" if example.kind is Kind.classification else "prompt"
        return RowError(example.source, example.line, field, "the input has no token left (only padding tokens)")
    return Encoded(ids, [], example.source, example.line, truncated, target=labels.index(label))


class HeadEncoder:
    """`encode(example, system)` with the signature of `Renderer.encode`, so `prepare_data` encodes for a head."""

    def __init__(self, renderer: Renderer, labels: list[str]):
        self.renderer = renderer
        self.labels = list(labels)

    def encode(self, example: Example, system: str | None = None) -> Encoded | RowError:
        return encode_for_head(example, self.renderer, self.labels, self.renderer.max_length, system)
