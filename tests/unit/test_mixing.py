"""Nested JSON layouts, id selections, grouped and stratified held-out splits, and weighted dataset mixtures.

pytest tests/unit/test_mixing.py -q
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.config import ConfigError, DatasetSpec, build_config
from tunesmith.data.formats import Example, Kind
from tunesmith.data.loading import DataError, load_dataset
from tunesmith.data.templates import Encoded
from tunesmith.training.order import build_order, epoch_order, mixture_order, quotas
from tunesmith.training.prepare import DataRefused, held_out_rows, prepare_data

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The Rhine flows north. It is long.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Where does it flow?",
                            "answers": [{"text": "north", "answer_start": 16}],
                        },
                        {"id": "q2", "question": "Is it long?", "answers": [{"text": "long", "answer_start": 29}]},
                    ],
                },
                {"context": "The Nile is in Africa.", "qas": [{"id": "q3", "question": "Where?", "answers": []}]},
            ],
        }
    ],
}


def test_squad_json_is_flattened_one_row_per_question(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    spec = DatasetSpec(
        path=str(path), kind="completion", template="{context}\nQ: {question}", fields={"answer": "completion"}
    )
    result = load_dataset(spec)
    assert [ex.prompt for ex in result.examples] == [
        "The Rhine flows north. It is long.\nQ: Where does it flow?",
        "The Rhine flows north. It is long.\nQ: Is it long?",
    ]
    assert [ex.completion for ex in result.examples] == ["north", "long"]
    assert [ex.column("paragraph") for ex in result.examples] == ["Rivers#0", "Rivers#0"]
    # The unanswerable question is a row error naming its field, not silently dropped.
    assert [(e.line, e.field) for e in result.errors] == [(3, "answer")]


def test_squad_json_without_a_template_asks_the_question_with_its_context(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    result = load_dataset(DatasetSpec(path=str(path)))
    # Extractive QA stays extractive: the paragraph leads the prompt, the first reference is the target.
    assert [ex.prompt for ex in result.examples] == [
        "The Rhine flows north. It is long.\n\nWhere does it flow?",
        "The Rhine flows north. It is long.\n\nIs it long?",
    ]
    assert [ex.completion for ex in result.examples] == ["north", "long"]
    # A fields mapping is the user's choice, even a closed-book one.
    mapped = load_dataset(DatasetSpec(path=str(path), fields={"question": "prompt", "answer": "completion"}))
    assert mapped.examples[0].prompt == "Where does it flow?"


def test_object_of_records_and_id_selection(tmp_path: Path) -> None:
    data = tmp_path / "pqa.json"
    records = {
        str(k): {"QUESTION": f"q{k}?", "CONTEXTS": [f"a{k}.", f"b{k}."], "final_decision": "yes"} for k in range(6)
    }
    data.write_text(json.dumps(records), encoding="utf-8")
    ids = tmp_path / "test_ids.json"
    ids.write_text(json.dumps({"1": "yes", "4": "no"}), encoding="utf-8")
    common = {"path": str(data), "kind": "completion", "template": "{CONTEXTS}\n{QUESTION}"}
    common["fields"] = {"final_decision": "completion"}
    kept = load_dataset(DatasetSpec(**common, ids={"file": str(ids), "field": "_key"}))
    assert [ex.column("_key") for ex in kept.examples] == ["1", "4"]
    assert kept.examples[0].prompt == "a1.\nb1.\nq1?"  # a list of strings fills its placeholder line by line
    dropped = load_dataset(DatasetSpec(**common, ids={"file": str(ids), "field": "_key", "exclude": True}))
    assert [ex.column("_key") for ex in dropped.examples] == ["0", "2", "3", "5"]
    lines = tmp_path / "ids.txt"
    lines.write_text("2\n\n5\n", encoding="utf-8")
    assert len(load_dataset(DatasetSpec(**common, ids={"file": str(lines), "field": "_key"})).examples) == 2
    with pytest.raises(DataError, match=r"ids.field 'pmid' is not a column"):
        load_dataset(DatasetSpec(**common, ids={"file": str(ids), "field": "pmid"}))


def test_list_target_trains_on_its_first_reference(tmp_path: Path) -> None:
    path = tmp_path / "tldr.jsonl"
    path.write_text(json.dumps({"source": ["One.", "Two."], "target": ["first tldr", "second"]}) + "\n")
    spec = DatasetSpec(path=str(path), kind="completion", template="{source}", fields={"target": "completion"})
    (ex,) = load_dataset(spec).examples
    assert (ex.prompt, ex.completion) == ("One.\nTwo.", "first tldr")


def _pairs(labels: list[str], groups: list[str] | None = None):
    spec = DatasetSpec(path="x.jsonl")
    rows = []
    for i, label in enumerate(labels):
        row = {"text": f"t{i}", "label": label, "g": groups[i] if groups else str(i)}
        rows.append((Example(Kind.classification, "x.jsonl", i + 1, text=row["text"], label=label, row=row), spec))
    return rows, [spec]


def test_held_out_split_is_stratified_by_label() -> None:
    labels = ["hate"] * 10 + ["offensive"] * 80 + ["neither"] * 30
    pairs, specs = _pairs(labels)
    held = held_out_rows(pairs, specs, 12, seed=1, split_by=None)
    assert Counter(labels[i] for i in held) == {"hate": 1, "offensive": 8, "neither": 3}
    assert held == held_out_rows(pairs, specs, 12, seed=1, split_by=None)  # a pure function of the seed
    assert held != held_out_rows(pairs, specs, 12, seed=2, split_by=None)


def test_held_out_split_keeps_groups_together() -> None:
    groups = [f"p{i // 5}" for i in range(60)]  # 12 paragraphs of 5 questions
    pairs, specs = _pairs(["x"] * 60, groups)
    held = held_out_rows(pairs, specs, 12, seed=0, split_by="g")
    held_groups = {groups[i] for i in held}
    assert len(held) >= 12 and len(held_groups) == len(held) // 5
    assert all(groups[i] not in held_groups for i in range(60) if i not in held)
    with pytest.raises(DataRefused, match=r"x.jsonl:1: nope: missing"):
        held_out_rows(pairs, specs, 12, seed=0, split_by="nope")


def test_held_out_split_never_puts_one_text_on_both_sides() -> None:
    spec = DatasetSpec(path="x.jsonl")
    # 40 texts, each in 3 spellings that normalise alike ("Great film", "great film!", "GREAT  film.").
    spellings = ("{} film {}", "{} FILM {}!", "  {} film, {}.")
    pairs = [
        (Example(Kind.classification, "x.jsonl", 3 * t + k + 1, text=form.format("great", t), label=str(t % 2)), spec)
        for t in range(40)
        for k, form in enumerate(spellings)
    ]
    for seed in range(5):
        held = held_out_rows(pairs, [spec], 12, seed=seed, split_by=None)
        assert held and all({3 * t, 3 * t + 1, 3 * t + 2} <= held for t in range(40) if 3 * t in held)
        assert len(held) == 12  # four whole texts of three rows
        assert held == held_out_rows(pairs, [spec], 12, seed=seed, split_by=None)


def test_a_text_links_split_by_groups() -> None:
    # Paragraph p0 and p1 share one question text: the two paragraphs are one group, held out or kept together.
    groups = ["p0", "p0", "p1", "p1"] + [f"q{i}" for i in range(16)]
    pairs, specs = _pairs(["x"] * 20, groups)
    pairs[2][0].text = pairs[0][0].text.upper()
    for seed in range(8):
        held = held_out_rows(pairs, specs, 4, seed=seed, split_by="g")
        assert len({i in held for i in range(4)}) == 1


def _write_rows(path: Path, prompts: list[str]) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "completion": "ok"}) + "\n" for p in prompts), encoding="utf-8")
    return str(path)


class _Encoder:
    """Stands in for the chat-template renderer: every row is two prompt tokens and one trained token."""

    def encode(self, example: Example, system: str | None) -> Encoded:
        return Encoded([1, 2, 3], [-100, -100, 3], example.source, example.line)


def test_weighted_mixture_refuses_a_dataset_left_without_training_rows(tmp_path: Path) -> None:
    big = _write_rows(tmp_path / "big.jsonl", [f"question {i}" for i in range(20)])
    # Two copies of one text: one group, and the held-out split takes that dataset's share as a whole group.
    small = _write_rows(tmp_path / "small.jsonl", ["the same question", "The same question!"])
    data = {"train": [{"path": big, "weight": 1}, {"path": small, "name": "tiny", "weight": 1}], "eval_fraction": 0.5}
    with pytest.raises(DataRefused, match=r"dataset 'tiny' has no training rows \(2 loaded, 2 held out for eval"):
        prepare_data(build_config({"data": data}), _Encoder())  # type: ignore[arg-type]
    # Without weights the rows are a plain permutation: no empty draws, so nothing to refuse.
    data["train"] = [{"path": big}, {"path": small, "name": "tiny"}]
    prepared = prepare_data(build_config({"data": data}), _Encoder())  # type: ignore[arg-type]
    assert prepared.train_sizes() == [10, 0]
    with pytest.raises(ValueError, match="dataset 1 of a weighted mixture has no rows"):
        build_order([10, 0], [1.0, 1.0], seed=0)


def test_single_dataset_order_is_a_permutation() -> None:
    order = build_order([50], [None], seed=1)
    assert order(0) == epoch_order(50, 1, 0) and sorted(order(3)) == list(range(50))


def test_mixture_follows_weights_and_covers_each_dataset() -> None:
    sizes = [40, 10]
    assert quotas(sizes, [1.0, 1.0]) == [25, 25]
    epochs = [mixture_order(sizes, [1.0, 1.0], seed=3, epoch=e) for e in range(4)]
    for order in epochs:
        assert len(order) == 50
        assert sum(i >= 40 for i in order) == 25  # the small dataset is upsampled to half of every epoch
    # The down-sampled dataset gives fresh rows each epoch: 25 distinct now, and all 40 within two epochs.
    assert len({i for i in epochs[0] if i < 40}) == 25
    assert {i for e in epochs[:2] for i in e if i < 40} == set(range(40))
    assert epochs[0] == mixture_order(sizes, [1.0, 1.0], seed=3, epoch=0)
    # No weights given: the natural share, i.e. a plain permutation.
    assert build_order(sizes, [None, None], seed=3)(0) == epoch_order(50, 3, 0)


def test_dataset_names_must_differ_and_split_by_needs_a_split() -> None:
    with pytest.raises(ConfigError, match="both named 'a'"):
        build_config({"data": {"train": [{"path": "x/a.jsonl"}, {"path": "y/a.jsonl"}]}})
    with pytest.raises(ConfigError, match=r"data.split_by"):
        build_config({"data": {"train": [{"path": "a.jsonl"}], "eval": [{"path": "b.jsonl"}], "split_by": "g"}})
    cfg = build_config({"data": {"train": [{"path": "d/train.jsonl"}, {"path": "e/b.jsonl", "weight": 2}]}})
    assert [s.display_name for s in cfg.data.train] == ["d/train", "b"]
