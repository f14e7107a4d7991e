"""Baselines of the base model (eval/baselines.py): label likelihood against a hand computation on the tiny Llama,
few-shot prompts from training rows only, trivial baselines, the strongest base as the headline, and the reports
saying when the tuned model does not beat the trivial baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tunesmith.config import DatasetSpec, Kind, TaskConfig
from tunesmith.data.formats import Example
from tunesmith.data.templates import Renderer
from tunesmith.eval.baselines import pick_strongest, strongest_task, tuned_comparison, versus_trivial
from tunesmith.eval.fewshot import choose_shots, fit_shots, with_shots
from tunesmith.eval.likelihood import label_scores
from tunesmith.eval.metrics import compute
from tunesmith.eval.tasks import TaskResult
from tunesmith.eval.trivial import lead_sentence, trivial_baseline

LABELS = ["even", "odd", "no idea"]  # "no idea" is two tokens or more: the mean, not the sum, is compared
SPEC = DatasetSpec(path="data.jsonl", system="You check numbers.")


def row(n: int, source: str = "train.jsonl", answer: str | None = None) -> tuple[Example, DatasetSpec]:
    answer = answer or ("even" if n % 2 == 0 else "odd")
    return Example(Kind.completion, source, n, prompt=f"is {n} even or odd?", completion=answer), SPEC


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32).eval()


def by_hand(model, renderer: Renderer, prompt: list[dict], label: str) -> float:
    """Mean log-probability of the label's tokens after the inference prompt: one unpadded forward, full logits."""
    prompt_ids = renderer.prompt_ids(prompt)
    label_ids = renderer.tokenizer(label, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + label_ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    start = len(prompt_ids) - 1  # the position whose next token is the label's first
    return sum(float(logp[start + j, tok]) for j, tok in enumerate(label_ids)) / len(label_ids)


def test_label_likelihood_equals_the_hand_computed_log_probability(tiny_lm, tiny_tokenizer, capsys, monkeypatch):
    renderer = Renderer(tiny_tokenizer)
    prompts = [
        [{"role": "system", "content": "You check numbers."}, {"role": "user", "content": "is 4 even or odd?"}],
        [{"role": "user", "content": "is 12345 an even number or an odd number? think carefully please"}],
        # A few-shot prompt: the shots' answers are assistant turns too, and only the last answer is scored.
        [
            {"role": "user", "content": "is 8 even or odd?"},
            {"role": "assistant", "content": "even"},
            {"role": "user", "content": "is 3 even or odd?"},
            {"role": "assistant", "content": "odd"},
            {"role": "user", "content": "is 6 even or odd?"},
        ],
    ]
    assert len(tiny_tokenizer(LABELS[2], add_special_tokens=False)["input_ids"]) > 1
    # Batch size 4 puts prompts of different lengths (and labels of different lengths) in one padded batch.
    scores = label_scores(tiny_lm, renderer, prompts, LABELS, batch_size=4, device=torch.device("cpu"))
    for prompt, row_scores in zip(prompts, scores, strict=True):
        for label, score in zip(LABELS, row_scores, strict=True):
            assert score == pytest.approx(by_hand(tiny_lm, renderer, prompt, label), abs=1e-4)
    # An hour-long baseline shows its progress: the same scores, with a bar over the rows on stderr.
    args = (tiny_lm, renderer, prompts, LABELS, 4, torch.device("cpu"))
    assert label_scores(*args, progress="base: label likelihood") == scores
    assert "base: label likelihood" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 draws it
    label_scores(*args, progress="base: label likelihood")
    assert "base: label likelihood" not in capsys.readouterr().err


def test_few_shot_prompt_holds_k_training_rows_and_no_held_out_row(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, max_length=512)
    task = TaskConfig(type="classification", labels=["even", "odd"], few_shot=4)
    held_out = [row(n, "eval.jsonl") for n in (100, 101, 102)]
    train = [row(n) for n in range(20)] + [row(101)]  # a training row that copies a held-out prompt
    shots = choose_shots(train, held_out, renderer, task, k=4, seed=7)
    assert shots == choose_shots(train, held_out, renderer, task, k=4, seed=7)  # deterministic
    assert len(shots) == 4
    assert sorted(s[-1]["content"] for s in shots) == ["even", "even", "odd", "odd"]  # balanced across labels
    train_prompts = {f"is {n} even or odd?" for n in range(20)}
    for shot in shots:
        assert [m["role"] for m in shot] == ["user", "assistant"] and shot[0]["content"] in train_prompts

    prompt, _ = renderer.first_turn(held_out[0][0], SPEC.system)
    messages = with_shots(prompt, shots)
    assert messages[0] == {"role": "system", "content": "You check numbers."}
    assert messages[1:-1] == [m for shot in shots for m in shot] and messages[-1] == prompt[-1]
    held_texts = {f"is {n} even or odd?" for n in (100, 101, 102)}
    assert [m["content"] for m in messages[1:-1] if m["role"] == "user" and m["content"] in held_texts] == []

    # A prompt that would pass the limit with every shot keeps as many as fit (the last ones), else none.
    limit = len(renderer.prompt_ids(with_shots(prompt, shots[2:]))) + 3
    fitted, used = fit_shots(prompt, shots, renderer, room=3, limit=limit)
    assert used == 2 and fitted == with_shots(prompt, shots[2:])
    assert fit_shots(prompt, shots, renderer, room=3, limit=5) == (prompt, 0)


def test_trivial_baselines_majority_lead_sentence_and_copy(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer)
    task = TaskConfig(type="classification", labels=["yes", "no", "maybe"])
    train = [row(i, answer=a) for i, a in enumerate(["no", "yes", "yes", "maybe", "yes", "no"])]
    held = [row(50 + i, "eval.jsonl", a) for i, a in enumerate(["yes", "no", "yes", "maybe"])]
    refs = ["yes", "no", "yes", "maybe"]
    trivial = trivial_baseline(task, train, held, renderer, lambda p: compute(task.type, p, refs, task.labels), refs)
    assert trivial["name"] == "majority" and trivial["predictions"] == ["yes"] * 4
    assert trivial["metrics"]["accuracy"] == pytest.approx(0.5) and '"yes"' in trivial["method"]

    assert lead_sentence("First one here. Second one.") == "First one here."
    doc = {"source": ["We propose X.", "It works."], "target": "X works."}
    summary = Example(Kind.completion, "s.jsonl", 1, prompt="Summarize: ...", completion="X works.", row=doc)
    summ = TaskConfig(type="summarization")
    refs = ["X works."]
    score = lambda p: compute("summarization", p, refs)  # noqa: E731
    result = trivial_baseline(summ, [(summary, SPEC)], [(summary, SPEC)], renderer, score, refs)
    assert result["name"] == "lead_sentence" and result["predictions"] == ["We propose X."]
    pair = {"en": "A dog runs in the park.", "de": "Ein Hund rennt im Park."}
    translation = Example(Kind.completion, "t.jsonl", 1, prompt="Translate", completion=pair["de"], row=pair)
    refs = [pair["de"]]
    score = lambda p: compute("translation", p, refs)  # noqa: E731
    result = trivial_baseline(TaskConfig(type="translation"), [], [(translation, SPEC)], renderer, score, refs)
    assert result["name"] == "copy_source" and result["predictions"] == [pair["en"]]


def result(predictions: list[str], references: list[str]) -> dict:
    labels = ["yes", "no", "maybe"]
    metrics = compute("classification", predictions, references, labels)
    return TaskResult("classification", metrics, list(predictions), list(predictions), list(references)).to_json()


def test_headline_is_tuned_vs_the_strongest_base_and_the_trivial_floor_is_said():
    refs = ["yes"] * 11 + ["no"] * 5 + ["maybe"] * 4
    baselines = {
        "likelihood_zero_shot": result(["yes"] * 10 + ["no"] * 10, refs),  # 10 + 5 right: 0.75
        "likelihood_few_shot": result(["no"] * 20, refs),  # 0.25
        "generation_zero_shot": result(["maybe"] * 20, refs),  # 0.20
    }
    assert pick_strongest(baselines, "classification") == "likelihood_zero_shot"
    tie = {
        "generation_zero_shot": baselines["likelihood_zero_shot"],
        "likelihood_few_shot": baselines["likelihood_zero_shot"],
    }
    assert pick_strongest(tie, "classification") == "likelihood_few_shot"  # a tie goes to the one listed first
    trivial = {"name": "majority", "method": 'always "yes"', **result(["yes"] * 20, refs)}  # 0.55
    base_eval = {"task": baselines["generation_zero_shot"], "baselines": baselines, "trivial": trivial}
    base_eval["strongest"] = pick_strongest(baselines, "classification")
    assert strongest_task(base_eval).metrics["accuracy"] == pytest.approx(0.75)

    tuned = result(["yes"] * 11 + ["no"] * 5 + ["yes"] * 4, refs)  # 0.80
    out = tuned_comparison(base_eval, tuned, TaskConfig(type="classification", labels=["yes", "no", "maybe"]), 0)
    assert out["comparison_base"] == "likelihood_zero_shot"
    assert out["comparison"]["accuracy"]["base"] == pytest.approx(0.75)  # not the weak generation baseline's 0.20
    assert out["comparison"]["accuracy"]["diff"] == pytest.approx(0.05)
    assert out["versus_trivial"]["beats"] and out["versus_trivial"]["message"] is None

    # pubmedqa: tuned 0.54 below always-"yes" 0.55 is said in words.
    low = dict(tuned, metrics={"accuracy": 0.54, "macro_f1": 0.4})
    verdict = versus_trivial(low, dict(trivial, metrics={"accuracy": 0.55, "macro_f1": 0.24}))
    assert not verdict["beats"] and "does not beat the trivial baseline" in verdict["message"]
    assert "0.5400 vs 0.5500" in verdict["message"]
    assert versus_trivial(dict(low, metrics={"accuracy": 0.56, "macro_f1": 0.4}), trivial)["beats"]


def fake_run(tmp: Path, tuned_accuracy: float) -> tuple[Path, dict, dict]:
    """A run folder with eval/base.json and eval/tuned.json as a classification run writes them."""
    refs = ["yes"] * 11 + ["no"] * 5 + ["maybe"] * 4
    labels = ["yes", "no", "maybe"]
    baselines = {
        "likelihood_zero_shot": {**result(["yes"] * 10 + ["no"] * 10, refs), "method": "label likelihood"},
        "generation_zero_shot": {**result(["maybe"] * 20, refs), "method": "greedy answer"},
    }
    trivial = {
        "name": "majority",
        "method": 'always "yes" (the most common training label)',
        **result(["yes"] * 20, refs),
    }
    base = {
        "metrics": {"loss": 1.0, "perplexity": 2.7, "token_accuracy": 0.5, "rows": 20, "tokens": 40},
        "task": baselines["generation_zero_shot"],
        "baselines": baselines,
        "strongest": "likelihood_zero_shot",
        "trivial": trivial,
    }
    tuned_task = result(["yes"] * 20, refs)
    tuned_task["metrics"]["accuracy"] = tuned_accuracy
    tuned = {"metrics": dict(base["metrics"], loss=0.5), "task": tuned_task}
    tuned |= tuned_comparison(base, tuned_task, TaskConfig(type="classification", labels=labels), 0)
    run = tmp / "run"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(
        "model: {base: tiny}\nadapter: {method: lora}\ntask: {type: classification, labels: [yes, no, maybe]}\n"
    )
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "split": "eval", "loss": 1.0}) + "\n")
    (run / "eval" / "base.json").write_text(json.dumps(base))
    (run / "eval" / "tuned.json").write_text(json.dumps(tuned))
    return run, base, tuned


def test_reports_show_every_baseline_and_say_when_tuned_is_below_the_trivial_one(tmp_path):
    from tunesmith.recipes.summary import print_result
    from tunesmith.recipes.train import RunResult
    from tunesmith.report.run_html import render_run_report

    run, base, tuned = fake_run(tmp_path, tuned_accuracy=0.54)
    page = render_run_report(run)
    first_screen = page[: page.index("<h2>Held-out evaluation")]
    assert "The tuned model does not beat the trivial baseline: accuracy 0.5400 vs 0.5500" in first_screen
    for name in (
        "tuned model",
        "base: label likelihood, zero-shot",
        "base: generation, zero-shot",
        "trivial: majority",
    ):
        assert name in first_screen
    assert "strongest base" in first_screen and "0.7500" in first_screen

    console = Console(record=True, width=200)
    print_result(RunResult(run, base, tuned, 1), console)
    text = console.export_text()
    assert "does not beat the trivial baseline" in text and "label likelihood, zero-shot" in text

    run2, _, tuned2 = fake_run(tmp_path / "ok", tuned_accuracy=0.80)
    assert "does not beat" not in render_run_report(run2) and tuned2["versus_trivial"]["beats"]


@pytest.mark.slow
def test_a_classification_run_compares_tuned_with_its_strongest_baseline(tiny_model_dir, tmp_path):
    from tiny_runs import tiny_config

    from tunesmith.config import build_config
    from tunesmith.eval.baselines import ORDER
    from tunesmith.recipes.train import run_training

    data = tmp_path / "parity.jsonl"
    rows = [{"prompt": f"is {n} even or odd?", "completion": "even" if n % 3 else "odd"} for n in range(32)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=2)
    cfg["data"]["eval_fraction"] = 0.25
    cfg["task"] = {"type": "classification", "labels": ["even", "odd"], "max_new_tokens": 3, "few_shot": 2}
    cfg["task"]["bootstrap_resamples"] = 100
    run = run_training(build_config(cfg), log=lambda *_: None)
    base, tuned = run.base, run.tuned
    assert list(base["baselines"]) == list(ORDER)
    accuracy = {name: b["metrics"]["accuracy"] for name, b in base["baselines"].items()}
    assert accuracy[base["strongest"]] == max(accuracy.values())
    assert tuned["comparison_base"] == base["strongest"]
    assert tuned["comparison"]["accuracy"]["base"] == pytest.approx(accuracy[base["strongest"]])
    assert base["trivial"]["name"] == "majority" and set(base["trivial"]["predictions"]) == {"even"}
    held = set(base["task"]["inputs"])
    assert len(base["shots"]) == 2 and not held & {s["prompt"] for s in base["shots"]}
    card = (run.run_dir / "MODEL_CARD.md").read_text()
    assert "trivial: majority" in card and "base: label likelihood, few-shot" in card and "strongest base" in card
