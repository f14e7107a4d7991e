"""eval.reuse_base: a run that changes only how it trains reads the base's evaluation back; anything the base's numbers
depend on (rows, evaluation settings) scores it again, and the numbers read back are the numbers scored."""

from __future__ import annotations

import json

from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.recipes.train import run_training

READ_BACK = "base model: evaluation read from"


def _run(raw: dict) -> tuple[dict, list[str]]:
    lines: list[str] = []
    out = run_training(build_config(raw), log=lambda m: lines.append(str(m))).run_dir
    return json.loads((out / "eval" / "base.json").read_text()), lines


def test_the_base_evaluation_is_reused_only_when_nothing_it_depends_on_changed(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    data = write_chat_data(tmp_path / "train.jsonl")
    first, lines = _run(tiny_config(tiny_model_dir, data, tmp_path / "a", reuse_base=True, max_steps=2))
    assert not any(READ_BACK in line for line in lines)
    assert len(list((tmp_path / "cache" / "base-eval").glob("*.json"))) == 1

    # Another learning rate, step count, batch and adapter: the same base on the same rows, read back.
    raw = tiny_config(tiny_model_dir, data, tmp_path / "b", reuse_base=True, max_steps=3, lr=1e-3, batch_size=4)
    raw["adapter"] |= {"r": 8, "alpha": 16}
    second, lines = _run(raw)
    assert any(READ_BACK in line for line in lines)
    assert second.pop("reused")["key"] and second == first
    assert "read back from an earlier run's identical evaluation" in (tmp_path / "b" / "MODEL_CARD.md").read_text()

    # The same run with reuse off scores the base again, to the same numbers the cache gave.
    raw["eval"]["reuse_base"] = False
    raw["output"]["dir"] = str(tmp_path / "c")
    scored, lines = _run(raw)
    assert not any(READ_BACK in line for line in lines)
    assert scored["metrics"]["loss"] == first["metrics"]["loss"]
    assert scored["samples"] == first["samples"]

    # What the base's numbers depend on: the evaluation's settings, the rows, the seed that splits and draws them.
    eval_setting = tiny_config(tiny_model_dir, data, tmp_path / "d", reuse_base=True, max_steps=2)
    eval_setting["eval"]["max_new_tokens"] = 6
    other_rows = tiny_config(
        tiny_model_dir, write_chat_data(tmp_path / "other.jsonl", seed=1), tmp_path / "e", reuse_base=True, max_steps=2
    )
    other_seed = tiny_config(tiny_model_dir, data, tmp_path / "f", reuse_base=True, max_steps=2, seed=4)
    for raw in (eval_setting, other_rows, other_seed):
        _, lines = _run(raw)
        assert not any(READ_BACK in line for line in lines), raw["output"]["dir"]
    assert len(list((tmp_path / "cache" / "base-eval").glob("*.json"))) == 4
