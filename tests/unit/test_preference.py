"""Preference methods (method.type: dpo, simpo, orpo) on the tiny on-disk Llama: each loss against a hand computation,
the chunked and packed paths against the plain one, row errors, the cached reference, training, resume and verify.

pytest tests/unit/test_preference.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from test_speed import assert_close_grads, lora_model
from test_training import assert_same_weights, final_trainable
from tiny_runs import tiny_config, write_kto_data, write_pair_data

from tunesmith.cli import main
from tunesmith.config import ConfigError, build_config
from tunesmith.data.pairs import PairEncoder
from tunesmith.data.templates import IGNORE, Renderer, TemplateError
from tunesmith.methods import build_method
from tunesmith.models.loading import load_tokenizer
from tunesmith.recipes.setup import load
from tunesmith.recipes.train import run_training
from tunesmith.training.checkpoint import list_checkpoints
from tunesmith.training.preference import PreferenceObjective, answer_logprobs, make_pair_batch, pair_losses
from tunesmith.training.prepare import DataRefused, prepare_data

quiet = {"log": lambda *_: None}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The reference cache of each test starts empty and stays out of the user's cache."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def pair_config(model_dir: Path, data: Path, out: Path, method: dict, **train) -> dict:
    cfg = tiny_config(model_dir, data, out, **train)
    cfg["method"] = method
    cfg["data"]["eval_fraction"] = 0.25
    return cfg


@pytest.fixture(scope="module")
def pairs(tiny_model_dir, tmp_path_factory):
    """The tiny model's config and 36 encoded training pairs."""
    tmp = tmp_path_factory.mktemp("pairs")
    data = write_pair_data(tmp / "pairs.jsonl")
    cfg = build_config(pair_config(tiny_model_dir, data, tmp / "run", {"type": "dpo"}))
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = prepare_data(cfg, PairEncoder(Renderer(tokenizer, "auto", 128))).train
    return cfg, rows, tokenizer.pad_token_id


# --- encoding ------------------------------------------------------------------------------------------------------


def test_both_sides_share_the_prompt_and_only_the_answer_carries_the_loss(pairs, tiny_tokenizer):
    _, rows, _ = pairs
    for row in rows:
        chosen, rejected = row, row.rejected
        start = next(i for i, x in enumerate(chosen.labels) if x != IGNORE)
        assert start == next(i for i, x in enumerate(rejected.labels) if x != IGNORE)
        assert chosen.input_ids[:start] == rejected.input_ids[:start]
        assert chosen.input_ids[start:] != rejected.input_ids[start:]
        # The labelled tokens are exactly the answer (and its end-of-turn token), never the prompt.
        answer = tiny_tokenizer.decode([x for x in chosen.labels if x != IGNORE], skip_special_tokens=True)
        assert answer.strip().startswith("the answer is")
        assert "what is" in tiny_tokenizer.decode(chosen.input_ids[:start])


def test_bad_pairs_are_row_errors_with_file_and_line(tiny_model_dir, tmp_path):
    good = [json.loads(line) for line in write_pair_data(tmp_path / "good.jsonl", n=8).read_text().splitlines()]
    human = "\n\nHuman: what is 2 plus 2?\n\nAssistant: "
    bad = [
        {"prompt": "what is 1 plus 1?", "chosen": "2", "rejected": "  "},  # an empty side
        {"prompt": "what is 1 plus 2?", "chosen": "3", "rejected": "3"},  # the same answer twice
        {"chosen": human.replace("2 plus 2", "two plus two") + "4", "rejected": human + "5"},  # no shared prompt
        {"prompt": "what is 3 plus 3? " + "really " * 200, "chosen": "6", "rejected": "7"},  # cut to nothing
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in good[:2] + bad + good[2:]), encoding="utf-8")
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"})
    with pytest.raises(DataRefused) as refused:
        run_training(build_config(cfg), **quiet)
    message = str(refused.value)
    for line, field, reason in (
        (3, "rejected", "empty answer"),
        (4, "rejected", "the same text as chosen"),
        (5, "chosen", "no shared prompt"),
        (6, "chosen", "no trained token left after truncation to data.max_length=128"),
    ):
        assert f"{data}:{line}: {field}: {reason}" in message, message
    assert not (tmp_path / "run").exists()
    # Under skip_invalid the four are skipped and counted, and the other eight pairs remain.
    cfg["data"]["skip_invalid"] = True
    prepared = prepare_data(build_config(cfg), PairEncoder(Renderer(load_tokenizer(tiny_model_dir), "auto", 128)))
    assert [(e.line, e.field) for e in prepared.errors] == [
        (3, "rejected"),
        (4, "rejected"),
        (5, "chosen"),
        (6, "chosen"),
    ]
    assert len(prepared.train) + len(prepared.eval) == 8


def test_rows_that_are_not_pairs_are_refused_once_and_pairs_under_sft_name_dpo(tiny_model_dir, tiny_tokenizer):
    from tunesmith.config import Kind
    from tunesmith.data.formats import Example

    renderer = Renderer(tiny_tokenizer, "auto", 128)
    chat = Example(Kind.chat, "chat.jsonl", 1, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(TemplateError, match=r"chat rows cannot train a preference method \(chat.jsonl\)"):
        PairEncoder(renderer).encode(chat)
    pair = Example(Kind.preference, "pairs.jsonl", 1, prompt="hi", chosen="a", rejected="b")
    with pytest.raises(TemplateError, match=r"method: \{type: dpo\}"):
        renderer.encode(pair)


def test_config_refuses_a_task_a_replay_and_smoothing_outside_sigmoid(tiny_model_dir, tmp_path):
    data = write_pair_data(tmp_path / "pairs.jsonl", n=8)
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"})
    for change, expected in (
        ({"task": {"type": "qa"}}, r"method.type: dpo is scored on held-out pairs"),
        ({"method": {"type": "dpo", "loss": "ipo", "label_smoothing": 0.1}}, r"label_smoothing applies to .*sigmoid"),
        ({"method": {"type": "simpo", "beta": 0}}, r"method.beta"),
        ({"method": {"type": "orpo", "gamma": 1.0}}, r"method.gamma"),
    ):
        with pytest.raises(ConfigError, match=expected):
            build_config({**cfg, **change})
    with pytest.raises(ConfigError, match=r"data.replay .*method: sft"):
        build_config({**cfg, "data": {**cfg["data"], "replay": {"fraction": 0.2}}})
    assert build_config(cfg).data.replay.fraction == 0.0


# --- losses --------------------------------------------------------------------------------------------------------


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def hand_loss(method: dict, c: float, r: float, nc: int, nr: int, c0: float, r0: float) -> tuple[float, float]:
    """(loss, margin) of one pair, written from the papers' formulas with Python floats."""
    kind, beta = method["type"], method.get("beta")
    e = method.get("label_smoothing", 0.0)
    if kind == "dpo":
        beta = beta or 0.1
        h = (c - c0) - (r - r0)
        if method.get("loss") == "ipo":
            m = (c - c0) / nc - (r - r0) / nr
            return (m - 1 / (2 * beta)) ** 2, m
        if method.get("loss") == "hinge":
            return max(0.0, 1 - beta * h), beta * h
        return -(1 - e) * _logsig(beta * h) - e * _logsig(-beta * h), beta * h
    if kind == "simpo":
        beta, gamma = beta or 2.0, method.get("gamma", 1.0)
        z = beta * (c / nc - r / nr) - gamma
        return -(1 - e) * _logsig(z) - e * _logsig(-z), z + gamma
    beta = beta or 0.1  # orpo
    pc, pr = math.exp(c / nc), math.exp(r / nr)
    odds = math.log(pc / (1 - pc)) - math.log(pr / (1 - pr))
    return -c / nc - beta * _logsig(odds), odds


def hand_logprobs(model, row) -> tuple[float, int]:
    """The summed log-probability of one side's labelled tokens, from the model's full logits on that side alone."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([row.input_ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    total, n = 0.0, 0
    for pos in range(1, len(row.labels)):
        if row.labels[pos] != IGNORE:
            total += float(logp[pos - 1, row.labels[pos]])
            n += 1
    return total, n


METHODS = [
    {"type": "dpo"},
    {"type": "dpo", "beta": 0.5, "label_smoothing": 0.2},
    {"type": "dpo", "loss": "ipo", "beta": 0.3},
    {"type": "dpo", "loss": "hinge", "beta": 0.7},
    {"type": "simpo"},
    {"type": "simpo", "beta": 1.5, "gamma": 0.4, "label_smoothing": 0.1},
    {"type": "orpo"},
    {"type": "orpo", "beta": 0.8},
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: "-".join(str(v) for v in m.values()))
def test_each_loss_matches_a_hand_computation_on_the_toy_model(pairs, method):
    cfg, rows, pad_id = pairs
    section = build_config({**cfg.model_dump(mode="json"), "method": method}).method
    model = lora_model(cfg).eval()
    batch_rows = rows[:5]
    reference = torch.tensor([[-20.0 - i, -25.0 + 2 * i] for i in range(len(batch_rows))], dtype=torch.float32)
    batch = make_pair_batch(batch_rows, pad_id)
    batch.reference = reference
    with torch.no_grad():
        logp, counts = answer_logprobs(model, batch, chunk=None)
        losses, margin = pair_losses(section, logp, counts, reference)
        parts = PreferenceObjective(section, chunk=None)(model, batch)
    expected_sum = 0.0
    for i, row in enumerate(batch_rows):
        (c, nc), (r, nr) = hand_logprobs(model, row), hand_logprobs(model, row.rejected)
        assert float(logp[i, 0]) == pytest.approx(c, abs=2e-4) and float(logp[i, 1]) == pytest.approx(r, abs=2e-4)
        assert counts[i].tolist() == [nc, nr]
        loss, m = hand_loss(method, c, r, nc, nr, *reference[i].tolist())
        assert float(losses[i]) == pytest.approx(loss, rel=1e-4, abs=1e-5)
        assert float(margin[i]) == pytest.approx(m, rel=1e-4, abs=1e-5)
        expected_sum += loss
    assert float(parts.loss_sum) == pytest.approx(expected_sum, rel=1e-4)
    assert parts.tokens == len(batch_rows)  # the loop averages per pair
    assert parts.correct == int((margin > 0).sum())


def test_dpo_loss_is_log_two_when_the_policy_is_its_reference(pairs):
    cfg, rows, pad_id = pairs
    model = lora_model(cfg).eval()
    batch = make_pair_batch(rows[:6], pad_id)
    with torch.no_grad():
        batch.reference, _ = answer_logprobs(model, batch, chunk=None)
        parts = PreferenceObjective(cfg.method)(model, batch)
    assert float(parts.loss_sum) / parts.tokens == pytest.approx(math.log(2), abs=1e-6)


# --- speed paths change no number ----------------------------------------------------------------------------------


def _loss_and_grads(model, batch, method, chunk):
    model.zero_grad(set_to_none=True)
    parts = PreferenceObjective(method, chunk)(model, batch)
    (parts.loss_sum / parts.tokens).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(parts.loss_sum.detach()), grads


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_chunked_log_probs_and_gradients_equal_the_plain_projection(pairs, full):
    """A chunk of 7 positions splits answers mid-way; full fine-tuning also trains the output projection."""
    cfg, rows, pad_id = pairs
    if full:
        from tunesmith.models.loading import load_base

        model = load_base(cfg.model, torch.device("cpu"), torch.float32).model
    else:
        model = lora_model(cfg)
    batch = make_pair_batch(rows[:6], pad_id)
    batch.reference = torch.full((6, 2), -30.0)
    plain = _loss_and_grads(model, batch, cfg.method, None)
    chunked = _loss_and_grads(model, batch, cfg.method, 7)
    assert chunked[0] == pytest.approx(plain[0], rel=1e-5)
    assert_close_grads(chunked[1], plain[1])
    if full:
        assert "lm_head.weight" in chunked[1] or "model.embed_tokens.weight" in chunked[1]


@pytest.mark.parametrize("method", [{"type": "dpo"}, {"type": "simpo"}, {"type": "orpo"}], ids=lambda m: m["type"])
def test_packed_pairs_equal_padded_pairs(pairs, method):
    """Both sides of several pairs in one packed sequence: no cross-talk, so the same losses and gradients."""
    cfg, rows, pad_id = pairs
    section = build_config({**cfg.model_dump(mode="json"), "method": method}).method
    model = lora_model(cfg)
    padded = make_pair_batch(rows[:8], pad_id)
    packed = make_pair_batch(rows[:8], pad_id, pack_to=256)
    assert packed.input_ids.shape[0] < 16  # sides really share sequences
    for batch in (padded, packed):
        batch.reference = torch.full((8, 2), -30.0)
    a, b = _loss_and_grads(model, padded, section, None), _loss_and_grads(model, packed, section, None)
    assert b[0] == pytest.approx(a[0], rel=1e-5)
    assert_close_grads(b[1], a[1])


# --- runs ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    data = write_pair_data(tmp / "pairs.jsonl")
    cfg = pair_config(tiny_model_dir, data, tmp / "run", {"type": "dpo"}, max_steps=12, lr=2e-2, packing=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_CACHE", str(tmp / "cache"))
        return run_training(build_config(cfg), **quiet)


def test_dpo_raises_preference_accuracy_and_reports_it(dpo_run):
    base, tuned = dpo_run.base["metrics"], dpo_run.tuned["metrics"]
    # Before any step the policy is its reference: every implicit reward is 0 and the loss is exactly log 2.
    assert base["loss"] == pytest.approx(math.log(2), abs=1e-6) and base["reward_margin"] == pytest.approx(0)
    assert base["rows"] == tuned["rows"] == 12
    assert tuned["loss"] < base["loss"] - 0.2
    assert tuned["reward_accuracy"] >= 0.9 and tuned["reward_margin"] > 0.5
    assert tuned["preference_accuracy"] >= base["preference_accuracy"]
    gain = dpo_run.tuned["preference"]
    assert gain["low"] <= gain["diff"] <= gain["high"] and gain["tuned"] == tuned["preference_accuracy"]
    assert set(dpo_run.tuned["lengths"]) == {"base", "tuned"}
    assert len(dpo_run.tuned["samples"]) == 1 and dpo_run.tuned["samples"][0]["reference"].startswith("the answer")
    card = (dpo_run.run_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Preference" in card and "Preference accuracy (the chosen answer likelier per token" in card
    ranking = dpo_run.tuned["reward_ranking"]  # DPO's own judgement against the base's ranking per token, paired
    assert ranking["tuned"] == tuned["reward_accuracy"] and ranking["base"] == gain["base"]
    assert ranking["diff"] > 0 and ranking["low"] <= ranking["diff"] <= ranking["high"]
    assert "Ranking accuracy (base: the chosen answer likelier per token" in card and "implicit reward" in card
    report = (dpo_run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Preference (12 held-out rows)</h2>" in report and "ranking accuracy" in report


@pytest.mark.parametrize("method", [{"type": "simpo"}, {"type": "orpo", "beta": 0.5}], ids=lambda m: m["type"])
def test_reference_free_methods_train_without_reading_a_reference(tiny_model_dir, tmp_path, method):
    data = write_pair_data(tmp_path / "pairs.jsonl")
    logged: list[str] = []
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", method, max_steps=12, lr=2e-2)
    result = run_training(build_config(cfg), log=logged.append)
    assert not any("reference log-probabilities" in line for line in logged)
    assert result.tuned["metrics"]["loss"] < result.base["metrics"]["loss"]
    assert result.tuned["metrics"]["reward_accuracy"] >= 0.9
    assert "reward_ranking" not in result.tuned  # their reward ranks as the likelihood per token: `preference`


def test_the_reference_is_read_once_and_cached_per_data_and_model(tiny_model_dir, tmp_path):
    data = write_pair_data(tmp_path / "pairs.jsonl")
    cfg = build_config(pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"}))
    logs: list[list[str]] = []
    references = []
    for _ in range(2):
        logs.append([])
        loaded = load(cfg, build_method(cfg), log=logs[-1].append)
        references.append([row.reference for row in loaded.prepared.train + loaded.prepared.eval])
    assert references[0] == references[1] and all(r is not None for r in references[0])
    assert sum("read from the base" in line for line in logs[0]) == 2
    assert sum("read from" in line and "cache" in line and "base" not in line for line in logs[1]) == 2
    # Other rows are another cache entry.
    other = build_config(
        pair_config(tiny_model_dir, write_pair_data(tmp_path / "b.jsonl", seed=1), tmp_path / "r", {"type": "dpo"})
    )
    fresh: list[str] = []
    load(other, build_method(other), log=fresh.append)
    assert sum("read from the base" in line for line in fresh) == 2


def test_resume_after_crash_matches_uninterrupted_for_dpo(tiny_model_dir, tmp_path):
    data = write_pair_data(tmp_path / "pairs.jsonl")
    settings = {"max_steps": 9, "save_every": 3, "eval_every": 4, "lr": 1e-2}
    whole = run_training(
        build_config(pair_config(tiny_model_dir, data, tmp_path / "a", {"type": "dpo"}, **settings)), **quiet
    )
    cfg = build_config(pair_config(tiny_model_dir, data, tmp_path / "b", {"type": "dpo"}, **settings))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, crash_after_step=5, **quiet)
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "checkpoints")] == ["step-3"]
    resumed = run_training(cfg, resume=True, **quiet)
    assert_same_weights(final_trainable(whole.run_dir), final_trainable(resumed.run_dir))
    assert resumed.tuned["metrics"]["loss"] == pytest.approx(whole.tuned["metrics"]["loss"], abs=1e-6)


def test_verify_checks_the_preference_speed_paths(tiny_model_dir, tmp_path, capsys):
    data = write_pair_data(tmp_path / "pairs.jsonl", n=24)
    config = tmp_path / "dpo.yaml"
    config.write_text(
        yaml.safe_dump(pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"})), encoding="utf-8"
    )
    code = main(["verify", str(config), "--steps", "2", "--options", "packing", "chunked_ce"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "packing" in out and "chunked_ce" in out and "DIVERGES" not in out
    assert not (tmp_path / "run").exists()


def test_plan_counts_both_sides_of_every_pair(tiny_model_dir, tmp_path):
    from tunesmith.recipes.plan import make_plan

    data = write_pair_data(tmp_path / "pairs.jsonl", n=24)
    for packing in (False, True):
        cfg = build_config(pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"}, packing=packing))
        plan = make_plan(cfg, calibration_steps=1, log=lambda *_: None)
        rows = load(cfg, build_method(cfg), log=lambda *_: None).prepared.train
        assert plan.tokens_per_epoch == sum(len(r.input_ids) + len(r.rejected.input_ids) for r in rows)
        assert plan.trained_tokens_per_epoch == sum(r.trained_tokens + r.rejected.trained_tokens for r in rows)
        assert plan.padded_tokens_per_epoch >= plan.tokens_per_epoch
        if not packing:  # a micro-batch of pairs is twice as many sequences
            assert plan.largest_batch[0] == 2 * cfg.train.micro_batch_size
        assert plan.epoch_seconds > 0
    assert not (tmp_path / "run").exists()


# --- the reward model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reward")
    data = write_pair_data(tmp / "pairs.jsonl", n=64)
    cfg = pair_config(tiny_model_dir, data, tmp / "run", {"type": "reward_model"}, max_steps=30, lr=1e-2)
    return run_training(build_config(cfg), **quiet)


def test_reward_loss_is_bradley_terry_on_the_last_token_score(pairs, tiny_model_dir):
    from tunesmith.methods.reward import RewardObjective
    from tunesmith.models.loading import load_classifier

    _, rows, pad_id = pairs
    torch.manual_seed(0)
    model = load_classifier(tiny_model_dir, ["reward"], pad_id, torch.device("cpu"), torch.float32).eval()
    objective = RewardObjective(center=0.3)
    batch = make_pair_batch(rows[:4], pad_id)
    with torch.no_grad():
        parts = objective(model, batch)
    expected, correct = 0.0, 0
    for row in rows[:4]:
        with torch.no_grad():  # each side alone, no padding: the score at its last token
            c, r = (float(model(input_ids=torch.tensor([s.input_ids])).logits[0, 0]) for s in row.sides)
        expected += -_logsig(c - r) + 0.3 * (c + r) ** 2
        correct += c > r
    assert float(parts.loss_sum) == pytest.approx(expected, rel=1e-4)
    assert parts.tokens == 4 and parts.correct == correct


@pytest.mark.parametrize("method", ["lora", "full"])
def test_packed_pair_sides_give_the_reward_models_padded_loss_and_gradients(pairs, tiny_model_dir, method):
    """Both sides of several pairs packed into shared sequences (positions restarting per side, the head reading
    each side's last token) give the padded batch's scores, loss and gradients, head and decoder alike."""
    from tunesmith.config import AdapterConfig, TrainConfig
    from tunesmith.methods.reward import RewardObjective
    from tunesmith.models.loading import load_classifier
    from tunesmith.training.preference import make_scored_pair_batch
    from tunesmith.training.speed import make_trainable

    _, rows, pad_id = pairs
    objective, results = RewardObjective(center=0.1), []
    for pack_to in (None, 512):  # sides of about 70 tokens
        torch.manual_seed(0)
        model = load_classifier(tiny_model_dir, ["reward"], pad_id, torch.device("cpu"), torch.float32)
        model = make_trainable(model, AdapterConfig(method=method, r=4), TrainConfig(), "SEQ_CLS", packs=bool(pack_to))
        batch = make_scored_pair_batch(rows[:6], pad_id, pack_to)
        scores = objective.scores(model, batch)
        parts = objective(model, batch)
        parts.loss_sum.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((scores.detach(), parts, grads, batch))
    (scores, padded, padded_grads, wide), (packed_scores, packed, packed_grads, narrow) = results
    assert narrow.input_ids.shape[0] < 12 and narrow.real_tokens == wide.real_tokens  # sides share sequences
    torch.testing.assert_close(packed_scores, scores, atol=1e-5, rtol=1e-5)  # in pair order, chosen then rejected
    torch.testing.assert_close(packed.loss_sum, padded.loss_sum, atol=1e-5, rtol=1e-5)
    assert packed.tokens == padded.tokens == 6 and packed.correct == padded.correct
    assert any("score" in n for n in padded_grads) and padded_grads.keys() == packed_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_reward_model_learns_to_rank_and_beats_the_base_lm_baseline_honestly(reward_run):
    base, tuned = reward_run.base, reward_run.tuned
    assert base["metrics"]["rows"] == tuned["metrics"]["rows"] == 16
    assert tuned["metrics"]["loss"] < base["metrics"]["loss"]
    assert tuned["metrics"]["accuracy"] >= 0.9
    gain = tuned["preference"]
    # The baseline is the base LM's own ranking of the same pairs, not the untrained head.
    assert gain["base"] == pytest.approx(base["baseline"]["accuracy"]) and len(base["prefers"]) == 16
    assert gain["low"] <= gain["diff"] <= gain["high"]
    assert "## Preference" in (reward_run.run_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    report = (reward_run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Preference (16 held-out rows)</h2>" in report and "the reward model&#x27;s scores" in report


PLAIN_REWARD = r"""
import json, sys
import torch
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoTokenizer

final, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoPeftModelForSequenceClassification.from_pretrained(final).eval()
tokenizer = AutoTokenizer.from_pretrained(final)
with torch.no_grad():
    scores = []
    for prompt, answer in texts:
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        ids = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=False)
        scores.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
assert not [m for m in sys.modules if m.split(".")[0] == "tunesmith"]
print(json.dumps(scores))
"""


def test_reward_final_scores_with_plain_transformers_as_tunesmith_does(reward_run):
    import os
    import subprocess
    import sys

    from tunesmith.eval.reward import load_reward_model

    scorer = load_reward_model(reward_run.run_dir)
    prompts = ["what is 2 plus 3?", "what is 4 plus 4? please"]
    answers = ["the answer is 5.", "it is 11, i think."]
    ours = scorer.score(prompts, answers)
    texts = [[p, a] for p, a in zip(prompts, answers, strict=True)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_REWARD, str(reward_run.run_dir / "final"), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout) == pytest.approx(ours, abs=1e-4)
    assert ours[0] > ours[1]  # the right sum scores above a wrong one


def test_a_reward_model_judges_base_and_tuned_answers_as_a_win_rate(reward_run, tiny_model_dir, tmp_path):
    data = write_pair_data(tmp_path / "other.jsonl", seed=1)  # other pairs than the judge was trained on
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "dpo"}, max_steps=6, lr=2e-2)
    cfg["eval"] |= {"judge": str(reward_run.run_dir), "judge_rows": 6, "max_new_tokens": 6}
    result = run_training(build_config(cfg), **quiet)
    judged = result.tuned["win_rate"]
    assert judged["rows"] == 6 and judged["judge"] == str(reward_run.run_dir)
    assert 0.0 <= judged["low"] <= judged["win_rate"] <= judged["high"] <= 1.0
    assert len(result.base["judge_answers"]) == len(result.tuned["judge_answers"]) == 6
    # The win rate is the judge's verdict on these very answers.
    from tunesmith.eval.reward import load_reward_model

    scorer = load_reward_model(reward_run.run_dir)
    prompts = [json.loads(x)["prompt"] for x in data.read_text().splitlines()]
    assert scorer.score(prompts[:1], ["the answer is 5."]) != scorer.score(prompts[:1], ["it is 11, i think."])
    assert "Judged by the reward model" in (result.run_dir / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_judge_is_refused_outside_preference_runs_and_a_classifier_is_no_judge(tiny_model_dir, tmp_path):
    data = write_pair_data(tmp_path / "pairs.jsonl", n=8)
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "reward_model"})
    with pytest.raises(ConfigError, match=r"eval.judge scores generated answers of a preference run"):
        build_config({**cfg, "eval": {**cfg["eval"], "judge": "runs/x"}})
    from tunesmith.eval.reward import NotARewardModel, load_reward_model

    with pytest.raises(NotARewardModel, match="no finished model here"):
        load_reward_model(tmp_path)


# --- OpenAI's preference format, uploads and jobs -------------------------------------------------------------------


def openai_rows(path: Path, n: int = 24) -> Path:
    """write_pair_data's pairs in OpenAI's preference fine-tuning format."""
    rows = [json.loads(x) for x in write_pair_data(path.with_suffix(".pairs"), n=n).read_text().splitlines()]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": r["prompt"]}]},
                    "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
                    "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}],
                }
            )
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    return path


def test_openai_preference_rows_read_as_pairs_and_bad_ones_are_named(tiny_tokenizer, tmp_path):
    from tunesmith.config import DatasetSpec, Kind
    from tunesmith.data.loading import load_dataset
    from tunesmith.serve.uploads import UploadRejected, check_upload

    path = openai_rows(tmp_path / "prefs.jsonl", n=6)
    result = load_dataset(DatasetSpec(path=str(path)))
    assert result.kind is Kind.preference and not result.errors
    first = result.examples[0]
    assert first.messages == [{"role": "user", "content": first.prompt}] and first.chosen.startswith("the answer is")
    renderer = Renderer(tiny_tokenizer, "auto", 128)
    assert check_upload(path, "prefs.jsonl", 100, renderer).kind == "preference"

    rows = path.read_text().splitlines()
    broken = [json.loads(r) for r in rows]
    broken[1]["preferred_output"] = [{"role": "user", "content": "hi"}]
    broken[2]["input"]["messages"].append({"role": "assistant", "content": "so?"})
    broken[3]["non_preferred_output"] = broken[3]["preferred_output"]
    path.write_text("".join(json.dumps(r) + "\n" for r in broken), encoding="utf-8")
    with pytest.raises(UploadRejected) as rejected:
        check_upload(path, "prefs.jsonl", 100, renderer)
    message = str(rejected.value)
    assert "prefs.jsonl:2: preferred_output: expected a string, or a list of exactly one assistant message" in message
    assert "prefs.jsonl:3: input: the conversation's last message is the assistant's" in message
    assert "prefs.jsonl:4: rejected: the same text as chosen" in message


def test_a_dpo_job_config_carries_beta_and_the_method(tmp_path):
    from tunesmith.serve.jobs import job_config, job_json
    from tunesmith.serve.schemas import JobCreate
    from tunesmith.serve.store import JobRecord

    body = JobCreate(
        model="m",
        training_file="file-1",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25, "n_epochs": 2}}},
    )
    hyper = body.resolved_hyperparameters().model_dump()
    job = JobRecord(
        id="ftjob-1", created_at=0, model="m", base="m", base_id="m", training_file="file-1", validation_file=None,
        hyperparameters=hyper, suffix=None, seed=1, status="queued", run_name="r", method=body.method_type,
    )  # fmt: skip
    data = openai_rows(tmp_path / "prefs.jsonl", n=8)
    cfg, resolved = job_config(job, data, None, 8, tmp_path / "run", False)
    assert cfg.method.type == "dpo" and cfg.method.beta == 0.25 and cfg.train.epochs == 2
    assert resolved.as_json()["beta"] == 0.25
    shown = job_json(job)["method"]
    assert shown["type"] == "dpo" and shown["dpo"]["hyperparameters"]["beta"] == 0.25
    auto = JobCreate(model="m", training_file="file-1", method={"type": "dpo"}).resolved_hyperparameters()
    assert auto.model_dump()["beta"] == "auto"
    job.hyperparameters = auto.model_dump()
    assert job_config(job, data, None, 8, tmp_path / "run", False)[0].method.beta == 0.1


# --- KTO -----------------------------------------------------------------------------------------------------------


def test_kto_rows_read_labels_and_each_gets_its_prompt_with_the_next_answer(tiny_model_dir, tiny_tokenizer, tmp_path):
    from tunesmith.data.pairs import KTOEncoder, answer_start, with_kl_sides

    data = write_kto_data(tmp_path / "kto.jsonl", n=9)
    cfg = build_config(pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "kto"}))
    rows = prepare_data(cfg, KTOEncoder(Renderer(tiny_tokenizer, "auto", 128))).train
    labels = {json.loads(x)["completion"]: json.loads(x)["label"] for x in data.read_text().splitlines()}
    for row in rows:
        answer = tiny_tokenizer.decode([x for x in row.labels if x != IGNORE], skip_special_tokens=True).strip()
        assert row.desirable is labels[answer]
    with_kl_sides(rows, 128)
    for i, row in enumerate(rows):
        other, kl = rows[(i + 1) % len(rows)], row.rejected
        start, theirs = answer_start(row), answer_start(other)
        assert kl.input_ids == row.input_ids[:start] + other.input_ids[theirs:]
        assert [x for x in kl.labels if x != IGNORE] == [x for x in other.labels if x != IGNORE]


def test_bad_kto_rows_are_row_errors(tiny_model_dir, tmp_path):
    data = tmp_path / "kto.jsonl"
    rows = [json.loads(x) for x in write_kto_data(tmp_path / "good.jsonl", n=6).read_text().splitlines()]
    rows[1]["label"] = "maybe"
    del rows[2]["label"]
    rows[3] = {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "2+2?"}], "label": 1}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "kto"})
    with pytest.raises(DataRefused) as refused:
        run_training(build_config(cfg), **quiet)
    message = str(refused.value)
    assert f"{data}:2: label: 'maybe' is not a desirable/undesirable mark" in message
    assert f"{data}:3: label: missing: kto needs each answer marked desirable or not" in message
    pairs = write_pair_data(tmp_path / "pairs.jsonl", n=4)
    with pytest.raises(TemplateError, match=r"preference rows cannot train method kto .*method.type: dpo"):
        run_training(build_config(pair_config(tiny_model_dir, pairs, tmp_path / "r2", {"type": "kto"})), **quiet)


def test_kto_loss_matches_a_hand_computation(pairs):
    from tunesmith.config import KTOMethod

    method = KTOMethod(beta=0.4, desirable_weight=1.5, undesirable_weight=0.7)
    logp = torch.tensor([[-10.0, -30.0], [-12.0, -28.0], [-9.0, -26.0]])
    reference = torch.tensor([[-11.0, -31.5], [-11.0, -27.0], [-9.5, -25.0]])
    desirable = torch.tensor([True, False, True])
    losses, margin = pair_losses(method, logp, torch.ones(3, 2), reference, desirable)
    z0 = max(0.0, ((-30 + 31.5) + (-28 + 27) + (-26 + 25)) / 3)  # KL estimate, clamped at 0: here 0
    rewards = [1.0, -1.0, 0.5]
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [1.5 * (1 - sig(0.4 * (1.0 - z0))), 0.7 * (1 - sig(0.4 * (z0 + 1.0))), 1.5 * (1 - sig(0.4 * (0.5 - z0)))]
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)
    assert margin.tolist() == pytest.approx([rewards[0] - z0, z0 - rewards[1], rewards[2] - z0])
    shifted = reference.clone()
    shifted[:, 1] -= 2.0  # the policy now sits 2 nats above the reference on the KL sides: z0 = 2 - 1/3 ... > 0
    losses, margin = pair_losses(method, logp, torch.ones(3, 2), shifted, desirable)
    z0 = ((-30 + 33.5) + (-28 + 29) + (-26 + 27)) / 3
    assert margin.tolist() == pytest.approx([1.0 - z0, z0 + 1.0, 0.5 - z0])


def test_kto_trains_desirable_answers_up_and_undesirable_down(tiny_model_dir, tmp_path):
    data = write_kto_data(tmp_path / "kto.jsonl")
    cfg = pair_config(tiny_model_dir, data, tmp_path / "run", {"type": "kto"}, max_steps=12, lr=2e-2, packing=True)
    result = run_training(build_config(cfg), **quiet)
    base, tuned = result.base["metrics"], result.tuned["metrics"]
    assert base["loss"] == pytest.approx(0.5, abs=1e-6)  # every implicit reward 0: 1 - sigmoid(0) per row
    assert tuned["loss"] < base["loss"] and tuned["reward_accuracy"] >= 0.9
    assert tuned["desirable_logp"] > base["desirable_logp"] and tuned["undesirable_logp"] < base["undesirable_logp"]
    gain = result.tuned["preference"]
    assert gain["what"] == "signed log-probability per token" and gain["tuned"] > gain["base"]
    assert gain["tuned"] == pytest.approx(tuned["signed_logp"])
    assert "Signed log-probability per token" in (result.run_dir / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_dpo_continues_an_sft_run_and_trains_full_weights(tiny_model_dir, tmp_path):
    """model.base: a finished SFT run is the start and the reference (its merged weights); full fine-tuning trains
    every weight against the same reference, read before the first update."""
    from tiny_runs import write_chat_data

    sft = tiny_config(tiny_model_dir, write_chat_data(tmp_path / "chat.jsonl", n=24), tmp_path / "sft", max_steps=3)
    run_training(build_config(sft), **quiet)
    data = write_pair_data(tmp_path / "pairs.jsonl")
    for adapter in ("lora", "full"):
        cfg = pair_config(tiny_model_dir, data, tmp_path / adapter, {"type": "dpo"}, max_steps=6, lr=2e-2)
        cfg["model"]["base"] = str(tmp_path / "sft")
        if adapter == "full":
            cfg["adapter"] = {"method": "full"}
            cfg["train"]["lr"] = 1e-3
        result = run_training(build_config(cfg), **quiet)
        assert result.base["metrics"]["loss"] == pytest.approx(math.log(2), abs=1e-6)
        assert result.tuned["metrics"]["loss"] < result.base["metrics"]["loss"]
        manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["parent"]["run"] == str(tmp_path / "sft")
