"""RunDir: a run folder's paths and readers, and the one loader of "the model as the run trained it" on tiny runs of
the on-disk Llama (a LoRA run and a full run, one step each), compared with transformers and peft loading final/
on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import Config, build_config
from tunesmith.models.registry import is_run_dir
from tunesmith.rundir import RUN_ENTRIES, RunDir, clear_run

# --- paths and readers (no model) -------------------------------------------------------------------------------


def test_paths_are_the_entries_a_run_writes(tmp_path):
    run = RunDir(tmp_path)
    paths = [run.manifest_file, run.config_file, run.audit_file, run.metrics_file, run.checkpoints, run.final,
             run.final_staging, run.final_aside, run.initial_adapter, run.eval_dir, run.base, run.model_card,
             run.report]  # fmt: skip
    assert sorted(p.name for p in paths) == sorted(RUN_ENTRIES)  # what overwrite clears is exactly this layout
    assert all(p.parent == tmp_path for p in paths)
    assert run.eval_file("tuned") == tmp_path / "eval" / "tuned.json"
    assert RunDir.at(tmp_path / "final") == RunDir.at(tmp_path) == run
    assert RunDir(str(tmp_path)).path == tmp_path


def test_is_run_needs_final_and_config_and_is_run_dir_agrees(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_run and not is_run_dir(tmp_path)
    run.final.mkdir()
    assert not run.is_run and run.model_dir == run.final
    run.config_file.write_text(Config().to_yaml(), encoding="utf-8")
    assert run.is_run and is_run_dir(tmp_path)
    clear_run(tmp_path)
    assert not run.is_run and run.model_dir == tmp_path  # a folder with no final/ is taken as the model itself


def _saved(tmp_path: Path, raw: dict) -> RunDir:
    run = RunDir(tmp_path)
    run.config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return run


def test_config_and_method_of_a_saved_run(tmp_path):
    cfg = build_config({"model": {"base": "/models/m"}, "data": {"max_length": 96}})
    run = _saved(tmp_path, yaml.safe_load(cfg.to_yaml()))
    assert run.config() == cfg
    assert run.method == "sft"


def test_a_run_saved_with_the_old_task_keys_reads_as_its_method(tmp_path):
    """Runs written before the `method:` section kept the head's settings under `task`."""
    raw = yaml.safe_load(Config().to_yaml())
    raw.pop("method", None)
    raw["data"].pop("replay")  # nor did they know replay
    raw["task"] |= {"type": "classification", "labels": ["no", "yes"], "objective": "head", "loss": "focal",
                    "class_weights": "balanced"}  # fmt: skip
    run = _saved(tmp_path, raw)
    assert run.method == "classifier"
    method = run.config().method
    assert (method.loss, method.class_weights, method.labels) == ("focal", "balanced", ["no", "yes"])


def test_manifest_metrics_and_eval_records(tmp_path):
    run = RunDir(tmp_path)
    run.manifest_file.write_text(json.dumps({"seed": 3}), encoding="utf-8")
    records = [{"step": 1, "split": "train", "loss": 2.5}, {"step": 1, "split": "eval", "final": True}]
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")
    run.eval_dir.mkdir()
    run.eval_file("tuned").write_text(json.dumps({"metrics": {"loss": 1.0}}), encoding="utf-8")
    assert run.manifest() == {"seed": 3}
    assert run.metrics() == records
    assert run.eval_record("tuned") == {"metrics": {"loss": 1.0}}


def test_model_kind_is_read_from_the_files(tmp_path):
    from tunesmith.errors import TunesmithError
    from tunesmith.models.trained import NoFinishedModel, adapter_base, model_kind

    adapter, full, empty = (tmp_path / n for n in ("adapter", "full", "empty"))
    for folder in (adapter, full, empty):
        folder.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS"}), encoding="utf-8")
    (full / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}), encoding="utf-8")
    assert model_kind(adapter) == "classifier" and model_kind(full) == "causal_lm"
    (adapter / "adapter_config.json").write_text(json.dumps({"task_type": "CAUSAL_LM"}), encoding="utf-8")
    (full / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    assert model_kind(adapter) == "causal_lm" and model_kind(full) == "classifier"
    with pytest.raises(NoFinishedModel, match="no finished model"):
        model_kind(empty)
    (adapter / "adapter_config.json").write_text("[1, 2]", encoding="utf-8")  # JSON, but not an object
    with pytest.raises(TunesmithError, match=r"adapter_config\.json: cannot load the adapter: .* not an object"):
        model_kind(adapter)
    with pytest.raises(TunesmithError, match="not an object"):
        adapter_base(adapter)


def test_catalog_entries_carry_the_method_and_whether_it_generates(tmp_path):
    """Serve asks the method class what a run can do; a run saved with the old task keys is served as before."""
    from tunesmith.serve.catalog import Catalog

    runs = tmp_path / "runs"
    old_head = yaml.safe_load(Config().to_yaml())
    old_head.pop("method", None)
    old_head["data"].pop("replay")  # written before replay existed
    old_head["task"] |= {"type": "classification", "labels": ["no", "yes"], "objective": "head"}
    for name, raw in (("chat", yaml.safe_load(Config().to_yaml())), ("labels", old_head)):
        run = RunDir(runs / name)
        run.final.mkdir(parents=True)
        run.eval_dir.mkdir()
        run.eval_file("tuned").write_text("{}", encoding="utf-8")
        raw["model"]["base"] = "/models/tiny"
        run.config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    entries = {e.id: e for e in Catalog(runs, []).runs()}
    chat, labels = entries["ft:tiny:chat"], entries["ft:tiny:labels"]
    assert (chat.method, chat.generative, labels.method, labels.generative) == ("sft", True, "classifier", False)
    assert chat.as_json()["task"] == "generation" and labels.as_json()["task"] == "classification"
    assert set(chat.as_json()) == {"id", "object", "created", "owned_by", "task"}


# --- the model as the run trained it -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A LoRA run and a full fine-tuning run of the tiny base, one optimizer step each."""
    from tunesmith.cli import main

    root = tmp_path_factory.mktemp("rundir")
    data = write_chat_data(root / "train.jsonl", n=24)
    runs = {}
    for method in ("lora", "full"):
        cfg = tiny_config(tiny_model_dir, data, root / method, method=method, max_steps=1, lr=5e-2)
        cfg["audit"] = {"enabled": False}
        (root / f"{method}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        assert main(["train", str(root / f"{method}.yaml")]) == 0
        runs[method] = root / method
    return runs


def _logits(model, tokenizer):
    import torch

    ids = torch.tensor([tokenizer("what is 2 plus 3? the answer is 5.")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.slow
def test_a_lora_run_loads_as_peft_loads_it_kept_apart_or_merged(trained_runs, tiny_model_dir):
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.config import ModelConfig
    from tunesmith.eval.chat import load_final
    from tunesmith.models.loading import load_base
    from tunesmith.models.trained import TrainedSettings, load_run

    cpu, run = torch.device("cpu"), RunDir(trained_runs["lora"])
    trained = load_run(run, cpu)
    assert trained.kind == "causal_lm" and trained.settings == TrainedSettings.of_config(run.config())
    assert isinstance(trained.model, PeftModel)  # the adapter stays apart, as generate and eval load it
    ours = _logits(trained.model, trained.tokenizer)
    alone = AutoPeftModelForCausalLM.from_pretrained(run.final, dtype=torch.float32).eval()
    torch.testing.assert_close(ours, _logits(alone, trained.tokenizer), rtol=0, atol=0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    assert not torch.allclose(ours, _logits(base, trained.tokenizer), atol=1e-4)  # the adapter is on

    merged = load_run(run, cpu, torch.float32, merged=True)  # what a run continuing from this one starts from
    assert not isinstance(merged.model, PeftModel)
    expected = PeftModel.from_pretrained(base, run.final).merge_and_unload()
    torch.testing.assert_close(_logits(merged.model, trained.tokenizer), _logits(expected, trained.tokenizer))
    torch.testing.assert_close(_logits(merged.model, trained.tokenizer), ours, rtol=1e-4, atol=1e-4)

    model, tokenizer = load_final(run.path, cpu)  # the loaders that remain go through it
    torch.testing.assert_close(_logits(model, tokenizer), ours, rtol=0, atol=0)
    continued = load_base(ModelConfig(base=str(run.path)), cpu, torch.float32)
    assert continued.weights_dir == run.final
    torch.testing.assert_close(_logits(continued.model, tokenizer), _logits(expected, tokenizer))


@pytest.mark.slow
def test_a_full_run_loads_as_transformers_loads_it(trained_runs, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.eval.predict import NotAHead, load_head
    from tunesmith.models.trained import load_run

    cpu, run = torch.device("cpu"), RunDir(trained_runs["full"])
    trained = load_run(run, cpu)
    assert trained.kind == "causal_lm" and run.method == "sft"
    ours = _logits(trained.model, trained.tokenizer)
    alone = AutoModelForCausalLM.from_pretrained(run.final, dtype=torch.float32).eval()
    torch.testing.assert_close(ours, _logits(alone, trained.tokenizer), rtol=0, atol=0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    assert not torch.allclose(ours, _logits(base, trained.tokenizer), atol=1e-4)  # one step changed the weights
    torch.testing.assert_close(_logits(load_run(run.final, cpu, merged=True).model, trained.tokenizer), ours)
    with pytest.raises(NotAHead, match="not a classification-head run"):
        load_head(run.path / "final", cpu)


def test_keys_added_since_a_run_was_saved_are_no_change_unless_their_default_would_change_it():
    """A run saved before a key existed resumes under a newer schema: the key's default is what the run did. Replay,
    whose default for causal-LM runs is on, counts as off in a run saved before it (and a resume says so), and so
    does its KL penalty."""
    from tunesmith.rundir import config_changes

    raw = yaml.safe_load(Config().to_yaml())
    for key in ("dora", "rslora", "init", "lora_plus_ratio"):
        raw["adapter"].pop(key)
    raw["eval"].pop("probe_data")
    raw["data"].pop("validation_fraction")
    assert config_changes(raw, Config()) == []
    raw["data"]["replay"].pop("kl")  # saved with replay, before its KL penalty existed: no penalty
    assert config_changes(raw, Config()) == ["data.replay.kl"]
    assert config_changes(raw, build_config({"data": {"replay": {"kl": 0}}})) == []
    raw["data"].pop("replay")
    assert config_changes(raw, Config()) == ["data.replay.fraction", "data.replay.kl"]
    assert config_changes(raw, build_config({"data": {"replay": {"fraction": 0}}})) == []
