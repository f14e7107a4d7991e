"""Replay rows (data.replay) and continuing from a finished run on the tiny Llama: the base's own answers mixed in
at the configured share and cached, the parent's rows replayed, the parent's held-out rows scored for retention, and
the lineage recorded.

pytest tests/unit/test_replay.py -q
"""

from __future__ import annotations

import json

import pytest
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import ConfigError, build_config
from tunesmith.errors import TunesmithError
from tunesmith.methods import build_method
from tunesmith.recipes.replay import PARENT, SELF, general_prompts
from tunesmith.recipes.setup import load
from tunesmith.recipes.train import run_training
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
