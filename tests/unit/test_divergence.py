"""Divergence fails loudly: a non-finite loss, gradient norm or held-out loss stops fit() at once with the step and
what to change, nothing computed from it is saved, and float16 trains with fp32 weights and loss scaling.

pytest tests/unit/test_divergence.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_runs import tiny_config, write_chat_data
from torch import nn

from tunesmith.config import TrainConfig, build_config
from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.models.loading import training_precision
from tunesmith.serve.progress import failure_message
from tunesmith.training.checkpoint import Position, list_checkpoints, load_checkpoint
from tunesmith.training.divergence import DivergedError, advice
from tunesmith.training.loop import Loop, MetricsLog, build_optimizer, fit
from tunesmith.training.objectives import Batch, LossParts

# --- fit() on a toy model: each way a run can diverge -------------------------------------------------------------


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((8, 4), 0.1))


class ToyObjective:
    """A quadratic loss over the trained tokens; from training step `poison_step` on, the loss (or only the
    gradient) is made nan. The no-gradient forward that checks updated weights runs in eval mode and is not counted."""

    def __init__(self, micro_per_step: int, poison_step: int | None = None, poison: str = "loss") -> None:
        self.micro_per_step, self.poison_step, self.poison = micro_per_step, poison_step, poison
        self.calls = 0

    def __call__(self, model: nn.Module, batch: Batch) -> LossParts:
        step = self.calls // self.micro_per_step + 1
        self.calls += model.training
        w = model.w
        if model.training and self.poison_step is not None and step >= self.poison_step and self.poison == "grad":
            w = w + 0
            w.register_hook(lambda g: g * math.nan)  # the loss stays finite, its gradient does not
        out = torch.nn.functional.one_hot(batch.input_ids % 8, 8).float() @ w
        trained = (batch.labels != IGNORE).unsqueeze(-1)
        loss_sum = ((out - 1) ** 2 * trained).sum()
        if model.training and self.poison_step is not None and step >= self.poison_step and self.poison == "loss":
            loss_sum = loss_sum * math.nan
        return LossParts(loss_sum, int(trained.sum()), 0)


def toy_loop(tmp_path: Path, objective=None, evaluate=None, autocast=None, **train) -> Loop:
    cfg = TrainConfig(**{"max_steps": 4, "batch_size": 4, "micro_batch_size": 2, "lr": 0.05, "save_every": 1, **train})
    rows = [Encoded([i % 8, (i + 1) % 8, (i + 2) % 8], [IGNORE, 1, 2], "toy", i) for i in range(8)]
    torch.manual_seed(0)
    model = Toy()
    optimizer, scheduler = build_optimizer(model, cfg, cfg.max_steps)
    return Loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        objective=objective or ToyObjective(cfg.grad_accum),
        train=rows,
        cfg=cfg,
        total_steps=cfg.max_steps,
        pad_id=0,
        device=torch.device("cpu"),
        checkpoints=tmp_path / "checkpoints",
        metrics=MetricsLog(tmp_path / "metrics.jsonl"),
        evaluate=evaluate or (lambda: {"loss": 1.0, "perplexity": math.e}),
        autocast=autocast,
    )


def start() -> Position:
    return Position(0, 0, 0, 0, 0, "toy")


def saved_weights(tmp_path: Path) -> list[torch.Tensor]:
    return [load_file(c / "trainable.safetensors")["w"] for c in list_checkpoints(tmp_path / "checkpoints")]


@pytest.mark.parametrize(("poison", "what"), [("loss", "the training loss is nan"), ("grad", "the gradient norm")])
def test_a_nan_at_step_3_stops_there_and_keeps_step_2(tmp_path, poison, what):
    loop = toy_loop(tmp_path, ToyObjective(2, poison_step=3, poison=poison), keep_checkpoints=5)
    with pytest.raises(DivergedError) as err:
        fit(loop, start())
    message = str(err.value)
    assert "\n" not in message and message.startswith("training diverged at step 3: ") and what in message
    assert "lower train.lr (now 0.05)" in message and "the last good checkpoint is checkpoints/step-2" in message
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step-1", "step-2"]
    assert all(w.isfinite().all() for w in saved_weights(tmp_path))
    assert loop.model.w.isfinite().all()  # the poisoned step was never applied


def test_gradient_norm_is_checked_without_clipping(tmp_path):
    loop = toy_loop(tmp_path, ToyObjective(2, poison_step=2, poison="grad"), max_grad_norm=None)
    with pytest.raises(DivergedError, match=r"at step 2: the gradient norm is nan; .*set train.max_grad_norm"):
        fit(loop, start())


def test_weights_a_step_blew_up_are_never_checkpointed(tmp_path):
    """lr=1e30: the first step's loss and gradients are finite, the weights it leaves are ~1e30 and the next
    forward overflows. That step is caught before its checkpoint is written."""
    loop = toy_loop(tmp_path, lr=1e30)
    with pytest.raises(
        DivergedError, match=r"^training diverged at step 1: the loss after the step's update is (nan|inf)"
    ):
        fit(loop, start())
    assert list_checkpoints(tmp_path / "checkpoints") == []


def test_the_last_step_is_checked_before_the_caller_saves_it(tmp_path):
    loop = toy_loop(tmp_path, lr=1e30, max_steps=1, save_every=0)
    with pytest.raises(DivergedError, match=r"at step 1: the loss after the step's update is (nan|inf)"):
        fit(loop, start())


def test_a_nan_held_out_loss_stops_the_run_before_its_checkpoint(tmp_path):
    losses = iter([2.0, math.nan])
    loop = toy_loop(tmp_path, evaluate=lambda: {"loss": next(losses), "perplexity": 1.0}, eval_every=2, max_steps=6)
    with pytest.raises(DivergedError, match="at step 4: the held-out eval loss is nan"):
        fit(loop, start())
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step-2", "step-3"]


def test_a_held_out_loss_that_blew_up_finitely_stops_the_run_as_diverged(tmp_path):
    """A sweep trial went from a held-out loss of 3.76 to 17.7 in three steps (DoRA, rsLoRA and LoRA+ at a high
    rate) and would have trained on: finite, but the model is lost. Above train.max_loss_ratio times the base's
    (and 1 nat above it) stops the run like a nan does."""
    losses = iter([3.0, 13.0])
    loop = toy_loop(tmp_path, evaluate=lambda: {"loss": next(losses)}, eval_every=2, max_steps=6)
    loop.base_loss = 3.76
    with pytest.raises(DivergedError) as err:
        fit(loop, start())
    assert str(err.value).startswith(
        "training diverged at step 4: the held-out loss is 13, 3.5 times the base model's 3.76 "
        "(train.max_loss_ratio=3); lower train.lr (now 0.05)"
    )
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step-2", "step-3"]
    for base, loss, ratio in ((3.76, 13.0, None), (3.76, 11.0, 3.0), (0.05, 1.0, 3.0)):  # off; under; within 1 nat
        folder = tmp_path / f"{base}-{ratio}"
        folder.mkdir()
        calm = toy_loop(folder, evaluate=lambda loss=loss: {"loss": loss}, eval_every=2, max_steps=6,
                        max_loss_ratio=ratio)  # fmt: skip
        calm.base_loss = base
        assert fit(calm, start()).step == 6


def test_huge_weight_decay_is_named_as_the_cause(tmp_path):
    loop = toy_loop(tmp_path, weight_decay=1e30)
    with pytest.raises(DivergedError, match=r"lower train.weight_decay \(now 1e\+30.*, or lower train.lr"):
        fit(loop, start())


def test_advice_for_an_infinite_lr_that_config_validation_let_through():
    """Defense in depth: the loop names the fix even for values the config should already refuse."""
    cfg = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "lr": math.inf})
    assert advice(cfg, half_precision=False) == "lower train.lr (now inf)"
    cfg = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "weight_decay": math.inf})
    assert advice(cfg, half_precision=True).startswith("lower train.weight_decay (now inf;")


# --- float16: fp32 weights, fp16 autocast, dynamic loss scaling ---------------------------------------------------


def test_float16_trains_fp32_weights_under_fp16_autocast():
    assert training_precision("float16", torch.device("cpu")) == (torch.float32, torch.float16)


def test_loss_scaling_skips_overflowing_steps_and_checkpoints_its_scale(tmp_path):
    """Scaled by 65536 the toy's fp16 gradients overflow: those steps are skipped and the scale halved, not taken
    for divergence; the weights stay finite fp32 and the scale rides in the optimizer state a resume restores."""
    loop = toy_loop(tmp_path, autocast=torch.float16, max_steps=6, lr=0.01)
    position = fit(loop, start())
    assert position.step == 6 and loop.model.w.dtype == torch.float32 and loop.model.w.isfinite().all()
    scale = loop.optimizer.param_groups[0]["loss_scale"]["scale"]
    assert scale < 65536.0
    assert not torch.equal(loop.model.w, torch.full((8, 4), 0.1))  # once the scale fits, steps are taken
    again = toy_loop(tmp_path / "again", autocast=torch.float16, max_steps=6, lr=0.01)
    load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1], again.model, again.optimizer, again.scheduler)
    assert again.optimizer.param_groups[0]["loss_scale"]["scale"] <= 2 * scale


def test_fp16_gradients_that_overflow_even_unscaled_are_divergence(tmp_path):
    """Each overflow halves the scale from 2**16; at 1 the gradients overflow unscaled, and the run stops. Every
    step before was skipped, so the checkpoints hold the starting weights."""
    objective = ToyObjective(2, poison_step=1, poison="grad")
    loop = toy_loop(tmp_path, objective, autocast=torch.float16, max_steps=20, save_every=5)
    with pytest.raises(DivergedError, match=r"at step 17: the gradient norm is nan; .*train with model.dtype=float32"):
        fit(loop, start())
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step-10", "step-15"]
    assert all(torch.equal(w, torch.full((8, 4), 0.1)) for w in saved_weights(tmp_path))


def test_full_fine_tuning_in_float16_trains_instead_of_turning_nan(tiny_model_dir, tmp_path):
    """Before, model.dtype=float16 kept fp16 weights under AdamW and one step made every weight nan."""
    from tunesmith.recipes.train import run_training

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    raw = tiny_config(tiny_model_dir, data, tmp_path / "run", dtype="float16", method="full", max_steps=4, lr=1e-3)
    result = run_training(build_config(raw), log=lambda *_: None)
    final = load_file(result.run_dir / "final" / "model.safetensors")
    assert all(t.dtype == torch.float32 and t.isfinite().all() for t in final.values())
    assert result.tuned["metrics"]["loss"] < result.base["metrics"]["loss"]


# --- the real CLI, as `tunesmith train` and as a serve job's trainer ----------------------------------------------


def test_lr_1e30_exits_2_with_one_line_and_writes_no_weights(tiny_model_dir, tmp_path, capsys):
    """The CLI's exit code and output, read back as the serve worker reads a failed job's log."""
    from tunesmith.cli import main

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    config = tmp_path / "cfg.yaml"
    raw = tiny_config(tiny_model_dir, data, tmp_path / "run", save_every=1, max_steps=3)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    rc = main(["train", str(config), "train.lr=1e30"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 2, text
    assert "Traceback" not in text
    assert not (tmp_path / "run" / "final").exists() and list_checkpoints(tmp_path / "run" / "checkpoints") == []
    log = tmp_path / "job.log"  # what the worker's trainer subprocess leaves: its command line, then its output
    log.write_text(f"\n$ tunesmith train {config}\n{text}", encoding="utf-8")
    message = failure_message(log, rc)
    assert message.startswith("error: training diverged at step 1: ") and "lower train.lr (now 1e+30)" in message
    assert "\n" not in message and str(tmp_path) not in message
