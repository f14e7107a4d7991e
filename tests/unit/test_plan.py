"""`tunesmith plan` on the tiny on-disk Llama: the counts it reports are the loop's, and it warns before a step
that would not fit."""

from __future__ import annotations

import pytest
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.recipes import plan as plan_module
from tunesmith.recipes.plan import make_plan
from tunesmith.training.distributed import DistributedError
from tunesmith.training.loop import steps_per_epoch


def test_plan_counts_match_the_data_and_measure_a_step(tiny_model_dir, tmp_path):
    data = write_chat_data(tmp_path / "train.jsonl", n=40)
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=None, epochs=2))
    plan = make_plan(cfg, calibration_steps=2, log=lambda *_: None)
    assert plan.train_rows + plan.eval_rows == 40
    assert plan.steps_per_epoch == steps_per_epoch(plan.train_rows, 8)
    assert plan.total_steps == 2 * plan.steps_per_epoch
    assert plan.trained_tokens_per_epoch < plan.tokens_per_epoch <= plan.padded_tokens_per_epoch
    assert plan.largest_batch[0] == 4 and plan.longest_possible_batch[0] == 4
    assert plan.memory_any_order.total >= plan.memory.total
    # The peak is read after a reset to the current RSS, which may sit a little under the RSS sampled earlier.
    assert plan.measured_peak is not None and plan.measured_peak > 0.9 * plan.memory.process
    assert plan.memory_checkpointed.activations < plan.memory.activations
    assert plan.seconds_per_step > 0 and plan.epoch_seconds > 0 and plan.tokens_per_second > 0
    assert not plan.warnings
    assert not (tmp_path / "run").exists()  # planning writes no run


def test_plan_warns_and_does_not_try_a_step_that_cannot_fit(tiny_model_dir, tmp_path, monkeypatch):
    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", method="full"))
    monkeypatch.setattr(plan_module, "available_memory", lambda device: 0)
    monkeypatch.setattr(plan_module, "current_rss", lambda: 10 * 2**20)
    plan = make_plan(cfg, calibration_steps=1, log=lambda *_: None)
    assert plan.measured_peak is None
    text = "\n".join(plan.warnings)
    assert "train.micro_batch_size=2" in text and "adapter.method=lora" in text and "data.max_length=64" in text


def test_plan_under_cpu_mixed_precision_says_to_leave_headroom(tiny_model_dir, tmp_path):
    """The run's resident peak under CPU mixed precision climbs past what the plan's steps show (plan-accuracy
    benchmark), so the plan says so; in fp32 (the test above) it has nothing to warn about."""
    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", dtype="bf16-mixed"))
    plan = make_plan(cfg, calibration_steps=1, log=lambda *_: None)
    assert plan.measured_peak is not None
    assert any("mixed precision on a CPU" in w for w in plan.warnings), plan.warnings


def test_plan_for_several_ranks_shares_the_step_and_fsdp_shares_the_state(tiny_model_dir, tmp_path):
    """--ranks N: compute per step is the measured step over N; DDP keeps every rank's weights, gradients (twice:
    its buckets) and optimizer state whole and all-reduces the gradients; FSDP keeps 1/N of them plus the gathered
    units, and gathers the weights twice and reduce-scatters the gradients; a world size that cannot split a step is
    refused with the sizes that can."""
    data = write_chat_data(tmp_path / "train.jsonl", n=40)
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run", method="full", batch_size=16)
    ddp = make_plan(build_config(settings), calibration_steps=1, log=lambda *_: None, ranks=4)
    settings["train"]["distributed"] = "fsdp"
    fsdp = make_plan(build_config(settings), calibration_steps=1, log=lambda *_: None, ranks=4)
    one = fsdp.memory
    assert ddp.ranks.compute_seconds == pytest.approx(ddp.seconds_per_step / 4)
    assert ddp.ranks.gradients == 2 * ddp.memory.gradients and ddp.ranks.optimizer == ddp.memory.optimizer
    assert fsdp.ranks.optimizer == one.optimizer // 4 and fsdp.ranks.gradients < one.gradients
    assert fsdp.ranks.activations == one.activations
    assert fsdp.ranks.saved_by_sharding > 0
    weights = fsdp.total_params * 4
    assert fsdp.ranks.sent_bytes == int(3 * 0.75 * weights)
    assert ddp.ranks.sent_bytes == int(2 * 0.75 * ddp.trainable_params * 4)
    with pytest.raises(DistributedError, match="cannot be split evenly over 3 ranks"):
        make_plan(build_config(settings), calibration_steps=1, log=lambda *_: None, ranks=3)
