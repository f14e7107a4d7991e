"""`tunesmith select` on two tiny Llamas of different sizes: every candidate gets the same rows and steps, its
zero-shot and probed scores with intervals, and the verdict follows the stated rule.

pytest tests/unit/test_select.py -q
"""

from __future__ import annotations

import json

import pytest
from test_classify import head_config, write_toy

from tunesmith.config import build_config
from tunesmith.eval.bootstrap import metric_interval
from tunesmith.models.registry import ModelNotFound
from tunesmith.recipes.select import SelectError, run_select


@pytest.fixture(scope="module")
def small_model_dir(tiny_model_dir, tmp_path_factory):
    """A one-layer sibling of the tiny Llama (same tokenizer): the cheaper candidate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.model.layers = model.model.layers[:1]
    model.config.num_hidden_layers = 1
    folder = tmp_path_factory.mktemp("small") / "small-llama"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_select_scores_every_candidate_alike_and_explains_the_winner(tiny_model_dir, small_model_dir, tmp_path):
    data = write_toy(tmp_path / "toy.jsonl")
    cfg = build_config(head_config(tiny_model_dir, data, tmp_path / "run", max_steps=8))
    bases = [str(tiny_model_dir), str(small_model_dir)]
    summary = run_select(cfg, bases, tmp_path / "select", steps=4, log=lambda *_: None)

    rows = summary["candidates"]
    assert [r["base"] for r in rows] == bases and summary["steps"] == 4
    assert rows[0]["parameters"] > rows[1]["parameters"]
    for row in rows:
        run = tmp_path / "select" / row["run_dir"]
        tuned = json.loads((run / "eval" / "tuned.json").read_text())
        base = json.loads((run / "eval" / "base.json").read_text())
        assert (
            tuned["task"]["references"]
            == json.loads((tmp_path / "select" / rows[0]["run_dir"] / "eval" / "tuned.json").read_text())["task"][
                "references"
            ]
        )  # the same held-out rows for every candidate
        t = row["tuned"]
        assert t["low"] <= t["value"] <= t["high"] and t["value"] == tuned["task"]["metrics"]["accuracy"]
        assert row["zero_shot"]["value"] == base["baselines"][base["strongest"]]["metrics"]["accuracy"]
        assert row["gain"]["diff"] == pytest.approx(t["value"] - row["zero_shot"]["value"])
        assert row["tokens_per_s"] > 0 and row["peak_memory_mb"] > 0 and row["wall_seconds"] > 0
    top = max(r["tuned"]["value"] for r in rows)
    winner = next(r for r in rows if r["base"] == summary["winner"])
    if winner["tuned"]["value"] == top:  # the best score; a tie goes to the one with fewer parameters
        assert summary["reason"].startswith("best accuracy")
        tied = [r for r in rows if r["tuned"]["value"] == top]
        assert len(tied) == 1 or ("tied with" in summary["reason"] and winner["base"] == bases[1])
    else:  # the cheaper candidate, only because the paired interval cannot separate them
        assert "cannot be told apart" in summary["reason"] and summary["difference"]["low"] <= 0
        assert summary["winner"] == bases[1]
    page = (tmp_path / "select" / "select.html").read_text()
    assert "Winner" in page and "95% interval" in page and f"{rows[0]['run_dir']}/report.html" in page


def test_select_refuses_before_training(tiny_model_dir, tmp_path):
    data = write_toy(tmp_path / "toy.jsonl")
    cfg = build_config(head_config(tiny_model_dir, data, tmp_path / "run"))
    with pytest.raises(SelectError, match="at least two bases"):
        run_select(cfg, [str(tiny_model_dir)], tmp_path / "select")
    with pytest.raises(SelectError, match="names one candidate twice"):
        run_select(cfg, [str(tiny_model_dir), str(tiny_model_dir)], tmp_path / "select")
    with pytest.raises(ModelNotFound, match="no-such-model"):
        run_select(cfg, [str(tiny_model_dir), "no-such-model"], tmp_path / "select")
    assert not (tmp_path / "select").exists()


def test_metric_interval_is_the_bootstrap_of_one_model():
    predictions = ["a", "b", "a", "a"] * 25
    references = ["a", "b", "b", "a"] * 25
    value, low, high = metric_interval("classification", "accuracy", predictions, references, ["a", "b"])
    assert value == 0.75 and low < 0.75 < high and high - low < 0.25
    f1, f1_low, f1_high = metric_interval(
        "classification", "macro_f1", predictions, references, ["a", "b"], n_resamples=200
    )
    assert f1_low < f1 < f1_high
    assert metric_interval("classification", "accuracy", references, references, ["a", "b"]) == (1.0, 1.0, 1.0)
