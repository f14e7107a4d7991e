"""The loop, objectives, checkpoints and resume, on the tiny on-disk Llama (seconds per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import Config, build_config
from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.methods import build_method
from tunesmith.models.loading import load_tokenizer
from tunesmith.recipes.setup import build_loop, load, trainable_model
from tunesmith.recipes.train import run_training
from tunesmith.rundir import RunDirError
from tunesmith.training.checkpoint import CHECKPOINT_FILES, Position, clean_staging, list_checkpoints
from tunesmith.training.loop import fit, lr_lambda
from tunesmith.training.objectives import CausalLMObjective, collate
from tunesmith.training.order import epoch_order


def final_trainable(run: Path) -> dict[str, torch.Tensor]:
    return load_file(list_checkpoints(run / "checkpoints")[-1] / "trainable.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


@pytest.fixture
def data(tmp_path) -> Path:
    return write_chat_data(tmp_path / "train.jsonl")


# --- objective -----------------------------------------------------------------------------------------------


def test_objective_matches_full_logits_cross_entropy(tiny_model_dir, tiny_tokenizer):
    """Projecting only trained positions gives the same loss as the plain full-logits computation."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [
        Encoded([5, 6, 7, 8, 9], [IGNORE, IGNORE, 7, 8, 9], "x", 1),
        Encoded([5, 6, 7], [IGNORE, IGNORE, 7], "x", 2),
    ]
    batch = collate(rows, tiny_tokenizer.pad_token_id)
    parts = CausalLMObjective()(model, batch)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        batch.labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    assert parts.tokens == 4
    torch.testing.assert_close(parts.loss_sum, expected, atol=1e-5, rtol=1e-5)


def test_padding_changes_nothing(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    short = Encoded([5, 6, 7], [IGNORE, 6, 7], "x", 1)
    alone = CausalLMObjective()(model, collate([short], 0)).loss_sum
    padded = CausalLMObjective()(model, collate([short, Encoded([5] * 30, [IGNORE] * 30, "x", 2)], 0)).loss_sum
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


# --- schedule and order ------------------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(total=10, warmup=2, schedule="cosine")
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0) and f(10) == pytest.approx(0.0, abs=1e-9)
    assert all(f(i) >= f(i + 1) for i in range(2, 10))
    assert lr_lambda(10, 0, "linear")(5) == pytest.approx(0.5)
    assert lr_lambda(10, 0, "constant")(9) == 1.0


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(50, 1, 0)) == list(range(50))
    assert epoch_order(50, 1, 0) == epoch_order(50, 1, 0)
    assert epoch_order(50, 1, 0) != epoch_order(50, 1, 1)
    assert epoch_order(50, 1, 0) != epoch_order(50, 2, 0)


# --- the loop ------------------------------------------------------------------------------------------------------


def fitted_weights(cfg: Config, folder: Path) -> dict[str, torch.Tensor]:
    """The trainable weights after a Loop over cfg's rows, built directly (recipes/setup.py, as train builds it):
    no run folder, no audit, no evaluation around it."""
    method = build_method(cfg)
    loaded = load(cfg, method)
    folder.mkdir(parents=True, exist_ok=True)  # the loop's metrics and checkpoints
    loop = build_loop(cfg, method, loaded, trainable_model(cfg, method, loaded, None), folder, log=lambda *_: None)
    fit(loop, Position(0, 0, 0, 0, 0, ""))
    return {n: p.detach().clone() for n, p in loop.model.named_parameters() if p.requires_grad}


def test_accumulation_equals_one_big_batch(tiny_model_dir, data, tmp_path):
    """batch 8 as 1x8, 2x4 and 4x2 micro-batches: same weights, because the loss is normalised by the trained
    tokens of the whole step rather than averaged per micro-batch."""
    results = []
    for micro in (8, 4, 2):
        settings = tiny_config(tiny_model_dir, data, tmp_path / f"m{micro}", micro_batch_size=micro, max_steps=3)
        results.append(fitted_weights(build_config(settings), tmp_path / f"m{micro}"))
    assert_same_weights(results[0], results[1], atol=1e-5)
    assert_same_weights(results[0], results[2], atol=1e-5)


def test_lora_trains_adapter_and_leaves_base_frozen(tiny_model_dir, data, tmp_path):
    from transformers import AutoModelForCausalLM

    run = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "run")), log=lambda *_: None)
    trained = final_trainable(run.run_dir)
    assert trained and all("lora_" in name for name in trained)
    assert any(float(t.abs().sum()) > 0 for n, t in trained.items() if "lora_B" in n)  # B starts at zero
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = PeftModel.from_pretrained(base, run.run_dir / "final")
    for name, tensor in tuned.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        assert torch.equal(tensor, before[key]), f"frozen weight {key} changed"
    assert run.tuned["metrics"]["loss"] < run.base["metrics"]["loss"]


def test_full_fine_tuning_changes_every_weight(tiny_model_dir, data, tmp_path):
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "full", method="full", max_steps=2))
    run = run_training(cfg, log=lambda *_: None)
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run.run_dir / "final").state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)


def test_metrics_and_run_directory(tiny_model_dir, data, tmp_path):
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", eval_every=2, save_every=2))
    out = run_training(cfg, log=lambda *_: None).run_dir
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [x["step"] for x in lines if "lr" in x]
    eval_steps = [x["step"] for x in lines if x.get("split") == "eval"]
    assert train_steps == [1, 2, 3, 4, 5, 6]
    assert eval_steps == [0, 2, 4, 6]
    assert all(x["tokens_per_s"] > 0 and x["trained_tokens"] > 0 for x in lines if "lr" in x)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and len(manifest["data"][0]["sha256"]) == 64
    assert manifest["chat_template_sha256"] and manifest["tokenizer_sha256"]
    assert {"torch", "transformers", "peft"} <= set(manifest["packages"])
    assert build_config(__import__("yaml").safe_load((out / "config.yaml").read_text())) == cfg
    card = (out / "MODEL_CARD.md").read_text()
    assert "eval loss" in card and str(tiny_model_dir) in card
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-4", "step-6"]  # keep_checkpoints=2


# --- checkpoints and resume ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["no-dropout", "dropout"])
def test_resume_after_crash_matches_uninterrupted(tiny_model_dir, data, tmp_path, dropout):
    """Dropout makes the RNG state matter: the resumed run must restore it to draw the same masks."""
    settings = {"max_steps": 9, "save_every": 3, "eval_every": 4, "dropout": dropout}
    whole = run_training(
        build_config(tiny_config(tiny_model_dir, data, tmp_path / "a", **settings)), log=lambda *_: None
    )

    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "b", **settings))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, log=lambda *_: None, crash_after_step=5)
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "checkpoints")] == ["step-3"]
    resumed = run_training(cfg, resume=True, log=lambda *_: None)

    assert_same_weights(final_trainable(whole.run_dir), final_trainable(resumed.run_dir))
    assert resumed.tuned["metrics"]["loss"] == pytest.approx(whole.tuned["metrics"]["loss"], abs=1e-6)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(x)["step"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == expected  # nothing logged twice, nothing lost


def test_a_resume_keeps_the_precision_auto_chose_when_the_run_started(tiny_model_dir, data, tmp_path, monkeypatch):
    """`auto` autocasts to bf16 on a CPU only where bf16 measured faster. A resume keeps what manifest.json recorded
    even when a measurement now says otherwise (the cache deleted, the machine busier), so it still ends at the
    uninterrupted run's weights."""
    from tunesmith.models import cpu_speed, loading

    monkeypatch.setattr(loading, "has_bf16", lambda device: True)
    monkeypatch.setattr(cpu_speed, "bf16_pays_off", lambda threads=None: True)
    settings = {"max_steps": 6, "save_every": 3, "dtype": "auto"}
    whole = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "a", **settings)), log=print)
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["precision"]["autocast"] == "torch.bfloat16"

    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "b", **settings))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(cfg, log=lambda *_: None, crash_after_step=4)
    monkeypatch.setattr(cpu_speed, "bf16_pays_off", lambda threads=None: False)  # a fresh run would now pick fp32
    said: list[str] = []
    resumed = run_training(cfg, resume=True, log=said.append)
    assert any("keeping the run's float32 weights with bfloat16 autocast" in line for line in said)
    assert_same_weights(final_trainable(whole.run_dir), final_trainable(resumed.run_dir))

    fp32 = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "c", **settings)), log=print)
    with pytest.raises(AssertionError):  # what the resume would have ended at had it chosen again
        assert_same_weights(final_trainable(whole.run_dir), final_trainable(fp32.run_dir))


def test_a_run_moved_to_another_kind_of_device_continues_in_that_ones_precision_and_says_so():
    from tunesmith.recipes.setup import run_precision

    cpu, said = torch.device("cpu"), []
    on_gpu = {"device": "cuda", "weights": "torch.bfloat16", "autocast": None}
    assert run_precision("float32", cpu, on_gpu, said.append) == (torch.float32, None)
    assert "started on cuda and continues on cpu" in said[0] and "bfloat16 weights" in said[0]
    mixed = {"device": "cpu", "weights": "torch.float32", "autocast": "torch.bfloat16"}
    assert run_precision("float32", cpu, mixed, said.append) == (torch.float32, torch.bfloat16)
    for old in (None, {}, {"device": "cpu", "weights": "torch.nothing", "autocast": None}):  # predates the record
        assert run_precision("float32", cpu, old, said.append) == (torch.float32, None)


def test_half_written_checkpoints_are_ignored_and_cleaned(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (3, 6):
        (folder / f"step-{step}").mkdir(parents=True)
        for name in CHECKPOINT_FILES:
            (folder / f"step-{step}" / name).write_text("{}")
    # position.json alone outlived the weights (the old re-save deleted in place): not trusted
    (folder / "step-6" / "trainable.safetensors").unlink()
    (folder / ".step-9-abc").mkdir()
    (folder / ".step-9-abc" / "trainable.safetensors").write_bytes(b"partial")
    assert [p.name for p in list_checkpoints(folder)] == ["step-3"]
    clean_staging(folder)
    assert not (folder / ".step-9-abc").exists()


def test_resume_refuses_a_changed_config(tiny_model_dir, data, tmp_path):
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=2))
    run_training(cfg, log=lambda *_: None)
    changed = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=2, lr=1e-2))
    with pytest.raises(RunDirError, match=r"train\.lr"):
        run_training(changed, resume=True, log=lambda *_: None)
    with pytest.raises(RunDirError, match="already holds a run"):
        run_training(cfg, log=lambda *_: None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a run", encoding="utf-8")
    with pytest.raises(RunDirError, match="not a tunesmith run"):
        run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "mine")), resume=True)


def test_continue_from_a_finished_run_is_not_resume(tiny_model_dir, data, tmp_path):
    first = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / "first")), log=lambda *_: None)
    second_cfg = tiny_config(tiny_model_dir, data, tmp_path / "second", max_steps=2)
    second_cfg["model"]["base"] = str(first.run_dir)
    second = run_training(build_config(second_cfg), log=lambda *_: None)
    # It starts where the first run ended: its base loss is the first run's tuned loss.
    assert second.base["metrics"]["loss"] == pytest.approx(first.tuned["metrics"]["loss"], abs=1e-5)
    adapter = json.loads((second.run_dir / "final" / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == (second.run_dir / "base").resolve()
    assert load_tokenizer(second.run_dir / "final").chat_template
