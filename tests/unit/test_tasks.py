"""Task scoring of base vs tuned: predictions read from generations, metrics, bootstrap interval, run files."""

from __future__ import annotations

import json

import pytest
from tiny_runs import tiny_config

from tunesmith.config import ConfigError, TaskConfig, build_config
from tunesmith.eval.tasks import read_prediction
from tunesmith.recipes.train import run_training


def test_read_prediction_per_parse_mode():
    labels = TaskConfig(type="classification", labels=["negative", "positive"])
    assert read_prediction("Sentiment: Positive.\nBecause...", labels) == "positive"
    assert read_prediction("I cannot tell.", labels) is None
    assert read_prediction("\nParis is the capital.\nMore.", TaskConfig(type="qa")) == "Paris is the capital."
    assert read_prediction("so 3 + 4 = 7\n#### 7", TaskConfig(type="qa", parse="number")) == "7"
    assert read_prediction("  A short summary. ", TaskConfig(type="summarization")) == "A short summary."


def test_classification_task_needs_labels():
    # Checked on the whole config: the labels may be given in task.labels or, for a classifier, method.labels.
    with pytest.raises(ConfigError, match=r"task\.labels: classification needs at least two"):
        build_config({"task": {"type": "classification", "labels": ["only"]}})


def parity_run(model_dir, tmp_path, rows: int, steps: int, resamples: int, general: bool = False):
    """A classification-as-generation run on "is N even or odd?", a quarter of the rows held out."""
    data = tmp_path / "parity.jsonl"
    examples = [{"prompt": f"is {n} even or odd?", "completion": "even" if n % 2 == 0 else "odd"} for n in range(rows)]
    data.write_text("".join(json.dumps(r) + "\n" for r in examples), encoding="utf-8")
    cfg = tiny_config(model_dir, data, tmp_path / "run", max_steps=steps, general=general)
    labels = ["even", "odd"]
    cfg["task"] = {"type": "classification", "labels": labels, "max_new_tokens": 3, "bootstrap_resamples": resamples}
    cfg["data"]["eval_fraction"] = 0.25
    return run_training(build_config(cfg), log=lambda *_: None)


def test_run_scores_base_and_tuned_on_the_same_rows_with_an_interval(tiny_model_dir, tmp_path):
    run = parity_run(tiny_model_dir, tmp_path, rows=40, steps=4, resamples=200)
    base, tuned = run.base["task"], run.tuned["task"]
    assert base["references"] == tuned["references"] and len(base["references"]) == 10
    assert set(base["references"]) <= {"even", "odd"}
    for metric in ("accuracy", "macro_f1"):
        d = run.tuned["comparison"][metric]
        assert d["low"] <= d["diff"] <= d["high"]
        assert d["diff"] == pytest.approx(d["tuned"] - d["base"])
        strongest = run.base["baselines"][run.base["strongest"]]  # the headline is against the strongest base
        assert d["base"] == pytest.approx(strongest["metrics"][metric])
        assert d["tuned"] == pytest.approx(tuned["metrics"][metric])
    assert "## Task: classification" in (run.run_dir / "MODEL_CARD.md").read_text()


def test_report_html_is_self_contained_with_curves_and_confusion(tiny_model_dir, tmp_path):
    run = parity_run(tiny_model_dir, tmp_path, rows=24, steps=3, resamples=100)
    page = (run.run_dir / "report.html").read_text()
    assert "<polyline" in page and "held-out loss" in page  # the loss curves
    assert "Confusion matrix, tuned" in page and "reference \\ predicted" in page
    assert "95% interval" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_general_ability_answer_matching():
    from tunesmith.eval.general import answered

    assert answered("The capital of France is Paris.\nIt is large.", "Paris")
    assert not answered("Parisian food is great.", "Paris")
    assert not answered("I think so.\nParis", "Paris")  # only the first line counts
    assert answered("7", "7") and not answered("17", "7")


def test_every_run_reports_forgetting(tiny_model_dir, tmp_path):
    run = parity_run(tiny_model_dir, tmp_path, rows=16, steps=2, resamples=100, general=True)
    for side in (run.base, run.tuned):
        general = side["general"]
        assert general["text_tokens"] > 1000 and general["qa_rows"] == 200
        assert set(general["families"]) == {"text", "knowledge"}
        assert general["text_perplexity"] > 1 and 0 <= general["qa_accuracy"] <= 1
    change = run.tuned["forgetting"]
    assert change["text_perplexity"] == run.tuned["general"]["text_perplexity"] - run.base["general"]["text_perplexity"]
    card = (run.run_dir / "MODEL_CARD.md").read_text()
    assert "forgetting: general text (NLL per token)" in card and "forgetting: general questions (accuracy)" in card


def test_eval_command_scores_a_run_against_its_base(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from tunesmith.cli import main

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))

    run = parity_run(tiny_model_dir, tmp_path, rows=16, steps=2, resamples=100)
    held_out = tmp_path / "held.jsonl"
    rows = [{"prompt": f"is {n} even or odd?", "completion": "even" if n % 2 == 0 else "odd"} for n in range(30, 36)]
    held_out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "task: {type: classification, labels: [even, odd], max_new_tokens: 3, bootstrap_resamples: 100}\n",
        encoding="utf-8",
    )
    assert main(["eval", str(run.run_dir), "--config", str(cfg), "--data", str(held_out)]) == 0
    scores = json.loads((run.run_dir / "eval" / "eval.json").read_text())
    assert scores["rows"] == 6 and {"base", "tuned", "comparison"} <= set(scores)
    assert scores["base"]["task"]["references"] == scores["tuned"]["task"]["references"]
    # As in `train`: the base is also ranked by label likelihood, and tuned is compared with the strongest base.
    assert {"generation_zero_shot", "likelihood_zero_shot"} <= set(scores["base"]["baselines"])
    assert scores["comparison_base"] == scores["base"]["strongest"]
    assert scores["tuned"]["metrics"]["rows"] == 6 and "general" in scores["tuned"]
    # The run's method evaluates both as `train` does: side-by-side answers and forgetting, not a drifted copy.
    assert len(scores["base"]["samples"]) == len(scores["tuned"]["samples"]) == 3
    assert set(scores["tuned"]["forgetting"]) == {"text_perplexity", "qa_accuracy", "families"}
    out = capsys.readouterr().out
    assert "accuracy" in out and "evaluation read from" not in out
    # Scored again on the same rows with the same settings: the base's evaluation is read back, to the same numbers.
    assert main(["eval", str(run.run_dir), "--config", str(cfg), "--data", str(held_out)]) == 0
    again = json.loads((run.run_dir / "eval" / "eval.json").read_text())
    assert "base model: evaluation read from" in capsys.readouterr().out
    assert again["base"].pop("reused")["key"] and again["base"] == scores["base"]
    assert again["tuned"]["task"] == scores["tuned"]["task"]


def test_slice_metrics_and_largest_gap():
    from tunesmith.eval.slices import slice_metrics

    values = ["a"] * 10 + ["b"] * 10 + ["c"] * 3
    refs = ["x"] * 23
    preds = ["x"] * 9 + ["y"] + ["x"] * 5 + ["y"] * 5 + ["y"] * 3
    report = slice_metrics("classification", ("accuracy",), preds, refs, values, ["x", "y"], min_rows=10)
    assert report["slices"]["a"] == {"n": 10, "accuracy": 0.9}
    assert report["slices"]["c"]["accuracy"] == 0.0  # listed, but too small to be called the worst
    assert report["gaps"]["accuracy"] == {"high": "a", "low": "b", "gap": pytest.approx(0.4)}


def test_prompt_variant_rewrites_the_first_user_turn():
    from tunesmith.config import Kind
    from tunesmith.data.formats import Example
    from tunesmith.eval.variants import VariantError, with_prompt

    row = {"sentence": "a fine film", "label": 1, "scores": [1, 2], "notes": ["good", "short"]}
    ex = Example(Kind.completion, "d.tsv", 4, prompt="Review: a fine film", completion="positive", row=row)
    assert with_prompt(ex, "{prompt}\nOne word:").prompt == "Review: a fine film\nOne word:"
    assert with_prompt(ex, "Is '{sentence}' positive?").prompt == "Is 'a fine film' positive?"
    assert with_prompt(ex, "{notes} {scores}").prompt == "good\nshort [1, 2]"  # lists of strings go line by line
    assert ex.prompt == "Review: a fine film"  # the original row is untouched
    chat = Example(
        Kind.chat,
        "c.jsonl",
        1,
        messages=[
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
        ],
    )
    assert with_prompt(chat, "<{prompt}>").messages[1]["content"] == "<hi>"
    with pytest.raises(VariantError, match=r"d\.tsv:4"):
        with_prompt(ex, "{title}")


def test_mixed_run_reports_each_dataset_slices_and_prompt_sensitivity(tiny_model_dir, tmp_path):
    """Two datasets mixed 3:1, a slice column, and two prompt variants: everything lands in eval/*.json and the
    report."""
    paths = []
    for name, numbers in (("even_odd", range(0, 40)), ("parity", range(100, 120))):
        rows = [
            {
                "prompt": f"is {n} even or odd?",
                "completion": "even" if n % 2 == 0 else "odd",
                "size": "big" if n > 20 else "small",
            }
            for n in numbers
        ]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    cfg = tiny_config(tiny_model_dir, paths[0], tmp_path / "run", max_steps=3)
    cfg["data"]["train"] = [{"path": str(paths[0]), "weight": 3}, {"path": str(paths[1]), "weight": 1}]
    cfg["data"]["eval_fraction"] = 0.25
    cfg["data"]["slice_field"] = "size"
    cfg["task"] = {
        "type": "classification",
        "labels": ["even", "odd"],
        "max_new_tokens": 3,
        "bootstrap_resamples": 100,
        "prompt_variants": ["{prompt} Answer:", "Number parity question: {prompt}"],
    }
    run = run_training(build_config(cfg), log=lambda *_: None)
    for side in (run.base, run.tuned):
        assert set(side["metrics"]["datasets"]) == {"even_odd", "parity"}
        slices = side["task"]["slices"]
        assert set(slices) == {"size", "dataset"} and set(slices["dataset"]["slices"]) == {"even_odd", "parity"}
        assert sum(s["n"] for s in slices["size"]["slices"].values()) == len(side["task"]["references"]) == 15
        sensitivity = side["task"]["prompt_sensitivity"]
        assert len(sensitivity["scores"]["accuracy"]) == 3
        assert sensitivity["scores"]["accuracy"][0] == side["task"]["metrics"]["accuracy"]
    page = (run.run_dir / "report.html").read_text()
    assert (
        "Held-out loss per dataset" in page and "Per slice: size" in page and "Prompt sensitivity (3 prompts)" in page
    )
