"""Task scoring counts every gold answer of a row, and numeric answers compare as numbers: `run_task` end to end on
loaded rows, with the generations fixed (the model is not what is tested here), then the bootstrap and the report."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.config import DatasetSpec, Kind, TaskConfig
from tunesmith.data.formats import Example, RowProblem, RowRules
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import IGNORE, Renderer
from tunesmith.eval import tasks
from tunesmith.eval.tasks import compare, run_task, task_result
from tunesmith.report.task_html import changed_section

GOLDS = ["Santa Clara, California", "Levi's Stadium", "the San Francisco Bay Area"]
TLDRS = [
    "We propose a generative model for incremental class learning that stores no past examples.",
    "FearNet learns new classes without forgetting old ones and without a replay buffer.",
]


def scored(monkeypatch, renderer: Renderer, pairs, task: TaskConfig, answers: list[str]) -> tasks.TaskResult:
    """run_task with the generation for row i fixed to answers[i]."""
    by_prompt = {
        tuple(renderer.prompt_ids(renderer.first_turn(ex, spec.system)[0])): answer
        for (ex, spec), answer in zip(pairs, answers, strict=True)
    }

    def generate(model, tokenizer, prompts, max_new_tokens, batch_size, device, stops, progress=None):
        return [by_prompt[tuple(p)] for p in prompts]

    monkeypatch.setattr(tasks, "generate_sorted", generate)
    return run_task(torch.nn.Identity(), renderer, pairs, task, 4, torch.device("cpu"))


@pytest.fixture
def renderer(tiny_tokenizer) -> Renderer:
    return Renderer(tiny_tokenizer)


def squad_file(path):
    qas = [
        {"id": "q1", "question": "Where was Super Bowl 50 played?", "answers": [{"text": g} for g in GOLDS]},
        {"id": "q2", "question": "Who won Super Bowl 50?", "answers": [{"text": "Denver Broncos"}]},
    ]
    doc = {"data": [{"title": "Super_Bowl_50", "paragraphs": [{"context": "Super Bowl 50 was ...", "qas": qas}]}]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_third_gold_answer_predicted_exactly_scores_exact_match_1(monkeypatch, renderer, tmp_path):
    spec = DatasetSpec(
        path=str(squad_file(tmp_path / "squad.json")),
        kind="completion",
        template="{context}\n\nQuestion: {question}",
        fields={"answer": "completion", "answers": "references"},
    )
    examples = load_dataset(spec).examples
    assert [ex.completion for ex in examples] == [GOLDS[0], "Denver Broncos"]  # the first answer is trained
    assert examples[0].references == GOLDS and examples[1].references is None
    # Loaded with no mapping at all, SQuAD's answers are the references too.
    assert load_dataset(DatasetSpec(path=spec.path)).examples[0].references == GOLDS
    pairs = [(ex, spec) for ex in examples]
    task = TaskConfig(type="qa", bootstrap_resamples=200)
    tuned = scored(monkeypatch, renderer, pairs, task, [GOLDS[2], "Denver Broncos"])
    assert tuned.references == [GOLDS, "Denver Broncos"]
    assert tuned.metrics == {"exact_match": 1.0, "f1": 1.0}
    # The paired bootstrap scores the same rows against the same lists of references.
    base = scored(monkeypatch, renderer, pairs, task, ["Denver", "Denver Broncos"])
    assert base.metrics["exact_match"] == 0.5
    diff = compare(base, tuned, task)["exact_match"]
    assert diff["base"] == 0.5 and diff["tuned"] == 1.0 and diff["low"] <= diff["diff"] == 0.5 <= diff["high"]
    # eval/*.json round trip, and the report lists every gold answer of the row.
    saved = json.loads(json.dumps(tuned.to_json()))
    assert task_result(saved).references == [GOLDS, "Denver Broncos"]
    page = "".join(changed_section(base.to_json(), saved))
    assert " | ".join(GOLDS).replace("'", "&#x27;") in page and "(1 of 2)" in page


def test_a_list_valued_target_trains_the_first_and_scores_rouge_against_the_best(monkeypatch, renderer, tmp_path):
    path = tmp_path / "scitldr.jsonl"
    path.write_text(json.dumps({"source": ["FearNet is a model.", "It learns."], "target": TLDRS}) + "\n")
    spec = DatasetSpec(
        path=str(path), kind="completion", template="Summarize.\n\n{source}", fields={"target": "completion"}
    )
    (example,) = load_dataset(spec).examples
    encoded = renderer.encode(example)
    trained = renderer.tokenizer.decode(
        [t for t, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab != IGNORE]
    )
    assert example.completion == TLDRS[0] and TLDRS[0] in trained and TLDRS[1] not in trained
    task = TaskConfig(type="summarization")
    result = scored(monkeypatch, renderer, [(example, spec)], task, [TLDRS[1]])  # the second TLDR, word for word
    assert result.metrics["rouge1"] == pytest.approx(1.0) and result.metrics["rougeL"] == pytest.approx(1.0)
    assert result.references == [TLDRS] and example.references == TLDRS


def test_numbers_compare_as_numbers_and_the_report_shows_both_values(monkeypatch, renderer, tmp_path):
    golds = ["So -7 it is.\n#### -7", "#### 18", "#### 18", "#### 1,234"]
    path = tmp_path / "gsm.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "answer": a}) + "\n" for i, a in enumerate(golds)))
    spec = DatasetSpec(path=str(path))
    pairs = [(ex, spec) for ex in load_dataset(spec).examples]
    task = TaskConfig(type="qa", parse="number", bootstrap_resamples=200)
    tuned = scored(monkeypatch, renderer, pairs, task, ["#### 7", "It is 1.8", "She pays $18.00 a day.", "#### 1234"])
    assert tuned.references == ["-7", "18", "18", "1234"]
    assert tuned.predictions == ["7", "1.8", "18.00", "1234"]
    assert tuned.metrics == {"exact_match": 0.5, "f1": 0.5}  # -7 ≠ 7 and 18 ≠ 1.8; $18.00 = 18 and 1,234 = 1234
    assert tuned.prediction_numbers == ["7", "1.8", "18", "1234"] and tuned.reference_numbers == tuned.references
    base = scored(monkeypatch, renderer, pairs, task, ["-7", "18", "nothing", "#### 1234"])
    diff = compare(base, tuned, task)["exact_match"]
    assert diff["base"] == 0.75 and diff["tuned"] == 0.5  # the bootstrap uses the same numeric per-row scores
    page = "".join(changed_section(base.to_json(), tuned.to_json()))
    assert "18.00 (= 18)" in page and "(unreadable)" in page
    a_baseline = {**base.to_json(), "prediction_numbers": [], "reference_numbers": []}  # saves no numbers
    assert "".join(changed_section(a_baseline, tuned.to_json())) == page


def test_old_eval_files_still_read():
    old = {
        "task": "qa",
        "metrics": {"exact_match": 1.0},
        "generations": ["a"],
        "predictions": ["a"],
        "references": ["a"],
    }
    result = task_result(old)
    assert result.references == ["a"] and result.reference_numbers == [] and result.prediction_numbers == []
    assert "a" in "".join(changed_section({**old, "predictions": ["b"]}, old))


def test_references_field_layouts():
    rules = RowRules(Kind.completion, {"q": "prompt", "a": "completion", "gold": "references"})
    hf = rules.example({"q": "x", "a": "A", "gold": {"text": ["A", "B"], "answer_start": [0, 4]}}, "f", 1)
    assert hf.references == ["A", "B"]
    assert rules.example({"q": "x", "a": "A", "gold": "B"}, "f", 2).references == ["A", "B"]
    assert rules.example({"q": "x", "a": "A", "gold": ["A"]}, "f", 3).references is None  # only the target
    with pytest.raises(RowProblem, match="gold"):
        rules.example({"q": "x", "a": "A", "gold": [1, 2]}, "f", 4)
    with pytest.raises(RowProblem, match="references apply to completion and instruction rows"):
        RowRules(Kind.classification, {"t": "text", "y": "label", "g": "references"}).example(
            {"t": "x", "y": "1"}, "f", 5
        )
    labelled = RowRules(Kind.completion, {"a": "completion"}, labels={"0": "no", "1": "yes"})
    assert labelled.example({"prompt": "p", "a": ["1", "0"]}, "f", 6).references is None  # a label is one answer
    assert Example(Kind.completion, "f", 1).references is None
