"""Forgetting probes per family with paired intervals, and the forgetting budget (eval.forgetting_budget) on the tiny
Llama: said at once, and with `stop` the run ends on the best checkpoint within budget.

pytest tests/unit/test_forgetting.py -q
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import ConfigError, build_config
from tunesmith.data.templates import Renderer
from tunesmith.eval.general import forgetting, general_ability, over_budget
from tunesmith.models.loading import load_tokenizer
from tunesmith.recipes.train import run_training
from tunesmith.rundir import RunDirError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("forgetting") / "train.jsonl", n=48)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), Renderer(load_tokenizer(tiny_model_dir))


def test_the_bundled_families_score_every_row(tiny):
    model, renderer = tiny
    general = general_ability(model, renderer, 8, torch.device("cpu")).as_dict()
    families = general["families"]
    assert set(families) == {"text", "knowledge"}
    assert families["knowledge"]["rows"] == 200 and families["text"]["rows"] == 24
    assert len(set(json.dumps(r) for r in families)) == 2
    text = families["text"]
    weighted = sum(s * n for s, n in zip(text["scores"], text["tokens"], strict=True)) / sum(text["tokens"])
    assert text["value"] == pytest.approx(weighted) and general["text_perplexity"] == pytest.approx(text["perplexity"])
    same = forgetting(general, general)
    assert all(f["diff"] == 0 and f["low"] == f["high"] == 0 and not f["worse"] for f in same["families"].values())


def test_probe_data_adds_chat_reading_and_arithmetic(tiny, shared_data):
    model, renderer = tiny
    families = general_ability(model, renderer, 8, torch.device("cpu"), shared_data).as_dict()["families"]
    assert {"chat", "reading", "arithmetic"} <= set(families)
    assert all(families[name]["rows"] == 32 for name in ("chat", "reading", "arithmetic"))
    assert families["chat"]["metric"] == families["arithmetic"]["metric"] == "nll"
    assert families["reading"]["metric"] == "f1" and 0 <= families["reading"]["value"] <= 1


def test_forgetting_intervals_and_budget_read_the_direction_of_each_metric():
    base = {
        "text_perplexity": 10.0,
        "qa_accuracy": 0.5,
        "families": {
            "knowledge": {"metric": "accuracy", "value": 0.5, "scores": [1.0] * 50 + [0.0] * 50},
            "text": {"metric": "nll", "value": 2.0, "scores": [2.0] * 20, "tokens": [10] * 20},
        },
    }
    tuned = {
        "text_perplexity": 12.0,
        "qa_accuracy": 0.3,
        "families": {
            "knowledge": {"metric": "accuracy", "value": 0.3, "scores": [1.0] * 30 + [0.0] * 70},  # 20 lost
            "text": {"metric": "nll", "value": 2.2, "scores": [2.2] * 20, "tokens": [10] * 20},
        },
    }
    result = forgetting(base, tuned)
    knowledge, text = result["families"]["knowledge"], result["families"]["text"]
    assert knowledge["diff"] == pytest.approx(-0.2) and knowledge["high"] < 0 and knowledge["worse"]
    assert text["diff"] == pytest.approx(0.2) and text["low"] == pytest.approx(0.2) and text["worse"]
    assert over_budget(result, 0.25, 0.3) == []
    assert over_budget(result, 0.05, 0.1) == [
        "knowledge accuracy -0.200 (budget -0.05)",
        "text NLL +0.200 per token (budget +0.1)",
    ]


def test_a_budget_that_stops_needs_a_checkpoint_at_every_evaluation(tiny_model_dir, data, tmp_path):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run", eval_every=2, general=True)
    settings["eval"]["forgetting_budget"] = {"stop": True}
    with pytest.raises(ConfigError, match=r"forgetting_budget\.stop keeps the best checkpoint"):
        build_config(settings)
    settings["eval"]["general"] = False
    with pytest.raises(ConfigError, match=r"needs eval\.general"):
        build_config(settings)


def _text_nll_by_step(run_dir) -> dict[int, float]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["families"]["text"]["diff"] for r in records if r.get("split") == "forgetting"}


@pytest.fixture(scope="module")
def text_base(tiny_model_dir, tmp_path_factory):
    """The tiny Llama after learning the bundled general text: a base with something to forget."""
    from importlib import resources

    tmp = tmp_path_factory.mktemp("text-base")
    text = (resources.files("tunesmith") / "assets" / "general_text.jsonl").read_text(encoding="utf-8")
    (tmp / "text.jsonl").write_text(text, encoding="utf-8")
    settings = tiny_config(tiny_model_dir, tmp / "text.jsonl", tmp / "run", max_steps=30, lr=3e-2, method="full")
    settings["data"]["train"][0]["kind"] = "text"
    settings["audit"] = {"allow": ["leakage"]}
    return run_training(build_config(settings), log=lambda *_: None).run_dir


def test_the_budget_is_watched_during_training_and_stops_on_the_best_checkpoint(text_base, data, tmp_path):
    """Continuing from a base that knows the general text, a first run measures how that text's NLL rises step by
    step; a budget between two of those values then stops the second run there, and final/ is the best checkpoint
    still within it."""
    settings = tiny_config(
        text_base, data, tmp_path / "watch", max_steps=8, eval_every=2, save_every=2, lr=3e-2, general=True
    )
    settings["train"]["keep_checkpoints"] = 4
    settings["eval"]["forgetting_budget"] = {"max_drop": 1.0, "max_nll_increase": 100.0}
    watched = run_training(build_config(settings), log=lambda *_: None)
    drift = _text_nll_by_step(watched.run_dir)
    assert sorted(drift) == [2, 4, 6]
    assert watched.tuned["forgetting"]["over_budget"] == []
    assert 0 < drift[2] < drift[6], drift  # training on other text pulls the general text away as it goes
    limit = (drift[2] + drift[4]) / 2 if drift[4] > drift[2] else (drift[2] + drift[6]) / 2
    settings["output"]["dir"] = str(tmp_path / "stop")
    settings["eval"]["forgetting_budget"] = {"max_drop": 1.0, "max_nll_increase": limit, "stop": True}
    lines: list[str] = []
    stopped = run_training(build_config(settings), log=lines.append)
    stop = stopped.tuned["budget_stop"]
    within = [s for s in sorted(drift) if drift[s] <= limit]
    assert stop["stopped_at"] == min(s for s in drift if drift[s] > limit)
    assert stop["kept_step"] in within and stop["kept_step"] < stop["stopped_at"]
    assert any("the forgetting budget is exceeded" in line for line in lines)
    assert stopped.steps == stop["kept_step"]
    # final/ holds the kept checkpoint's weights: its held-out loss is the one recorded at that evaluation
    evals = [json.loads(x) for x in (tmp_path / "stop" / "metrics.jsonl").read_text().splitlines()]
    at_kept = next(r for r in evals if r.get("split") == "eval" and r["step"] == stop["kept_step"])
    assert stopped.tuned["metrics"]["loss"] == pytest.approx(at_kept["loss"], abs=1e-5)


def test_a_budget_exceeded_before_any_checkpoint_within_it_is_one_error(text_base, data, tmp_path):
    settings = tiny_config(
        text_base, data, tmp_path / "run", max_steps=6, eval_every=2, save_every=2, lr=3e-2, general=True
    )
    settings["eval"]["forgetting_budget"] = {"max_drop": 1.0, "max_nll_increase": 1e-9, "stop": True}
    with pytest.raises(RunDirError, match=r"exceeded at step 2 .* and no kept checkpoint is within it"):
        run_training(build_config(settings), log=lambda *_: None)
