"""Classification heads (method.type: classifier) on the tiny on-disk Llama: encoding, losses, pooling, the loop's
row normalisation, resume, final/ without tunesmith, and `tunesmith predict`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_training import assert_same_weights, final_trainable, fitted_weights
from tiny_runs import LABELS, head_config, tiny_config, write_pair_data, write_toy

from tunesmith.cli import main
from tunesmith.config import Config, ConfigError, Kind, build_config
from tunesmith.data.classify import HeadEncoder, encode_for_head, fit_input
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.predict import load_head
from tunesmith.methods.classifier import balanced_weights
from tunesmith.models.loading import load_classifier, load_tokenizer
from tunesmith.recipes.train import run_training
from tunesmith.training.checkpoint import list_checkpoints
from tunesmith.training.objectives import ClassificationObjective, collate, collate_classes
from tunesmith.training.prepare import DataRefused

quiet = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy(tmp_path_factory.mktemp("toy") / "toy.jsonl")


@pytest.fixture(scope="module")
def trained(tiny_model_dir, toy, tmp_path_factory):
    """One LoRA head run shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("head") / "run"
    return run_training(build_config(head_config(tiny_model_dir, toy, out, max_steps=40, lr=3e-3)), **quiet)


# --- config and encoding -------------------------------------------------------------------------------------------


def test_config_classifier_needs_classification_and_its_settings_live_in_method():
    def config(task: dict, method: dict) -> Config:
        return build_config({"task": task, "method": method})

    with pytest.raises(ConfigError, match=r"classifier needs task\.type: classification"):
        config({}, {"type": "classifier"})
    with pytest.raises(ConfigError, match=r"task\.loss: renamed: use method\.loss"):
        config({"type": "classification", "labels": LABELS, "loss": "focal"}, {"type": "classifier"})
    with pytest.raises(ConfigError, match=r"method\.loss: unknown key"):  # an sft run has no head loss
        config({"type": "classification", "labels": LABELS}, {"type": "sft", "loss": "focal"})
    with pytest.raises(ConfigError, match=r"method\.focal_gamma applies"):
        config({"type": "classification", "labels": LABELS}, {"type": "classifier", "focal_gamma": 1.0})
    with pytest.raises(ConfigError, match=r"differ from task\.labels"):
        config({"type": "classification", "labels": LABELS}, {"type": "classifier", "labels": LABELS[::-1]})
    ok = config({"type": "classification", "labels": LABELS}, {"type": "classifier", "loss": "focal"})
    assert ok.method.focal_gamma == 2.0 and ok.method.label_smoothing == 0.0 and ok.method.labels == LABELS
    given_once = config({"type": "classification"}, {"type": "classifier", "labels": LABELS})  # labels given once
    assert given_once.task.labels == given_once.method.labels == LABELS


def test_encode_for_head_renders_a_user_turn_and_targets_the_label_index(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, "auto", 128)
    ex = Example(Kind.classification, "d.jsonl", 4, text="reset my password", label="friendly")
    enc = encode_for_head(ex, renderer, LABELS, 128)
    expected = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "reset my password"}], add_generation_prompt=True, tokenize=False
    )
    assert enc.input_ids == tiny_tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert enc.target == 1 and enc.labels == [] and (enc.source, enc.line) == ("d.jsonl", 4)
    # sst2 style: a completion row whose completion is the label word
    completion = Example(Kind.completion, "s.tsv", 2, prompt="Review: fine\nSentiment:", completion="account")
    assert encode_for_head(completion, tiny_tokenizer, LABELS, 128).target == 0
    # plain: what tokenizer(text) gives any transformers user
    plain = encode_for_head(ex, Renderer(tiny_tokenizer, "plain", 128), LABELS, 128)
    assert plain.input_ids == tiny_tokenizer("reset my password")["input_ids"]


def test_truncation_keeps_the_start_and_never_ends_on_the_pad_id(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.pad_token = tokenizer.eos_token  # pad == eos == <|im_end|>, which the template writes after each turn
    pad = tokenizer.pad_token_id
    ex = Example(Kind.classification, "d.jsonl", 1, text="hello there", label="friendly")
    full = encode_for_head(ex, Renderer(tokenizer), LABELS, 512).input_ids
    first_end = full.index(pad)  # the end of the default system turn
    cut = encode_for_head(ex, Renderer(tokenizer), LABELS, first_end + 1)
    assert cut.truncated and cut.input_ids == full[:first_end] and cut.input_ids[-1] != pad
    assert fit_input([5, 6, pad, 7, pad, pad], 10, pad) == ([5, 6, pad, 7], False)


def test_bad_labels_are_row_errors_with_file_and_line(tiny_model_dir, tmp_path):
    data = tmp_path / "mod.jsonl"
    rows = [{"tweet": "hello there", "class": "friendly"}, {"tweet": "reset it", "class": "account"}] * 4
    rows.insert(2, {"tweet": "what now", "class": "spam"})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = head_config(tiny_model_dir, data, tmp_path / "run")
    cfg["data"]["train"][0].pop("labels")
    with pytest.raises(DataRefused, match=rf"{data}:3: label: label 'spam' is not one of task.labels"):
        run_training(build_config(cfg), **quiet)
    # completion rows: the label word comes from `labels:`, and must still be one of task.labels
    tsv = tmp_path / "sst.tsv"
    tsv.write_text("sentence\tlabel\ngood\t1\nbad\t0\nmeh\t2\n" + "fine\t1\n" * 6, encoding="utf-8")
    cfg = head_config(tiny_model_dir, tsv, tmp_path / "run2")
    cfg["data"]["train"] = [
        {
            "path": str(tsv),
            "template": "{sentence}",
            "fields": {"label": "completion"},
            "labels": {0: "account", 1: "friendly", 2: "neutral"},
        }
    ]
    with pytest.raises(DataRefused, match=rf"{tsv}:4: completion: label 'neutral'"):
        run_training(build_config(cfg), **quiet)


# --- batches and losses --------------------------------------------------------------------------------------------


def test_collate_gives_one_label_per_row_and_counts_rows():
    rows = [
        Encoded([5, 6, 7], [], "x", 1, target=1),
        Encoded([5, 6], [], "x", 2, target=0),
        Encoded([5], [], "x", 3, target=2),
    ]
    batch = collate_classes(rows, 0)
    assert batch.labels.tolist() == [1, 0, 2] and batch.input_ids.shape == (3, 3)
    assert batch.trained_tokens == 3
    with pytest.raises(ValueError, match="carry a class index"):
        collate_classes([rows[0], Encoded([5, 6, 7], [-100, 6, 7], "x", 4)], 0)
    with pytest.raises(ValueError, match="per-token labels"):
        collate(rows, 0)


LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
TARGETS = torch.tensor([0, 1, 1])


def _nll(row: list[float], target: int) -> float:
    return -(row[target] - math.log(sum(math.exp(x) for x in row)))


def test_class_weights_scale_each_row_by_its_class():
    weights = [2.0, 0.5, 1.0]
    parts = ClassificationObjective(torch.tensor(weights)).loss_parts(LOGITS, TARGETS)
    by_hand = sum(weights[t] * _nll(row, t) for row, t in zip(LOGITS.tolist(), TARGETS.tolist(), strict=True))
    assert parts.loss_sum.item() == pytest.approx(by_hand, rel=1e-6)
    assert parts.tokens == 3 and parts.correct == 2
    # balanced: n / (K * count_k); labels 0,0,0,1,2,2 -> 6/9, 6/3, 6/6
    assert balanced_weights([0, 0, 0, 1, 2, 2], ["a", "b", "c"]) == pytest.approx([2 / 3, 2.0, 1.0])
    with pytest.raises(Exception, match="no training rows"):
        balanced_weights([0, 0, 1], ["a", "b", "c"])


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_follows_its_formula():
    ce = ClassificationObjective().loss_parts(LOGITS, TARGETS).loss_sum
    zero = ClassificationObjective(loss="focal", focal_gamma=0.0).loss_parts(LOGITS, TARGETS).loss_sum
    torch.testing.assert_close(zero, ce, rtol=0, atol=0)
    focal = ClassificationObjective(loss="focal", focal_gamma=2.0).loss_parts(LOGITS, TARGETS).loss_sum
    by_hand = sum(
        (1 - math.exp(-_nll(row, t))) ** 2 * _nll(row, t)
        for row, t in zip(LOGITS.tolist(), TARGETS.tolist(), strict=True)
    )
    assert focal.item() == pytest.approx(by_hand, rel=1e-6)
    assert focal.item() < ce.item()


@pytest.mark.parametrize("weights", [None, [2.0, 0.5, 1.0]], ids=["unweighted", "weighted"])
def test_label_smoothing_matches_torch_cross_entropy(weights):
    w = None if weights is None else torch.tensor(weights)
    parts = ClassificationObjective(w, label_smoothing=0.1).loss_parts(LOGITS, TARGETS)
    expected = F.cross_entropy(LOGITS, TARGETS, weight=w, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(parts.loss_sum, expected)
    if weights is None:  # (1 - e) * nll + e / K * sum_k -log p_k
        rows = zip(LOGITS.tolist(), TARGETS.tolist(), strict=True)
        by_hand = sum(0.9 * _nll(r, t) + 0.1 / 3 * sum(_nll(r, k) for k in range(3)) for r, t in rows)
        assert parts.loss_sum.item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["pad", "pad-is-eos"])
def test_pooling_on_a_padded_batch_equals_transformers_on_each_row(tiny_model_dir, pad_is_eos):
    """The objective's logits come from the model's own forward: on a right-padded batch they equal each row run
    alone, and the hidden state of each row's last real token through the score head."""
    tokenizer = load_tokenizer(tiny_model_dir)
    if pad_is_eos:
        tokenizer.pad_token = tokenizer.eos_token  # the pad id then also appears inside every chat input
    torch.manual_seed(0)
    model = load_classifier(tiny_model_dir, ["a", "b", "c"], tokenizer.pad_token_id, torch.device("cpu"), torch.float32)
    model.eval()
    encoder = HeadEncoder(Renderer(tokenizer, "auto", 128), ["a", "b", "c"])
    texts = ["hi", "reset your password from the settings page please", "the quick brown fox"]
    rows = [encoder.encode(Example(Kind.classification, "x", i, text=t, label="a")) for i, t in enumerate(texts)]
    batch = collate_classes(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        batched = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        alone = torch.cat([model(input_ids=torch.tensor([r.input_ids])).logits for r in rows])
        hidden = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        last = batch.attention_mask.sum(1) - 1
        gathered = model.score(hidden[torch.arange(len(rows)), last])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, gathered, atol=1e-5, rtol=1e-5)
    parts = ClassificationObjective().loss_parts(batched, batch.labels)
    torch.testing.assert_close(parts.loss_sum, F.cross_entropy(alone, batch.labels, reduction="sum"))


# --- the loop: accumulation, training, resume ----------------------------------------------------------------------


def test_accumulation_equals_one_big_batch_for_the_head(tiny_model_dir, toy, tmp_path):
    """Rows, not tokens, are the unit: batch 8 as 1x8 and 2x4 gives the same weights, focal and weights included."""
    results = []
    for micro in (8, 4):
        cfg = head_config(tiny_model_dir, toy, tmp_path / f"m{micro}", micro_batch_size=micro, max_steps=3)
        cfg["method"] |= {"loss": "focal", "class_weights": "balanced", "label_smoothing": 0.1}
        results.append(fitted_weights(build_config(cfg), tmp_path / f"m{micro}"))
    assert any("score" in name for name in results[0])
    assert_same_weights(results[0], results[1], atol=1e-5)


def test_head_trains_and_beats_its_baselines(trained):
    base, tuned = trained.base, trained.tuned
    assert base["metrics"]["rows"] == tuned["metrics"]["rows"] == 24
    assert tuned["metrics"]["loss"] < base["metrics"]["loss"]
    assert tuned["metrics"]["accuracy"] >= 0.9 > base["metrics"]["accuracy"]
    assert "zero-shot generation" in base["task_method"] and base["task"]["references"] == tuned["task"]["references"]
    assert tuned["comparison"]["accuracy"]["tuned"] == pytest.approx(tuned["metrics"]["accuracy"])
    # The comparison is against the strongest of the base causal LM's baselines, with the majority class beside it.
    strongest = base["baselines"][base["strongest"]]["metrics"]["accuracy"]
    assert strongest == max(b["metrics"]["accuracy"] for b in base["baselines"].values())
    assert tuned["comparison"]["accuracy"]["base"] == pytest.approx(strongest)
    assert tuned["comparison_base"] == base["strongest"] and base["trivial"]["name"] == "majority"
    assert set(tuned["comparison"]) == {"accuracy", "macro_f1"}
    assert "## Task: classification" in (trained.run_dir / "MODEL_CARD.md").read_text()


def test_resume_after_crash_matches_uninterrupted_for_the_head(tiny_model_dir, toy, tmp_path):
    settings = {"max_steps": 9, "save_every": 3, "eval_every": 4}
    whole = run_training(build_config(head_config(tiny_model_dir, toy, tmp_path / "a", **settings)), **quiet)
    cfg = build_config(head_config(tiny_model_dir, toy, tmp_path / "b", **settings))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, crash_after_step=5, **quiet)
    saved = list_checkpoints(tmp_path / "b" / "checkpoints")
    assert [p.name for p in saved] == ["step-3"]
    from safetensors.torch import load_file

    assert any("score.modules_to_save" in name for name in load_file(saved[0] / "trainable.safetensors"))
    resumed = run_training(cfg, resume=True, **quiet)
    assert_same_weights(final_trainable(whole.run_dir), final_trainable(resumed.run_dir))
    assert resumed.tuned["metrics"]["loss"] == pytest.approx(whole.tuned["metrics"]["loss"], abs=1e-6)
    assert resumed.tuned["task"]["predictions"] == whole.tuned["task"]["predictions"]


# --- final/ and predict --------------------------------------------------------------------------------------------

PLAIN_PEFT = r"""
import json, sys
import torch
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoTokenizer

final, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoPeftModelForSequenceClassification.from_pretrained(final).eval()
tokenizer = AutoTokenizer.from_pretrained(final)
prompts = [
    tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
    for t in texts
]
batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
with torch.no_grad():
    probs = model(**batch).logits.softmax(-1)
assert not [m for m in sys.modules if m.split(".")[0] == "tunesmith"]
print(json.dumps({"labels": [model.config.id2label[i] for i in probs.argmax(-1).tolist()], "probs": probs.tolist()}))
"""


def test_final_loads_without_tunesmith_and_agrees_with_predict(trained, tmp_path, capsys):
    texts = ["reset the password page", "hello thanks you", "the lazy dog", "click open account settings now"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_PEFT, str(trained.run_dir / "final"), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    ours = load_head(trained.run_dir).predict(texts)
    assert plain["labels"] == [p.label for p in ours]
    for row, p in zip(plain["probs"], ours, strict=True):
        assert row == pytest.approx([p.probabilities[label] for label in LABELS], abs=1e-5)
    assert main(["predict", str(trained.run_dir), *[a for t in texts for a in ("--text", t)]]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [line[0] for line in printed] == plain["labels"] and [line[2] for line in printed] == texts


def test_predict_a_file_writes_rows_labels_and_probabilities(trained, tmp_path, capsys):
    csv = tmp_path / "new.csv"
    csv.write_text("id,tweet\n1,reset the password page\n2,hello thanks you\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(trained.run_dir), "--file", str(csv), "--out", str(out)]) == 0  # tweet: as trained
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"]["id"] for r in records] == ["1", "2"] and [r["line"] for r in records] == [2, 3]
    assert all(set(r["probabilities"]) == set(LABELS) for r in records)
    assert all(r["probability"] == max(r["probabilities"].values()) for r in records)
    expected = [p.label for p in load_head(trained.run_dir).predict(["reset the password page", "hello thanks you"])]
    assert [r["label"] for r in records] == expected
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tweet": "hello"}\n{"other": 1}\n', encoding="utf-8")
    assert main(["predict", str(trained.run_dir), "--file", str(bad)]) == 2
    assert f"{bad}:2: tweet: expected a non-empty text column" in capsys.readouterr().err


def test_full_fine_tuning_head_loads_with_plain_transformers(tiny_model_dir, toy, tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = head_config(tiny_model_dir, toy, tmp_path / "full", method="full", max_steps=2)
    run = run_training(build_config(cfg), **quiet)
    model = AutoModelForSequenceClassification.from_pretrained(run.run_dir / "final").eval()
    assert model.config.id2label == {0: "account", 1: "friendly"}
    head = load_head(run.run_dir)
    ids = head.encode("hello there")
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0]
    assert head.predict(["hello there"])[0].probabilities["friendly"] == pytest.approx(float(probs[1]), abs=1e-5)


def test_generative_runs_are_refused_by_predict(tiny_model_dir, tmp_path, capsys):
    rows = [{"prompt": f"is {n} even?", "completion": "yes" if n % 2 == 0 else "no"} for n in range(12)]
    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "gen", max_steps=1)), **quiet)
    assert main(["predict", str(tmp_path / "gen"), "--text", "is 4 even?"]) == 2
    assert "tunesmith generate" in capsys.readouterr().err


def test_plan_and_preview_understand_a_head_config(tiny_model_dir, toy, tmp_path):
    from rich.console import Console

    from tunesmith.recipes.plan import make_plan
    from tunesmith.recipes.preview import preview

    cfg = build_config(head_config(tiny_model_dir, toy, tmp_path / "run"))
    plan = make_plan(cfg, calibration_steps=1, log=lambda *_: None)
    assert plan.train_rows + plan.eval_rows == 96 and plan.trained_tokens_per_epoch == plan.train_rows
    assert plan.measured_peak is not None and not (tmp_path / "run").exists()
    console = Console(record=True, width=200)
    preview(cfg, n=2, console=console)
    shown = console.export_text()
    assert shown.count("read by the head at the last token") == 2


@pytest.mark.parametrize("method", ["lora", "full"])
def test_packed_head_rows_give_the_padded_losses_and_gradients(tiny_model_dir, method):
    """Packed rows (several per sequence, positions restarting per row, the head reading each row's last token)
    give the padded batch's loss and gradients, head and decoder alike, with focal loss and class weights."""
    from tunesmith.config import AdapterConfig, TrainConfig
    from tunesmith.training.packing import pack_classes
    from tunesmith.training.speed import make_trainable

    tokenizer = load_tokenizer(tiny_model_dir)
    encoder = HeadEncoder(Renderer(tokenizer, "auto", 128), ["a", "b", "c"])
    texts = ["hi", "reset your password from the settings page please", "the quick brown fox", "ok then", "x y z"]
    rows = [
        encoder.encode(Example(Kind.classification, "x", i, text=t, label="abc"[i % 3])) for i, t in enumerate(texts)
    ]
    objective = ClassificationObjective(torch.tensor([0.5, 1.0, 2.0]), loss="focal", focal_gamma=2.0)
    results = []
    for packed in (False, True):
        torch.manual_seed(0)
        model = load_classifier(tiny_model_dir, ["a", "b", "c"], tokenizer.pad_token_id, torch.device("cpu"),
                                torch.float32)  # fmt: skip
        model = make_trainable(model, AdapterConfig(method=method, r=4), TrainConfig(), "SEQ_CLS", packs=packed)
        pad = tokenizer.pad_token_id
        batch = pack_classes(rows, pad, 128) if packed else collate_classes(rows, pad)  # rows of 52 to 62 tokens
        parts = objective(model, batch)
        parts.loss_sum.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((parts, grads, batch))
    (padded, padded_grads, wide), (packed_parts, packed_grads, narrow) = results
    assert narrow.input_ids.shape[0] < len(rows) and narrow.real_tokens == wide.real_tokens  # rows share sequences
    assert sorted(narrow.labels.tolist()) == sorted(wide.labels.tolist()) and packed_parts.tokens == 5
    torch.testing.assert_close(packed_parts.loss_sum, padded.loss_sum, atol=1e-5, rtol=1e-5)
    assert packed_parts.correct == padded.correct
    assert any("score" in n for n in padded_grads) and padded_grads.keys() == packed_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_verify_checks_a_head_config_packed_against_padded(tiny_model_dir, toy, tmp_path, capsys):
    """verify runs a classifier's speed options (packing here) against the padded reference, and a reward model's
    (its pair sides packed) as well."""
    cfg = tmp_path / "head.yaml"
    cfg.write_text(json.dumps(head_config(tiny_model_dir, toy, tmp_path / "run")), encoding="utf-8")
    assert main(["verify", str(cfg), "--steps", "2", "--options", "packing"]) == 0
    out = capsys.readouterr().out
    assert "packing: the same steps with it on" in out and "all speed options agree with the reference" in out
    settings = tiny_config(tiny_model_dir, write_pair_data(tmp_path / "pairs.jsonl"), tmp_path / "reward")
    settings["method"] = {"type": "reward_model"}
    cfg.write_text(json.dumps(settings), encoding="utf-8")
    assert main(["verify", str(cfg), "--steps", "2", "--options", "packing"]) == 0
    out = capsys.readouterr().out
    assert "packing: the same steps with it on" in out and "all speed options agree with the reference" in out
