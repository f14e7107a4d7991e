"""Task scoring of base vs tuned: predictions read from generations, metrics, bootstrap interval, run files."""

from __future__ import annotations

import json

import pytest
from tiny_runs import tiny_config

from tunesmith.config import TaskConfig, build_config
from tunesmith.eval.tasks import read_prediction
from tunesmith.training.recipe import run_training


def test_read_prediction_per_parse_mode():
    labels = TaskConfig(type="classification", labels=["negative", "positive"])
    assert read_prediction("Sentiment: Positive.\nBecause...", labels) == "positive"
    assert read_prediction("I cannot tell.", labels) is None
    assert read_prediction("\nParis is the capital.\nMore.", TaskConfig(type="qa")) == "Paris is the capital."
    assert read_prediction("so 3 + 4 = 7\n#### 7", TaskConfig(type="qa", parse="number")) == "7"
    assert read_prediction("  A short summary. ", TaskConfig(type="summarization")) == "A short summary."


def test_classification_task_needs_labels():
    with pytest.raises(ValueError, match=r"task\.labels"):
        TaskConfig(type="classification", labels=["only"])


def test_run_scores_base_and_tuned_on_the_same_rows_with_an_interval(tiny_model_dir, tmp_path):
    rows = [{"prompt": f"is {n} even or odd?", "completion": "even" if n % 2 == 0 else "odd"} for n in range(40)]
    data = tmp_path / "parity.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=4)
    cfg["task"] = {"type": "classification", "labels": ["even", "odd"], "max_new_tokens": 3, "bootstrap_resamples": 200}
    cfg["data"]["eval_fraction"] = 0.25
    run = run_training(build_config(cfg), log=lambda *_: None)
    base, tuned = run.base["task"], run.tuned["task"]
    assert base["references"] == tuned["references"] and len(base["references"]) == 10
    assert set(base["references"]) <= {"even", "odd"}
    for metric in ("accuracy", "macro_f1"):
        d = run.tuned["comparison"][metric]
        assert d["low"] <= d["diff"] <= d["high"]
        assert d["diff"] == pytest.approx(d["tuned"] - d["base"])
        assert d["base"] == pytest.approx(base["metrics"][metric]) and d["tuned"] == pytest.approx(
            tuned["metrics"][metric]
        )
    assert "## Task: classification" in (run.run_dir / "MODEL_CARD.md").read_text()


def test_report_html_is_self_contained_with_curves_and_confusion(tiny_model_dir, tmp_path):
    rows = [{"prompt": f"is {n} even or odd?", "completion": "even" if n % 2 == 0 else "odd"} for n in range(24)]
    data = tmp_path / "parity.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=3)
    cfg["task"] = {"type": "classification", "labels": ["even", "odd"], "max_new_tokens": 3, "bootstrap_resamples": 100}
    cfg["data"]["eval_fraction"] = 0.25
    run = run_training(build_config(cfg), log=lambda *_: None)
    page = (run.run_dir / "report.html").read_text()
    assert "<polyline" in page and "held-out loss" in page  # the loss curves
    assert "Confusion matrix, tuned" in page and "reference \\ predicted" in page
    assert "95% interval" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
