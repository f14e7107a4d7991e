"""The server's batched decoding loop against transformers' generate(), seeds, stop strings and the batcher."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.templates import Renderer
from tunesmith.models.loading import load_tokenizer
from tunesmith.serve.batcher import Batcher, Generation
from tunesmith.serve.decode import Sampling, Sequence, _held_back, choose, decode

CPU = torch.device("cpu")
QUESTIONS = ["hi", "what is two plus three? please please please", "Reset your password", "thanks"]


@pytest.fixture(scope="module")
def lively(tiny_model_dir):
    """The tiny Llama with larger random weights, so that greedy answers are varied text rather than one token."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    tokenizer = load_tokenizer(tiny_model_dir)
    renderer = Renderer(tokenizer)
    prompts = [renderer.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS]
    return model, tokenizer, prompts


def test_greedy_batch_equals_generate_row_by_row(lively):
    model, tokenizer, prompts = lively
    sequences = [Sequence(p, Sampling(max_tokens=12 + i, temperature=0)) for i, p in enumerate(prompts)]
    decode(model, tokenizer, sequences, set(), tokenizer.pad_token_id, CPU)
    distinct = set()
    for prompt, seq in zip(prompts, sequences, strict=True):
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            max_new_tokens=seq.sampling.max_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert seq.tokens == out[0, len(prompt) :].tolist()
        assert seq.finish_reason == "length"
        assert seq.text == tokenizer.decode(seq.tokens, skip_special_tokens=True)
        distinct.add(tuple(seq.tokens))
    assert len(distinct) == len(prompts)  # the check compares real, different answers


def test_stop_ids_end_a_row_early_and_the_others_go_on(lively):
    model, tokenizer, prompts = lively
    free = [Sequence(p, Sampling(max_tokens=10, temperature=0)) for p in prompts]
    decode(model, tokenizer, free, set(), tokenizer.pad_token_id, CPU)
    stop = free[0].tokens[3]
    stopped = [Sequence(p, Sampling(max_tokens=10, temperature=0)) for p in prompts]
    decode(model, tokenizer, stopped, {stop}, tokenizer.pad_token_id, CPU)
    for a, b in zip(free, stopped, strict=True):
        cut = a.tokens.index(stop) if stop in a.tokens else len(a.tokens)
        assert b.tokens == a.tokens[:cut]
        assert b.finish_reason == ("stop" if stop in a.tokens else "length")


def test_seeded_sampling_repeats_and_does_not_depend_on_the_batch(lively):
    model, tokenizer, prompts = lively

    def sample(batch: list[list[int]], seed: int) -> list[int]:
        seqs = [Sequence(p, Sampling(max_tokens=10, temperature=1.0, top_p=0.9, seed=seed)) for p in batch]
        decode(model, tokenizer, seqs, set(), tokenizer.pad_token_id, CPU)
        return seqs[0].tokens

    alone = sample(prompts[:1], 7)
    assert sample(prompts[:1], 7) == alone
    assert sample(prompts, 7) == alone  # batched with other prompts, other lengths
    assert any(sample(prompts[:1], s) != alone for s in (8, 9, 10))


def test_stop_strings_cut_the_text_and_streaming_never_sends_what_is_taken_back(lively):
    model, tokenizer, prompts = lively
    free = Sequence(prompts[1], Sampling(max_tokens=16, temperature=0))
    decode(model, tokenizer, [free], set(), tokenizer.pad_token_id, CPU)
    text = free.text
    assert len(text) > 6
    stop = text[4:7]
    pieces: list[str] = []
    seq = Sequence(prompts[1], Sampling(max_tokens=16, temperature=0, stop=[stop]), emit=pieces.append)
    decode(model, tokenizer, [seq], set(), tokenizer.pad_token_id, CPU)
    assert seq.text == text[: text.index(stop)]
    assert "".join(pieces) == seq.text and seq.finish_reason == "stop"


def test_held_back_keeps_possible_stop_prefixes_and_unfinished_characters():
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz"]) == 0
    assert _held_back("abc\ufffd", []) == 1


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    generator = torch.Generator().manual_seed(0)
    picks = {choose(logits, Sampling(1, temperature=1.0, top_p=0.8), generator) for _ in range(200)}
    assert picks == {0, 1}
    assert choose(logits, Sampling(1, temperature=0), generator) == 0


def test_requests_that_arrive_together_are_decoded_as_one_batch(lively):
    model, tokenizer, prompts = lively

    class OneModel:  # the batcher's view of Engines, with the model already in memory
        device = CPU

        def activate(self, profile):
            from contextlib import nullcontext

            return nullcontext(model)

    class Profile:
        weights, adapter, stop_ids = "tiny", None, set()

    Profile.tokenizer = tokenizer
    batcher = Batcher(OneModel(), max_batch=8, window_s=0.05)  # type: ignore[arg-type]
    works = [Generation(Profile(), [Sequence(p, Sampling(max_tokens=5, temperature=0))]) for p in prompts]
    for work in works:
        batcher.submit(work)  # queued before the thread starts: they all arrive "together"
    batcher.start()
    for work in works:
        work.done.result(timeout=60)
    batcher.stop()
    assert batcher.batches == 1 and batcher.batched_requests == len(prompts)
    assert all(len(w.sequences[0].tokens) == 5 for w in works)


def test_a_client_that_leaves_stops_its_non_streamed_answers(monkeypatch):
    """A non-streamed request whose client disconnects marks its rows cancelled, which decode reads at the next
    token; here a stand-in for the model thread decodes until it sees that, so the request ends only because of it."""
    import asyncio
    import threading
    import time
    from concurrent.futures import Future
    from types import SimpleNamespace

    from tunesmith.serve import routes_inference
    from tunesmith.serve.decode import Sampling, Sequence

    class Thread:
        def submit(self, work) -> Future:
            done: Future = Future()

            def run() -> None:
                while not all(seq.cancelled() for seq in work.sequences):
                    time.sleep(0.01)
                done.set_result(None)

            threading.Thread(target=run, daemon=True).start()
            return done

    class Client:
        polls = 0

        async def is_disconnected(self) -> bool:
            self.polls += 1
            return self.polls >= 2  # there at the first check, gone at the second

    sequences = [Sequence([1, 2, 3], Sampling(max_tokens=10_000)) for _ in range(2)]
    state, client = SimpleNamespace(batcher=Thread()), Client()
    monkeypatch.setattr(routes_inference, "DISCONNECT_POLL_S", 0.05)
    asyncio.run(asyncio.wait_for(routes_inference._finish(state, object(), sequences, client), timeout=20))
    assert client.polls == 2 and all(seq.cancelled() for seq in sequences)
