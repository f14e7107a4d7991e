"""Task metrics, the paired bootstrap and the prediction parsers: known values worked out by hand on toy inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunesmith.eval import bootstrap
from tunesmith.eval.bootstrap import (
    bootstrap_metric,
    paired_bootstrap,
    paired_bootstrap_scores,
    paired_bootstrap_stats,
)
from tunesmith.eval.metrics import (
    PER_EXAMPLE_KEYS,
    classification,
    compute,
    per_example,
    perplexity,
    squad_exact_match,
    squad_f1,
    translation,
    translation_stats,
)
from tunesmith.eval.parse import extract_number, first_line, match_label, number_text, number_value, strip_prefix

# --- classification -----------------------------------------------------------------------------------------

ANIMALS = ["cat", "dog", "bird"]
TOY_REFS = ["cat", "cat", "dog", "dog", "bird", "bird"]
TOY_PREDS = ["cat", "dog", "dog", "dog", "bird", "cat"]


def test_three_class_toy_case_matches_hand_computation():
    scores = classification(TOY_PREDS, TOY_REFS, ANIMALS)
    # rows = reference, columns = prediction, both in the caller's order cat, dog, bird
    assert scores.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert scores.accuracy == pytest.approx(4 / 6)
    cat, dog, bird = (scores.per_class[label] for label in ANIMALS)
    assert (cat.precision, cat.recall, cat.f1, cat.support) == pytest.approx((1 / 2, 1 / 2, 1 / 2, 2))
    assert (dog.precision, dog.recall, dog.f1, dog.support) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    assert (bird.precision, bird.recall, bird.f1, bird.support) == pytest.approx((1.0, 1 / 2, 2 / 3, 2))
    assert scores.macro_f1 == pytest.approx((1 / 2 + 0.8 + 2 / 3) / 3)
    assert scores.invalid == 0


def test_label_order_is_the_callers():
    scores = classification(TOY_PREDS, TOY_REFS, ["bird", "dog", "cat"])
    assert scores.confusion == [[1, 0, 1], [0, 2, 0], [0, 1, 1]]
    assert list(scores.per_class) == ["bird", "dog", "cat"]


def test_predictions_outside_the_labels_are_wrong_and_reported():
    preds = ["cat", "Cat", None, "dog", "bird", "I think it is a bird"]
    scores = classification(preds, TOY_REFS, ANIMALS)
    assert scores.accuracy == pytest.approx(3 / 6)
    assert scores.invalid == 3
    assert scores.invalid_by_label == {"cat": 1, "dog": 1, "bird": 1}
    # invalid predictions are absent from the matrix: each row sum + its invalid count = support
    assert scores.confusion == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    for label, row in zip(ANIMALS, scores.confusion, strict=True):
        assert sum(row) + scores.invalid_by_label[label] == scores.per_class[label].support
    # they lower recall of the true class but add a false positive to no class
    assert scores.per_class["cat"].precision == 1.0 and scores.per_class["cat"].recall == 0.5


def test_classification_needs_labels_that_cover_the_references():
    with pytest.raises(ValueError, match="needs `labels`"):
        compute("classification", ["cat"], ["cat"])
    with pytest.raises(ValueError, match=r"reference 1 is 'fish'"):
        classification(["cat", "cat"], ["cat", "fish"], ANIMALS)
    with pytest.raises(ValueError, match="one reference label per row"):
        compute("classification", ["cat"], [["cat", "dog"]], ANIMALS)


def test_compute_flattens_classification_scores():
    out = compute("classification", TOY_PREDS, TOY_REFS, ANIMALS)
    assert out["accuracy"] == pytest.approx(4 / 6) and out["invalid"] == 0.0
    assert out["f1/dog"] == pytest.approx(0.8) and out["support/bird"] == 2.0
    assert all(isinstance(v, float) for v in out.values())


# --- summarization --------------------------------------------------------------------------------------------


def test_rouge_identical_disjoint_and_partial():
    same = compute("summarization", ["the model improves recall"], ["the model improves recall"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    disjoint = compute("summarization", ["apples and pears"], ["quantum field theory"])
    assert disjoint == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    # prediction "the cat sat" against "the cat sat on the mat": unigram P=3/3 R=3/6; bigram P=2/2 R=2/5
    partial = compute("summarization", ["the cat sat"], ["the cat sat on the mat"])
    assert partial["rouge1"] == pytest.approx(2 / 3)
    assert partial["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert partial["rougeL"] == pytest.approx(2 / 3)


def test_rouge_stems_and_takes_the_best_reference():
    # stemmed: [the, cat, run] vs [the, cat, are, run] → P=3/3, R=3/4
    assert compute("summarization", ["the cat runs"], ["the cats are running"])["rouge1"] == pytest.approx(6 / 7)
    multi = per_example("summarization", ["a new method"], [["unrelated words", "a new method"]])
    assert multi["rougeL"] == [1.0]


# --- QA -------------------------------------------------------------------------------------------------------


def test_squad_classic_examples():
    assert squad_exact_match("the cat sat", "cat sat") == 1.0
    assert squad_f1("the cat sat", "cat sat") == 1.0
    # "The cat sat on the mat." → [cat, sat, on, mat] vs [cat, sat]: P=2/4, R=2/2
    assert squad_exact_match("The cat sat on the mat.", "cat sat") == 0.0
    assert squad_f1("The cat sat on the mat.", "cat sat") == pytest.approx(2 / 3)
    assert squad_exact_match("  Denver   Broncos!", "the Denver Broncos") == 1.0
    assert squad_f1("", "Denver Broncos") == 0.0


def test_squad_takes_the_best_gold_answer():
    golds = ["Santa Clara, California", "Levi's Stadium", "Levi's Stadium in the San Francisco Bay Area"]
    assert squad_exact_match("levis stadium", golds) == 1.0
    # [levis, stadium, santa, clara] scores 4/7 against the first answer and 2/3 against the second
    assert squad_f1("Levi's Stadium, Santa Clara", golds) == pytest.approx(max(4 / 7, 2 / 3))
    out = compute("qa", ["the cat sat", "The cat sat on the mat.", None], ["cat sat", ["dog", "cat sat"], "cat"])
    assert out == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 2 / 3 + 0) / 3})


def test_numeric_answers_compare_by_value():
    preds, golds = ["7", "1.8", "$18.00", "1,234", "18", None], ["-7", "18", "18", "1234", ["-7", "4", "18"], "3"]
    rows = per_example("qa", preds, golds, numeric=True)
    assert rows["exact_match"] == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0] and rows["f1"] == rows["exact_match"]
    assert compute("qa", preds, golds, numeric=True) == pytest.approx({"exact_match": 0.5, "f1": 0.5})
    with pytest.raises(ValueError, match="numeric answers are scored for qa"):
        compute("summarization", ["1"], ["1"], numeric=True)


def test_bootstrap_scores_list_references_and_numbers_per_row():
    golds = [["Santa Clara", "Levi's Stadium", "the Bay Area"], "Denver Broncos"]
    d = bootstrap_metric("qa", "exact_match", ["Denver", "Denver Broncos"], ["Bay Area", "Denver Broncos"], golds)
    assert (d.base, d.tuned, d.diff) == (0.5, 1.0, 0.5)
    numbers = bootstrap_metric("qa", "f1", ["-7", "1.8"], ["7", "18.00"], ["-7", "18"], numeric=True, n_resamples=100)
    assert (numbers.base, numbers.tuned) == (0.5, 0.5) and numbers.low <= 0.0 <= numbers.high


# --- translation ----------------------------------------------------------------------------------------------

HYPS = [
    "Two young guys with shaggy hair look at their hands while hanging out in the yard.",
    "Several men in hard hats are operating a giant pulley system.",
    "A little girl climbing into a wooden playhouse.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
]
REFS = [
    "Two young, White males are outside near many bushes.",
    "Several men in hard hats are operating a giant pulley system.",
    "A little girl is climbing into a wooden playhouse.",
    "A man in a blue shirt is standing on a ladder and cleaning a window.",
]


def test_bleu_and_chrf_of_an_identical_corpus_are_100():
    out = compute("translation", REFS, REFS)
    assert out["bleu"] == pytest.approx(100.0) and out["chrf"] == pytest.approx(100.0)
    assert compute("translation", ["xyz qqq"], ["the cat sat on the mat"])["bleu"] == 0.0


def test_rows_may_have_different_numbers_of_references():
    two_refs = compute("translation", HYPS, [[r, h] for r, h in zip(REFS, HYPS, strict=True)])
    assert two_refs["bleu"] == pytest.approx(100.0)
    # an extra reference sharing nothing with the hypothesis changes nothing (sacrebleu pads the others)
    mixed = compute("translation", HYPS, [REFS[0], [REFS[1], "zzz"], REFS[2], REFS[3]])
    assert mixed == pytest.approx(compute("translation", HYPS, REFS), abs=1e-9)


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_sufficient_statistics_reproduce_the_public_corpus_score(metric):
    stats, score_fn = translation_stats(HYPS, REFS, metric)
    assert stats.shape[0] == len(HYPS)
    assert score_fn(stats.sum(axis=0).tolist()) == pytest.approx(translation(HYPS, REFS)[metric], abs=1e-9)
    sub = [0, 0, 2, 3, 3]
    expected = translation([HYPS[i] for i in sub], [REFS[i] for i in sub])[metric]
    assert score_fn(stats[sub].sum(axis=0).tolist()) == pytest.approx(expected, abs=1e-9)


# --- the uniform interface and perplexity ---------------------------------------------------------------------

CASES = {
    "classification": (TOY_PREDS, TOY_REFS, ANIMALS),
    "summarization": (["the cat sat", "a dog ran home"], ["the cat sat on the mat", "the dog ran"], None),
    "qa": (["the cat sat", "Paris"], ["cat sat", ["Paris, France", "paris"]], None),
    "translation": (HYPS, REFS, None),
}


@pytest.mark.parametrize("task", list(CASES))
def test_per_example_means_are_the_corpus_scores_where_keys_agree(task):
    preds, refs, labels = CASES[task]
    corpus, rows = compute(task, preds, refs, labels), per_example(task, preds, refs, labels)
    assert set(rows) == set(PER_EXAMPLE_KEYS[task])
    for key, scores in rows.items():
        assert len(scores) == len(preds)
        if key in corpus:
            assert float(np.mean(scores)) == pytest.approx(corpus[key])


def test_interface_rejects_bad_calls():
    with pytest.raises(ValueError, match="unknown task"):
        compute("ner", ["x"], ["x"])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute("qa", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no examples"):
        compute("qa", [], [])


def test_perplexity():
    assert perplexity(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert perplexity(0.0, 3) == 1.0
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="at least one token"):
        perplexity(1.0, 0)


# --- bootstrap ------------------------------------------------------------------------------------------------


def _fixes_and_breaks(n: int, fixed: int, broken: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-row 0/1 correctness where tuned fixes `fixed` of base's errors and breaks `broken` of its successes:
    the difference in accuracy is exactly (fixed − broken) / n."""
    rng = np.random.default_rng(seed)
    base = (rng.random(n) < 0.6).astype(float)
    tuned = base.copy()
    wrong, right = np.flatnonzero(base == 0), np.flatnonzero(base == 1)
    tuned[rng.choice(wrong, fixed, replace=False)] = 1.0
    tuned[rng.choice(right, broken, replace=False)] = 0.0
    return base, tuned


def test_ci_contains_a_known_improvement_and_excludes_zero():
    base, tuned = _fixes_and_breaks(1000, fixed=150, broken=50)
    result = paired_bootstrap_scores(base, tuned)
    assert result.diff == pytest.approx(0.1)
    assert result.low < 0.1 < result.high and result.low > 0
    assert result.p_value < 0.01


def test_ci_straddles_zero_without_a_difference():
    same = paired_bootstrap_scores(*(2 * [np.tile([0.0, 1.0], 100)]))
    assert (same.diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    base, tuned = _fixes_and_breaks(500, fixed=40, broken=40)
    noisy = paired_bootstrap_scores(base, tuned)
    assert noisy.diff == pytest.approx(0.0, abs=1e-12)
    assert noisy.low < 0 < noisy.high and 0.3 < noisy.p_value < 0.8


def test_p_value_is_one_sided_for_tuned_better():
    base, tuned = _fixes_and_breaks(1000, fixed=150, broken=50)
    assert paired_bootstrap_scores(tuned, base).p_value > 0.99  # swapped: tuned is worse


def test_bootstrap_is_deterministic_with_a_seed():
    base, tuned = _fixes_and_breaks(300, fixed=30, broken=20)
    assert paired_bootstrap_scores(base, tuned, seed=7) == paired_bootstrap_scores(base, tuned, seed=7)
    assert paired_bootstrap_scores(base, tuned, seed=7) != paired_bootstrap_scores(base, tuned, seed=8)


def test_vectorised_path_equals_recomputation():
    base, tuned = _fixes_and_breaks(200, fixed=30, broken=10)
    fast = paired_bootstrap_scores(base, tuned, n_resamples=200, seed=3)
    slow = paired_bootstrap(list(base), list(tuned), [None] * 200, lambda p, _: float(np.mean(p)), 200, seed=3)
    assert fast.as_dict() == pytest.approx(slow.as_dict(), abs=1e-12)


def test_chunked_resampling_changes_nothing(monkeypatch):
    base, tuned = _fixes_and_breaks(200, fixed=30, broken=10)
    whole = paired_bootstrap_scores(base, tuned, n_resamples=100)
    monkeypatch.setattr(bootstrap, "_CHUNK_ELEMENTS", 200 * 7)  # 7 resamples per chunk, the last one short
    assert paired_bootstrap_scores(base, tuned, n_resamples=100) == whole


def test_bleu_statistics_path_equals_recomputing_bleu():
    worse = [" ".join(h.split()[:-2]) for h in HYPS]
    fast = paired_bootstrap_stats(
        translation_stats(worse, REFS, "bleu")[0], *translation_stats(HYPS, REFS, "bleu"), n_resamples=30
    )
    slow = paired_bootstrap(worse, HYPS, REFS, lambda p, r: translation(p, r)["bleu"], n_resamples=30)
    assert fast.as_dict() == pytest.approx(slow.as_dict(), abs=1e-9)
    assert bootstrap_metric("translation", "bleu", worse, HYPS, REFS, n_resamples=30) == fast


def test_bootstrap_metric_picks_a_path_per_metric():
    preds_base = ["cat", "dog", "cat", "dog", "bird", "cat"]  # rows 0, 3, 4 right
    acc = bootstrap_metric("classification", "accuracy", preds_base, TOY_PREDS, TOY_REFS, ANIMALS, n_resamples=50)
    assert (acc.base, acc.tuned) == pytest.approx((3 / 6, 4 / 6))
    f1 = bootstrap_metric("classification", "macro_f1", preds_base, TOY_PREDS, TOY_REFS, ANIMALS, n_resamples=20)
    assert f1.tuned == pytest.approx(classification(TOY_PREDS, TOY_REFS, ANIMALS).macro_f1)
    with pytest.raises(ValueError, match="no metric 'bleu'"):
        bootstrap_metric("qa", "bleu", ["a"], ["a"], ["a"])


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths differ"):
        paired_bootstrap_scores([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_scores([1.0], [1.0], confidence=95)


def test_thousand_resamples_of_thousand_rows_runs_vectorised():
    # Speed is measured in benchmarks, not asserted here; this only runs the size the eval uses.
    base, tuned = _fixes_and_breaks(1000, fixed=100, broken=60)
    result = paired_bootstrap_scores(base, tuned, n_resamples=1000)
    assert result.low < result.diff < result.high


# --- parsing generations --------------------------------------------------------------------------------------


def test_first_line_and_strip_prefix():
    assert first_line("\n\n  Positive\nThe review praises the acting.") == "Positive"
    assert first_line("   \n") == ""
    assert strip_prefix("Answer: Paris") == "Paris"
    assert strip_prefix("**Sentiment:** negative") == "negative"
    assert strip_prefix("## Final answer: Label: 42") == "42"
    assert strip_prefix("The answer is: 7 apples") == "7 apples"
    assert strip_prefix("Paris is the capital: of France") == "Paris is the capital: of France"
    assert strip_prefix("Verdict: guilty", prefixes=["verdict"]) == "guilty"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Positive. The review praises the acting.", "positive"),
        ("The sentiment of this review is negative.", "negative"),
        ("I would say positive rather than negative", "positive"),  # earliest wins
        ("It is NEGATIVE", "negative"),
        ("negatively framed but not clearly either", None),  # whole words only
        ("Neutral", None),
    ],
)
def test_match_label_on_sentiment_generations(text, expected):
    assert match_label(text, ["negative", "positive"]) == expected


def test_match_label_prefers_the_longest_label_at_the_same_position_and_keeps_its_spelling():
    labels = ["hate speech", "offensive language", "neither", "hate"]
    assert match_label("Hate speech: the tweet attacks a group.", labels) == "hate speech"
    assert match_label("This is offensive language, not hate speech.", labels) == "offensive language"
    assert match_label("positive", ["Positive", "Negative"]) == "Positive"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\nShe makes 9 * 2 = $<<9*2=18>>18 a day.\n#### 18",
            "18",
        ),
        ("#### 42\n\nNote: this took 3 steps.", "42"),
        ("So the total is $1,234.", "1234"),
        ("The temperature dropped to -5 degrees.", "-5"),
        ("Each costs 3.50 dollars", "3.50"),
        ("It takes between 3-4 hours", "4"),
        ("The balance is -$7 now.", "-7"),
        ("It fell to \u22127 overnight", "-7"),
        ("€1,234.50 in total", "1234.50"),
        ("I cannot tell.", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_number_value_keeps_sign_and_decimals():
    assert (
        number_value("$18.00") == number_value("18") == number_value("#### 18.")
        and number_text(number_value("18.00")) == "18"
    )
    assert number_value("-7") != number_value("7") and number_value("1.8") != number_value("18")
    assert number_value("1,234 apples") == number_value("1234") and number_text(number_value("-0.0")) == "0"
    assert number_value("no number here") is None and number_text(None) is None


def test_extract_number_reads_every_gsm8k_gold_answer(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent (a fresh clone without ../shared/data)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        assert extract_number(row["answer"]) == row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
