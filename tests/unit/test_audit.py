"""The data audit: shape, duplicates, leakage, labels, preference pairs, privacy, blocking, the command and its HTML.

pytest tests/unit/test_audit.py -q

Planted problems in tiny files with the tiny tokenizer, then the checks that matter on the real data (sst2 train vs
dev, davidson's imbalance, hh_rlhf's pairs) called directly, so that the file stays fast.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import Config, DatasetSpec, Kind
from tunesmith.data.audit import AuditReport, input_text, run_audit
from tunesmith.data.audit_checks import label_balance, preference_pairs
from tunesmith.data.audit_dups import TextRow, leakage, normalize
from tunesmith.data.formats import Example
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, Renderer, TemplateError
from tunesmith.recipes.audit import AuditRefused, audit_command, preflight_audit
from tunesmith.report.audit_html import render_audit_html

LONG = (
    "the committee reviewed the quarterly budget and decided to postpone the new office project until the "
    "spring because the costs of materials had risen sharply over the last two months"
)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> DatasetSpec:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return DatasetSpec(path=str(path))


def audit(tmp_path: Path, tokenizer, train: list[dict], eval: list[dict] | None = None, **kw: Any) -> AuditReport:
    specs = [jsonl(tmp_path / "train.jsonl", train)]
    evals = [jsonl(tmp_path / "eval.jsonl", eval)] if eval else []
    return run_audit(specs, evals, tokenizer, **kw)


# --- shape ----------------------------------------------------------------------------------------------------


def test_shape_matches_what_training_would_use(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [
        {"prompt": "What is two plus two?", "completion": "Four."},
        {"prompt": "Name a colour.", "completion": "Blue " * 40},  # truncated, still trains
        {"prompt": "word " * 80, "completion": "late"},  # the prompt fills max_length: trains nothing
        {"prompt": "Missing its answer"},  # rejected by the loader
        {"prompt": "Say hi", "completion": "   "},  # rejected: empty
    ]
    max_length = 100
    report = audit(tmp_path, tiny_tokenizer, rows, max_length=max_length)
    shape = report.shape["train"]
    assert shape["rows"] == 3 and shape["kinds"] == {"completion": 3}
    assert set(shape["field_tokens"]) == {"prompt", "completion"}
    assert shape["truncated_rows"] == 2 and shape["zero_trained"] == 1
    assert "no trained token left after truncation" in shape["zero_trained_examples"][0]["reason"]
    (file,) = report.files
    assert (file["rows"], file["valid"], file["load_errors"], file["rejected"]) == (5, 3, 2, 3)
    assert any("empty or whitespace only" in reason for reason in file["reasons"])
    assert shape["empty_fields"]["completion"]["rejected"] == 1

    # Trained tokens are exactly Renderer.encode's at this max_length (the truncation the trainer applies).
    renderer = Renderer(tiny_tokenizer, "auto", max_length)
    encoded = [renderer.encode(ex) for ex in load_dataset(DatasetSpec(path=str(tmp_path / "train.jsonl"))).examples]
    kept = [e for e in encoded if isinstance(e, Encoded)]
    assert shape["trained_tokens"] == sum(e.trained_tokens for e in kept)
    assert shape["trained_share_per_row"]["count"] == len(kept) == 2
    assert report.blocking() == [
        "zero trained tokens: 1 rows would train nothing (see shape.zero_trained_examples)",
        "rejected rows: 2 rows cannot be read as examples (see files[].errors)",
    ]
    assert report.blocking(["zero_trained"]) == []


def test_chat_turns_and_empty_messages(tmp_path: Path, tiny_tokenizer) -> None:
    chat = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "hello"},
    ]
    report = audit(tmp_path, tiny_tokenizer, [{"messages": chat}, {"messages": chat[:2] + chat[2:]}])
    shape = report.shape["train"]
    assert shape["turns"]["percentiles"]["p50"] == 4
    assert set(shape["field_tokens"]) == {"user", "assistant"}
    assert shape["empty_fields"]["assistant message"]["kept"] == 2


def test_renderer_refuses_kinds_it_cannot_train(tiny_tokenizer) -> None:
    renderer = Renderer(tiny_tokenizer)
    with pytest.raises(TemplateError, match=r"classification rows cannot be trained .*fields: \{label: completion\}"):
        renderer.encode(Example(Kind.classification, "f.jsonl", 1, text="good", label="1"))
    with pytest.raises(TemplateError, match=r"preference rows cannot be trained .*fields: \{chosen: messages\}"):
        renderer.encode(Example(Kind.preference, "f.jsonl", 1, prompt="p", chosen="a", rejected="b"))


# --- duplicates and leakage -----------------------------------------------------------------------------------


def test_exact_and_near_duplicates(tmp_path: Path, tiny_tokenizer) -> None:
    near = LONG + " indeed"  # 25 of 26 shingles shared
    rows = [
        {"text": "The movie was GREAT!", "label": 1},
        {"text": "the movie was great", "label": 1},
        {"text": "the movie, was great.", "label": 0},
        {"text": LONG, "label": 0},
        {"text": near, "label": 0},
        {"text": "a completely different sentence about gardening and tomatoes in the summer", "label": 1},
    ]
    dups = audit(tmp_path, tiny_tokenizer, rows).duplicates["train"]
    assert (dups["exact_groups"], dups["exact_rows"], dups["verbatim_rows"]) == (1, 2, 0)
    assert dups["exact_examples"][0]["size"] == 3
    assert (dups["near_groups"], dups["near_rows"]) == (1, 1)
    assert len(dups["near_examples"][0]["variants"]) == 2


def test_leakage_exact_near_and_contained(tmp_path: Path, tiny_tokenizer) -> None:
    phrase = "decided to postpone the new office project until the spring"  # 10 words inside LONG
    eval_rows = [{"text": LONG, "label": 0}, {"text": "Is it raining today?", "label": 1}]
    train = [
        {"text": "is it RAINING today", "label": 1},  # exact after normalisation
        {"text": LONG.replace("months", "weeks"), "label": 0},  # near: the last shingle differs
        {"text": phrase, "label": 0},  # contained, long enough to count
        {"text": "the quarterly budget", "label": 0},  # a short shared phrase: reported, not leakage
        {"text": "nothing in common with the held out rows at all", "label": 1},
    ]
    report = audit(tmp_path, tiny_tokenizer, train, eval_rows)
    leak = report.leakage
    assert (leak["exact"], leak["near"], leak["train_in_eval"], leak["eval_in_train"]) == (1, 1, 1, 0)
    assert leak["train_rows"] == 3 and leak["eval_rows"] == 2
    assert leak["phrases"]["train_in_eval"] == {"3-4 words": 1, "5-7 words": 0, "8+ words": 1}
    assert leak["near_examples"][0]["similarity"] >= 0.85
    (problem,) = report.blocking()
    assert problem.startswith("leakage: 3 train rows also appear in eval (exact 1, near 1, contained 1, 13-word")
    assert report.blocking(["leakage"]) == []


QUESTION = (
    "A farmer plants 12 rows of corn with 15 plants in each row, sells a third of the plants at the market for 3 "
    "dollars each while his neighbour buys the rest at half price; how much does he earn?"
)  # 40 words


def test_ngram_overlap_catches_a_one_word_edit_that_near_duplicates_miss(tmp_path: Path, tiny_tokenizer) -> None:
    edited = QUESTION.replace("market", "fair")  # the 22nd of 40 words
    train = [{"prompt": QUESTION, "completion": "x"}, {"prompt": "How many legs has a spider?", "completion": "8"}]
    eval_rows = [{"prompt": edited, "completion": "x"}, {"prompt": "Name a prime below ten.", "completion": "7"}]
    report = audit(tmp_path, tiny_tokenizer, train, eval_rows)
    leak = report.leakage
    # The 5-gram shingle sets share 31 of 41: Jaccard 0.76, no near duplicate; neither text contains the other.
    assert (leak["exact"], leak["near"], leak["train_in_eval"], leak["eval_in_train"]) == (0, 0, 0, 0)
    assert (leak["ngram_words"], leak["ngram"], leak["train_rows"], leak["eval_rows"]) == (13, 1, 1, 1)
    (example,) = leak["ngram_examples"]
    assert example["train"].endswith("train.jsonl:1") and example["eval"].endswith("eval.jsonl:1")
    # The span shown is the longest shared run of words: the 21 before the edit (18 follow it).
    assert example["words"] == 21 and example["span"] == normalize(QUESTION.split(" market")[0])
    (problem,) = report.blocking()
    assert "13-word overlap 1" in problem
    assert report.blocking(["leakage"]) == []
    # The length is a setting (audit.ngram): no run of 22 words is shared.
    assert audit(tmp_path, tiny_tokenizer, train, eval_rows, ngram=22).leakage["ngram"] == 0


def test_ngram_overlap_ignores_a_template_every_row_repeats() -> None:
    from tunesmith.data.audit_dups import shared_ngrams

    template = "read the following customer review carefully and then decide whether the writer liked the product"
    train = [f"{template} review number {i} says it broke" for i in range(12)]
    copy = "my favourite thing is the blue garden chair that we bought last spring from the shop near the station"
    found = shared_ngrams([*train, copy], [f"{template} a new review", copy.replace("blue", "red")], 13)
    assert [(e, t) for e, t, _ in found] == [(1, 12)]  # the copied row, not the 16-word shared instruction


def test_leakage_compares_the_input_side(tmp_path: Path, tiny_tokenizer) -> None:
    chat = {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "P"}]}
    other = {"messages": [{"role": "user", "content": "capital of france"}, {"role": "assistant", "content": "Q"}]}
    assert input_text(load_dataset(jsonl(tmp_path / "c.jsonl", [chat])).examples[0]) == "Capital of France?"
    report = audit(tmp_path, tiny_tokenizer, [chat], [other])
    assert report.leakage["exact"] == 1


# --- labels, slices, preference pairs -------------------------------------------------------------------------


def test_label_balance_slices_and_labels_only_in_eval(tmp_path: Path, tiny_tokenizer) -> None:
    train = [
        {"text": f"row {i}", "label": "spam" if i < 2 else "ham", "source": "web" if i < 4 else "app"}
        for i in range(12)
    ]
    train.append({"text": "row 0", "label": "ham", "source": "web"})  # same text labelled two ways
    eval_rows = [{"text": "x", "label": "phish", "source": "web"}, {"text": "y", "label": "ham", "source": "app"}]
    labels = audit(tmp_path, tiny_tokenizer, train, eval_rows, slice_field="source").labels
    assert labels is not None
    balance = labels["splits"]["train"]
    assert balance["counts"] == {"ham": 11, "spam": 2} and balance["imbalance_ratio"] == 5.5
    assert (balance["majority_label"], balance["minority_label"]) == ("ham", "spam")
    assert labels["only_in_eval"] == ["phish"] and labels["only_in_train"] == ["spam"]
    assert labels["conflicting_texts"] == 1
    web = next(v for v in labels["slices"]["train"]["values"] if v["value"] == "web")
    assert web["labels"] == {"spam": 2, "ham": 3} and web["max_share_gap"] > 0.2


def test_preference_pair_checks(tmp_path: Path, tiny_tokenizer) -> None:
    base = "\n\nHuman: Tell me a joke.\n\nAssistant:"
    rows = [
        {"prompt": "p1", "chosen": "same", "rejected": "same"},
        {"prompt": "p2", "chosen": "", "rejected": "no"},
        {"prompt": "p3", "chosen": "a much longer and kinder answer", "rejected": "no"},
        {"prompt": "p4", "chosen": "Same!", "rejected": "same"},
    ]
    pairs = audit(tmp_path, tiny_tokenizer, rows)
    p = pairs.preference["train"]
    assert (p["pairs"], p["identical"], p["identical_after_normalization"], p["empty_chosen"]) == (4, 1, 1, 1)
    assert p["chosen_longer_share"] == 0.5
    assert "identical pairs: 1 preference pairs have chosen == rejected and teach nothing" in pairs.blocking()
    transcripts = [
        {"chosen": base + " Why did the chicken... ", "rejected": base + " No."},
        {
            "chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: D",
            "rejected": "\n\nHuman: X\n\nAssistant: Y",
        },
    ]
    t = audit(tmp_path, tiny_tokenizer, transcripts).preference["train"]
    assert (t["split_from_transcripts"], t["differ_before_final_reply"]) == (1, 1)
    assert t["unsplit_examples"][0]["row"].endswith("train.jsonl:2")


# --- privacy --------------------------------------------------------------------------------------------------


def test_privacy_counts_kinds_and_shows_values_masked(tmp_path: Path, tiny_tokenizer) -> None:
    email = {"prompt": "Email jane.doe@acme-corp.com about it", "completion": "Done."}
    rows = [email, {"prompt": "Nothing here", "completion": "ok"}, email]  # the copy is shown as a duplicate
    report = audit(tmp_path, tiny_tokenizer, rows)
    pii = report.privacy
    assert pii["checked"] and pii["rows"] == 2 and pii["per_kind"]["EMAIL"] == {"hits": 2, "rows": 2}
    hit = pii["examples"][0]
    assert hit["field"] == "prompt" and hit["row"].endswith("train.jsonl:1")
    # Masked everywhere: the privacy table and every example the other sections show, in JSON and HTML alike.
    assert report.duplicates["train"]["exact_examples"][0]["text"].startswith(f"Email {hit['masked']} about it")
    assert "jane.doe@acme-corp.com" not in json.dumps(report.to_json())
    assert "jane.doe@acme-corp.com" not in render_audit_html(report)
    assert report.blocking()[0].startswith("pii: 2 rows hold personal data or secrets (EMAIL 2)")
    assert report.blocking(["pii"]) == []


def test_privacy_without_the_scanner_says_so(tmp_path: Path, tiny_tokenizer, monkeypatch) -> None:
    import tunesmith.data

    monkeypatch.setitem(sys.modules, "tunesmith.data.pii", None)  # the import fails as if the module were absent
    monkeypatch.delattr(tunesmith.data, "pii", raising=False)
    report = audit(tmp_path, tiny_tokenizer, [{"text": "mail a@b.com", "label": 1}])
    assert report.privacy == {"checked": False, "reason": "the PII scanner (tunesmith.data.pii) is not available"}
    assert report.blocking() == []


# --- the command, the HTML, the training pre-flight -----------------------------------------------------------


def test_audit_command_strict_exit_code_json_and_self_contained_html(tmp_path: Path, tiny_model_dir, capsys) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("is it raining today\t1\nthe sun is out\t0\n", encoding="utf-8")
    dev = tmp_path / "dev.tsv"
    dev.write_text("Is it raining today ?\t1\n", encoding="utf-8")
    args = dict(
        config=None,
        slice_field=None,
        kind="auto",
        fields=["sentence=text"],
        fmt="tsv",
        columns="sentence,label",
        model=str(tiny_model_dir),
    )
    out = tmp_path / "audit"
    assert audit_command([str(train)], [str(dev)], out=str(out), strict=True, **args) == 1
    assert audit_command([str(train)], [str(dev)], out=str(out), strict=False, **args) == 0
    printed = capsys.readouterr().out
    assert "blocking leakage: 1 train rows" in printed and "audit.allow: [leakage]" in printed
    data = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert data["leakage"]["exact"] == 1 and data["files"][0]["kind"] == "classification"
    page = (out / "audit.html").read_text(encoding="utf-8")
    assert "<svg" in page and "1 blocking problem" in page and "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)  # nothing fetched from a network
    assert audit_command([str(train)], [], out=str(out), strict=True, **args) == 0


def test_strict_fails_on_a_one_word_edited_eval_question(tmp_path: Path, tiny_model_dir, capsys) -> None:
    train = jsonl(tmp_path / "train.jsonl", [{"question": QUESTION, "answer": "x"}])
    dev = jsonl(tmp_path / "dev.jsonl", [{"question": QUESTION.replace("corn", "wheat"), "answer": "x"}])
    args = dict(config=None, slice_field=None, kind="auto", fields=[], fmt="auto", columns=None)
    out = tmp_path / "audit"
    assert audit_command([train.path], [dev.path], out=str(out), strict=True, model=str(tiny_model_dir), **args) == 1
    printed = " ".join(capsys.readouterr().out.split())  # as one line: the console wraps to its width
    assert "13-word overlap 1" in printed and "blocking leakage" in printed
    assert "33 words shared by eval" in printed and "in each row sells a third of the plants" in printed
    page = (out / "audit.html").read_text(encoding="utf-8")
    assert "Shared 13-word sequences" in page and "in each row sells a third of the plants" in page


def test_html_escapes_row_text(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [{"text": "<img src=https://evil.example/x.png>", "label": 1}] * 2
    page = render_audit_html(audit(tmp_path, tiny_tokenizer, rows))
    assert "<img" not in page and "&lt;img src=https://evil.example/x.png&gt;" in page


def test_preflight_writes_audit_json_and_stops_unless_allowed(tmp_path: Path, tiny_tokenizer) -> None:
    train = jsonl(tmp_path / "t.jsonl", [{"prompt": "Is it raining?", "completion": "Yes."}] * 2)
    held = jsonl(tmp_path / "e.jsonl", [{"prompt": "is it raining", "completion": "No."}])
    cfg = Config.model_validate({"data": {"train": [train.model_dump()], "eval": [held.model_dump()]}})
    with pytest.raises(AuditRefused, match="leakage: 2 train rows"):
        preflight_audit(cfg, tiny_tokenizer, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "audit.json").read_text())["leakage"]["exact"] == 2
    cfg.audit.allow = ["leakage"]
    notes: list[str] = []
    assert preflight_audit(cfg, tiny_tokenizer, tmp_path / "run", log=notes.append) is not None
    assert notes and "allowed by config: leakage" in notes[0]
    cfg.audit.enabled = False
    assert preflight_audit(cfg, tiny_tokenizer, tmp_path / "run") is None


def test_preflight_checks_leakage_across_the_held_out_split(tmp_path: Path, tiny_tokenizer, tiny_model_dir) -> None:
    from tunesmith.training.prepare import held_out_of_train

    # A question and its one-word edit among other rows: exact copies are never split (test_mixing), but a copy
    # with one word changed can be, and the leakage check must see it. Seed 1 puts the two on different sides.
    rows = [{"prompt": f"Question {i} about topic {i}?", "completion": "a"} for i in range(18)]
    rows += [{"prompt": QUESTION, "completion": "a"}, {"prompt": QUESTION.replace("corn", "wheat"), "completion": "a"}]
    train = jsonl(tmp_path / "t.jsonl", rows)
    cfg = Config.model_validate({"data": {"train": [train.model_dump()], "eval_fraction": 0.25}, "train": {"seed": 1}})
    held = held_out_of_train(cfg, [(ex, cfg.data.train[0]) for ex in load_dataset(cfg.data.train[0]).examples])
    assert len(held) == 5 and len({18, 19} & held) == 1
    with pytest.raises(AuditRefused, match=r"leakage: 1 train rows also appear in eval \(the run's held-out split\)"):
        preflight_audit(cfg, tiny_tokenizer, tmp_path / "run")
    leak = json.loads((tmp_path / "run" / "audit.json").read_text())["leakage"]
    assert leak["checked"] and leak["ngram"] == 1 and leak["split"].endswith("5 eval rows, 15 train rows")
    # `tunesmith data audit --config` without eval data checks the same split.
    config = tmp_path / "cfg.yaml"
    config.write_text(cfg.to_yaml(), encoding="utf-8")
    args = dict(slice_field=None, kind="auto", fields=[], fmt="auto", columns=None, model=str(tiny_model_dir))
    assert audit_command([], [], config=str(config), out=str(tmp_path / "audit"), strict=True, **args) == 1
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["leakage"]["split"] == leak["split"]


# --- real data ------------------------------------------------------------------------------------------------

SST2 = {"format": "tsv", "columns": ["sentence", "label"], "fields": {"sentence": "text"}}


def test_sst2_train_holds_no_dev_sentence_and_only_short_dev_phrases(shared_data: Path) -> None:
    """SST-2 train is phrase-level (sub-phrases of the training trees). Its phrases are not cut from the dev
    sentences: two one-word dev sentences ("bad .", "cool ?") equal train phrases, no 8+ word train phrase occurs
    inside a dev sentence, and the shorter shared ones are stock expressions ("one of the year 's best films")."""

    def rows(name: str) -> list[TextRow]:
        examples = load_dataset(DatasetSpec(path=str(shared_data / "sst2" / name), **SST2)).examples
        return [TextRow(f"{e.source}:{e.line}", normalize(e.text or ""), e.text or "") for e in examples]

    train, dev = rows("sentiment-train"), rows("sentiment-dev")
    assert (len(train), len(dev)) == (67349, 872)
    leak = leakage(train, dev, threshold=0.85)
    assert {e["eval_text"] for e in leak["exact_examples"]} == {"bad .", "cool ?"}
    assert (leak["exact"], leak["eval_rows"], leak["near"], leak["train_in_eval"], leak["eval_in_train"]) == (
        5,
        2,
        0,
        0,
        0,
    )
    assert leak["phrases"]["train_in_eval"] == {"3-4 words": 123, "5-7 words": 16, "8+ words": 0}
    assert leak["phrases"]["eval_in_train"] == {"3-4 words": 0, "5-7 words": 0, "8+ words": 0}


def test_davidson_imbalance_is_reported(shared_data: Path) -> None:
    spec = DatasetSpec(
        path=str(shared_data / "davidson_hate_speech" / "labeled_data.csv"),
        fields={"tweet": "text", "class": "label"},
        labels={"0": "hate", "1": "offensive", "2": "neither"},
    )
    pairs = [(ex, spec) for ex in load_dataset(spec).examples]
    labels = label_balance({"train": pairs}, slice_field="count")
    assert labels is not None
    balance = labels["splits"]["train"]
    assert balance["counts"] == {"offensive": 19190, "neither": 4163, "hate": 1430}
    assert balance["imbalance_ratio"] == 13.42 and balance["minority_label"] == "hate"
    assert labels["slices"]["train"]["values"][0]["value"] == "3"  # three annotators, most rows


@pytest.mark.parametrize(
    ("split", "identical", "unsplit", "empty_chosen", "empty_rejected"),
    [("helpful-base", 2, 9, 0, 4), ("harmless-base", 0, 5, 4, 0)],
)
def test_hh_rlhf_pairs_are_checked(
    shared_data: Path, split: str, identical: int, unsplit: int, empty_chosen: int, empty_rejected: int
) -> None:
    spec = DatasetSpec(path=str(shared_data / "hh_rlhf" / split / "test.jsonl.gz"))
    pairs = [(ex, spec) for ex in load_dataset(spec).examples]
    sizes = [len(ex.chosen or "") for ex, _ in pairs], [len(ex.rejected or "") for ex, _ in pairs]
    p = preference_pairs(pairs, *sizes)
    assert p is not None
    assert (p["identical"], p["differ_before_final_reply"]) == (identical, unsplit)
    assert (p["empty_chosen"], p["empty_rejected"]) == (empty_chosen, empty_rejected)
    assert p["split_from_transcripts"] == len(pairs) - unsplit
