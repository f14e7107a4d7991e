"""Replay rows (data.replay) and continuing from a finished run on the tiny Llama: the base's own answers mixed in
at the configured share and cached, the parent's rows replayed, the parent's held-out rows scored for retention, and
the lineage recorded; the KL-to-base penalty on replay rows (data.replay.kl) checked against a hand computation.

pytest tests/unit/test_replay.py -q
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import ConfigError, build_config
from tunesmith.data.templates import IGNORE
from tunesmith.errors import TunesmithError
from tunesmith.methods import build_method
from tunesmith.recipes.replay import PARENT, SELF, TEACHER_TOP, general_prompts
from tunesmith.recipes.setup import load
from tunesmith.recipes.train import run_training
from tunesmith.training.chunked_ce import Soft, linear_cross_entropy
from tunesmith.training.packing import pack
from tunesmith.training.prepare import train_order


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("replay") / "train.jsonl", n=48)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def chatty(tiny_model_dir, data, tmp_path_factory):
    """The tiny Llama after learning to answer the arithmetic chats: a base that says something (the untrained one
    answers every prompt with an empty string)."""
    out = tmp_path_factory.mktemp("chatty") / "run"
    return run_training(
        build_config(tiny_config(tiny_model_dir, data, out, max_steps=30, lr=3e-2)), log=lambda *_: None
    ).run_dir


def test_a_base_with_nothing_to_say_is_refused(tiny_model_dir, data, tmp_path, cache):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run")
    settings["data"]["replay"] = {"fraction": 0.25, "max_new_tokens": 8}
    cfg = build_config(settings)
    with pytest.raises(TunesmithError, match="answered none of the 120 general prompts"):
        load(cfg, build_method(cfg))
    assert not list((cache / "replay").glob("*.jsonl"))


def test_self_replay_mixes_the_base_answers_at_the_configured_share(chatty, data, tmp_path, cache):
    settings = tiny_config(chatty, data, tmp_path / "run")
    settings["data"]["replay"] = {"fraction": 0.25, "max_new_tokens": 8}
    cfg = build_config(settings)
    lines: list[str] = []
    loaded = load(cfg, build_method(cfg), lines.append)
    prepared = loaded.prepared
    assert prepared.train_names[-1] == SELF
    replay = [r for r in prepared.train if r.dataset == len(prepared.train_names) - 1]
    assert 0 < len(replay) <= len(general_prompts()) == 120
    own = len(prepared.train) - len(replay)
    order = train_order(cfg, prepared, packs=True)
    share = sum(prepared.train[i].dataset == len(prepared.train_names) - 1 for i in order(0)) / len(order(0))
    assert share == pytest.approx(0.25, abs=0.03), share
    assert sum(1 for i in order(0) if prepared.train[i].dataset == 0) == pytest.approx(own, abs=1)
    assert any("the base answers 120 general prompts" in line for line in lines)
    [cached] = (cache / "replay").glob("*.jsonl")
    assert len(cached.read_text().splitlines()) == len(replay)

    again: list[str] = []
    reloaded = load(cfg, build_method(cfg), again.append).prepared
    assert not any("the base answers" in line for line in again)  # read from the cache
    assert [r.input_ids for r in reloaded.train] == [r.input_ids for r in prepared.train]


def test_replay_is_refused_where_it_cannot_apply(tiny_model_dir, data, tmp_path, cache):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run")
    settings["data"]["replay"] = {"fraction": 0.2, "source": "parent"}
    cfg = build_config(settings)
    with pytest.raises(TunesmithError, match="is not a finished run, so there is no parent training data"):
        load(cfg, build_method(cfg))
    settings["method"] = {"type": "classifier"}
    settings["task"] = {"type": "classification", "labels": ["a", "b"]}
    with pytest.raises(ConfigError, match="causal-LM runs only"):
        build_config(settings)


def test_continuing_replays_the_parent_and_scores_its_held_out_rows(tiny_model_dir, data, tmp_path, cache):
    first = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "v1")), log=lambda *_: None)
    new_data = write_chat_data(tmp_path / "new.jsonl", n=40, seed=7)
    # Five of v1's questions come back with new answers: those v1 rows are not replayed (their answers changed).
    changed = [json.loads(x) for x in data.read_text().splitlines()[:5]]
    for row in changed:
        row["messages"][1]["content"] = "the answer changed."
    asked_again = {row["messages"][0]["content"] for row in changed}
    with open(new_data, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(row) + "\n" for row in changed))
    # Unset, the source is both when continuing a finished causal-LM run (its rows keep the earlier task), else self.
    for base, expected in ((first.run_dir, "both"), (tiny_model_dir, "self")):
        unset = tiny_config(base, new_data, tmp_path / "v2", replay=0.3)
        assert build_config(unset).data.replay.source == expected
    settings = tiny_config(first.run_dir, new_data, tmp_path / "v2", max_steps=4, eval_every=2)
    settings["data"]["replay"] = {"fraction": 0.3, "source": "parent"}
    lines: list[str] = []
    second = run_training(build_config(settings), log=lines.append)

    manifest = json.loads((second.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["run"] == str(first.run_dir.resolve()) and len(manifest["parent"]["config_sha256"]) == 64
    assert "continues the finished run" in (second.run_dir / "MODEL_CARD.md").read_text()
    datasets = second.tuned["metrics"]["datasets"]
    parent_names = [name for name in datasets if name.startswith("parent: ")]
    assert parent_names and datasets[parent_names[0]]["rows"] == first.tuned["metrics"]["rows"]
    own_rows = second.tuned["metrics"]["rows"]
    assert own_rows == sum(d["rows"] for name, d in datasets.items() if not name.startswith("parent: "))
    assert any(f"{PARENT}: " in line for line in lines)
    v1_rows = [json.loads(x) for x in data.read_text().splitlines()]
    superseded = sum(r["messages"][0]["content"] in asked_again for r in v1_rows)  # held-out ones included
    [note] = [line for line in lines if "parent rows left out" in line]
    assert 0 < int(note.split()[1]) <= superseded
    evals = [json.loads(x) for x in (second.run_dir / "metrics.jsonl").read_text().splitlines()]
    at_step_2 = [r for r in evals if r.get("split") == "eval" and r["step"] == 2]
    assert at_step_2 and parent_names[0] in at_step_2[0]["datasets"]  # retention is watched during training too


def test_an_epoch_is_not_lengthened_when_every_parent_row_is_superseded(tiny_model_dir, data, tmp_path, cache):
    """A continued run whose data asks every question of the parent anew has no parent rows to replay: its epoch is
    its own rows, not own / (1 - fraction) (which would walk past the end of its order)."""
    first = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "v1")), log=lambda *_: None)
    settings = tiny_config(first.run_dir, data, tmp_path / "v2")
    settings["data"]["replay"] = {"fraction": 0.3, "source": "parent"}
    cfg = build_config(settings)
    prepared = load(cfg, build_method(cfg), lambda *_: None).prepared
    assert PARENT not in prepared.train_names and prepared.epoch_length() == len(prepared.train)


def _kl_by_hand(logits: torch.Tensor, ids: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || model) over the teacher's K tokens and "any other token", position by position, in float64."""
    log_q = torch.log_softmax(logits.double(), -1)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(ids.shape[0]):
        if ids[i, 0] < 0:
            continue
        p, q = logp[i].double().exp(), log_q[i, ids[i]].exp()
        total += (p * (p.log() - q.log())).sum() + (1 - p.sum()) * ((1 - p.sum()).log() - (1 - q.sum()).log())
    return total


def test_the_kl_penalty_matches_a_hand_computation_and_vanishes_at_the_teacher():
    """The chunked projection's KL term (loss and gradients) equals autograd through the plain formula; it is zero
    with zero gradient when the model is the teacher, and positive otherwise."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(9, 16, generator=generator, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(40, 16, generator=generator).requires_grad_()
    targets = torch.randint(0, 40, (9,), generator=generator)
    teacher = torch.log_softmax(hidden.detach() @ weight.detach().T + 0.5 * torch.randn(9, 40, generator=generator), -1)
    top = teacher.topk(5, -1)
    ids, logp = top.indices.clone(), top.values.clone()
    ids[[1, 4]] = -1  # positions without a teacher
    soft = Soft(ids, logp, kl=0.7)

    loss, _ = linear_cross_entropy(hidden, weight, targets, chunk=4, soft=soft)  # ragged chunks
    loss.backward()
    chunked = (float(loss.detach()), hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None
    logits = hidden @ weight.T
    plain = torch.nn.functional.cross_entropy(logits, targets, reduction="sum") + 0.7 * _kl_by_hand(logits, ids, logp)
    plain.backward()
    assert chunked[0] == pytest.approx(float(plain), rel=1e-5)
    assert torch.allclose(chunked[1], hidden.grad, atol=1e-5) and torch.allclose(chunked[2], weight.grad, atol=1e-5)

    at_teacher = teacher[:, None].expand(9, 1, 40).reshape(9, 40).clone().requires_grad_()
    kl_only = Soft(top.indices, top.values, kl=1.0)
    taught = kl_only.terms(at_teacher, torch.zeros(9))
    assert abs(float(taught[0])) < 1e-5
    moved = Soft(top.indices, top.values - 0.1, kl=1.0).terms(at_teacher, torch.zeros(9))
    assert float(moved[0]) > 1e-3


def test_kl_replay_rows_carry_the_base_distribution_into_packed_batches(chatty, data, tmp_path, cache):
    settings = tiny_config(chatty, data, tmp_path / "run")
    settings["data"]["replay"] = {"fraction": 0.25, "max_new_tokens": 8, "kl": 0.5}
    cfg = build_config(settings)
    loaded = load(cfg, build_method(cfg), lambda *_: None)
    replay = [r for r in loaded.prepared.train if r.teacher is not None]
    own = [r for r in loaded.prepared.train if r.teacher is None]
    assert replay and own and all(r.dataset == len(loaded.prepared.train_names) - 1 for r in replay)
    row = replay[0]
    trained = row.target_positions
    assert len(row.teacher[0]) == len(trained) and len(row.teacher[0][0]) == TEACHER_TOP
    # The teacher's first choice is the base's greedy answer: it agrees with the token each position is labelled
    # with (except where the answer was cut, stripped and closed), and far less with its neighbour.
    pairs = [(ids[0], r.labels, p) for r in replay for ids, p in zip(r.teacher[0], r.target_positions, strict=True)]
    aligned = sum(top == labels[p] for top, labels, p in pairs) / len(pairs)
    shifted = sum(top == labels[p + 1] for top, labels, p in pairs if p + 1 < len(labels)) / len(pairs)
    assert aligned > 0.5 and aligned > 3 * shifted, (aligned, shifted)
    # Packed between two rows of the run's own, the replay row's teacher sits at its labelled positions only.
    batch = pack([own[0], row, own[1]], loaded.pad_id, capacity=4096)
    labelled = batch.labels[:, 1:] != IGNORE
    carried, logp = batch.teacher_ids[:, 1:][labelled], batch.teacher_logp[:, 1:][labelled]
    taught = carried[:, 0] >= 0
    assert int(taught.sum()) == len(trained) < int(labelled.sum())
    assert carried[taught].tolist() == row.teacher[0]
    assert torch.equal(logp[taught], torch.tensor(row.teacher[1]))
    with pytest.raises(ConfigError, match=r"set data\.replay\.fraction above 0"):
        build_config({**settings, "data": {**settings["data"], "replay": {"fraction": 0, "kl": 0.5}}})
