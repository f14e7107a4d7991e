"""Shared-prefix reading (eval/prefix.py) gives what reading every row whole gives: label log-probabilities and greedy
answers, on a Llama and on a Gemma 3 whose sliding window is shorter than the rows (and whose logits are
soft-capped, so it takes the plain forward)."""

from __future__ import annotations

import copy

import pytest
import torch

from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.likelihood import label_rows, sequence_logprobs
from tunesmith.eval.prefix import shared_generate, shared_logprobs, shared_tokens, worth_sharing
from tunesmith.eval.runner import generate_answers, generate_sorted

CPU = torch.device("cpu")
LABELS = ["even", "odd", "neither"]
SHOTS = [
    {"role": "system", "content": "You check numbers."},
    {"role": "user", "content": "is 10 even or odd? think carefully"},
    {"role": "assistant", "content": "even"},
    {"role": "user", "content": "is 7 even or odd? think carefully"},
    {"role": "assistant", "content": "odd"},
]


def prompts() -> list[list[dict]]:
    """Few-shot prompts: the same shots before each row, and one with a shot fewer (another shared prefix)."""
    rows = [[*SHOTS, {"role": "user", "content": f"is {n} even or odd?"}] for n in (4, 12345, 9, 200)]
    return [*rows, [SHOTS[0], *SHOTS[3:], {"role": "user", "content": "is 3 even or odd?"}]]


@pytest.fixture(scope="module")
def models(tiny_tokenizer):
    """Two tiny random models whose greedy answers are not one repeated token (the Llama's wider initialisation)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = {"vocab_size": len(tiny_tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    llama = LlamaForCausalLM(
        LlamaConfig(**shape, num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)
    ).eval()
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        **shape,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=8,  # the rows are far longer: the window must be applied over the shared cache too
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    gemma = Gemma3ForCausalLM(config).eval()
    return {"llama": llama, "gemma3": gemma}


def whole(model, row) -> tuple[float, int]:
    """The row's trained tokens' log-probability from one forward over the whole row, no cache, no padding."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([row.input_ids])).logits[0].float(), -1)
    trained = [t for t, label in enumerate(row.labels) if label != -100]
    return sum(float(logp[t - 1, row.labels[t]]) for t in trained), len(trained)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_shared_prefix_log_probabilities_equal_reading_each_row_whole(models, tiny_tokenizer, name):
    model, renderer = models[name], Renderer(tiny_tokenizer)
    rows = [row for prompt in prompts() for row in label_rows(renderer, prompt, LABELS)]
    assert worth_sharing(model, [r.input_ids for r in rows])
    shared = shared_logprobs(model, rows, CPU)
    for row, (total, count) in zip(rows, shared, strict=True):
        expected, expected_count = whole(model, row)
        assert count == expected_count
        assert total == pytest.approx(expected, abs=1e-4)
    # sequence_logprobs takes the shared path here, and the padded batches agree with it.
    batched = sequence_logprobs(model, rows, tiny_tokenizer.pad_token_id, 4, CPU)
    assert [c for _, c in batched] == [c for _, c in shared]
    assert [t for t, _ in batched] == pytest.approx([t for t, _ in shared], abs=1e-4)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_shared_prefix_greedy_answers_equal_generating_each_prompt_alone(models, tiny_tokenizer, name):
    model, renderer = models[name], Renderer(tiny_tokenizer)
    ids = [renderer.prompt_ids(p) for p in prompts()]
    alone = [generate_answers(model, tiny_tokenizer, [p], 12, CPU)[0] for p in ids]
    assert shared_generate(model, tiny_tokenizer, ids, 12, CPU) == alone
    assert generate_sorted(model, tiny_tokenizer, ids, 12, 4, CPU) == alone  # it chooses the shared path here
    assert all(alone)


def test_sharing_is_chosen_only_where_it_reads_at_most_half_the_tokens(models, tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer)
    few_shot = [renderer.prompt_ids(p) for p in prompts()]
    # Each prompt's tokens once, plus what differs: far less than every prompt whole.
    assert shared_tokens(few_shot) < sum(map(len, few_shot)) / 2
    assert worth_sharing(models["llama"], few_shot)
    distinct = [[n, n + 1, n + 2] for n in range(3, 40, 3)]
    assert shared_tokens(distinct) == sum(map(len, distinct))
    assert not worth_sharing(models["llama"], distinct)
    assert not worth_sharing(models["llama"], [])
    hybrid = copy.deepcopy(models["gemma3"])  # a state that cannot be cut back: read whole
    hybrid.config.layer_types = ["linear_attention", "full_attention"]
    assert worth_sharing(models["gemma3"], few_shot) and not worth_sharing(hybrid, few_shot)


def test_rows_that_share_little_take_the_padded_batches_with_the_same_numbers(models):
    """Unrelated rows of different lengths: sequence_logprobs pads them into batches; reading them one at a time
    through the reader gives the same sums."""
    gen = torch.Generator().manual_seed(1)
    rows = []
    for n in (5, 9, 14, 7):
        ids = torch.randint(3, 400, (n,), generator=gen).tolist()
        rows.append(Encoded(ids, [-100] * (n - 3) + ids[-3:], "rows.jsonl", n))
    model = models["llama"]
    assert not worth_sharing(model, [r.input_ids for r in rows])
    batched = sequence_logprobs(model, rows, 0, 3, CPU)
    shared = shared_logprobs(model, rows, CPU)
    assert [c for _, c in batched] == [c for _, c in shared] == [3, 3, 3, 3]
    assert [t for t, _ in batched] == pytest.approx([t for t, _ in shared], abs=1e-4)
