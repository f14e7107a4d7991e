"""The one training loop: plain PyTorch, readable top to bottom.

    tunesmith train examples/gsm8k-lora.yaml      # builds everything, then calls fit()

Per optimizer step: take the next `batch_size` examples of this epoch's seeded order, split them into
micro-batches, accumulate gradients normalised by the trained tokens of the *whole* step, clip, step, schedule,
then log / evaluate / checkpoint on their cadences.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from peft.helpers import disable_input_dtype_casting
from torch import nn
from tqdm import tqdm

from tunesmith.config import TrainConfig
from tunesmith.data.templates import Encoded
from tunesmith.faults import fault
from tunesmith.rundir import write_text
from tunesmith.training.checkpoint import Position, save_checkpoint
from tunesmith.training.distributed import SINGLE, Parallel, World, all_max, all_sum, share
from tunesmith.training.divergence import check_blowup, check_finite, gradient_norm
from tunesmith.training.frozen import frozen_in
from tunesmith.training.loss_scale import loss_scaler, remember
from tunesmith.training.memory import peak_rss
from tunesmith.training.objectives import Batch, Objective, make_batch
from tunesmith.training.order import Order, epoch_order


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_examples / batch_size))


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_examples, cfg.batch_size)))


# What the progress line shows of an evaluation during training, beside the loss, when the method reports it.
EVAL_SHOWN = (("perplexity", 2), ("accuracy", 3), ("preference_accuracy", 3), ("reward_margin", 3))


def data_fingerprint(rows: list[Encoded]) -> str:
    digest = hashlib.sha256()
    for r in rows:
        parts = [r.input_ids, r.labels, r.target]
        if r.rejected is not None:  # a preference pair: both sides
            parts += [r.rejected.input_ids, r.rejected.labels]
        if r.desirable is not None:  # a KTO row
            parts.append(r.desirable)
        digest.update(json.dumps(parts).encode())
    return digest.hexdigest()[:16]


def lr_lambda(total: int, warmup: int, schedule: str) -> Callable[[int], float]:
    """Linear warmup to the peak, then cosine or linear decay to zero (or constant)."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, total: int, b_lr_ratio: float | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and the schedule. `b_lr_ratio` (LoRA+): the LoRA B factors get their own group at lr times the ratio;
    the schedule scales every group alike."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    fast = [p for name, p in named if b_lr_ratio is not None and ".lora_B." in name]
    fast_ids = {id(p) for p in fast}
    params = [p for _, p in named if id(p) not in fast_ids]
    # Norms and biases are not decayed: weight decay on them only shrinks scales the model needs.
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if fast:
        groups.append({"params": fast, "weight_decay": cfg.weight_decay, "lr": cfg.lr * b_lr_ratio})
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)
    warmup = round(cfg.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, warmup, cfg.schedule))
    return optimizer, scheduler


class MetricsLog:
    """Append-only metrics.jsonl; on resume, lines past the checkpoint are dropped so nothing is counted twice."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled  # False on every rank but the first of a distributed run: one writer
        self.sinks: list[Callable[[dict], None]] = []  # experiment trackers (training/trackers.py)

    def truncate_after(self, step: int) -> int:
        """Keep the records up to `step` (but not the run's `final` one: the end of a run is always redone); return
        how many lines were dropped as unreadable (a line a stop or a full disk cut short)."""
        if not self.enabled or not self.path.is_file():
            return 0
        kept, unreadable = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                unreadable += 1
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step and not record.get("final"):
                kept.append(line)
        write_text(self.path, "".join(line + "\n" for line in kept))
        return unreadable

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        fault("metrics", self.path)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink(record)


BatchFn = Callable[[list[Encoded], int, int | None], Batch]  # rows, pad id, pack length -> one micro-batch


def micro_batches(
    rows: list[Encoded], indices: list[int], micro_batch_size: int, make: BatchFn, pad_id: int, pack_to: int | None
) -> list[Batch]:
    """One optimizer step's rows (`indices`, in order) as its micro-batches: how fit, plan and verify all batch."""
    return [
        make([rows[i] for i in indices[j : j + micro_batch_size]], pad_id, pack_to)
        for j in range(0, len(indices), micro_batch_size)
    ]


@dataclass
class Loop:
    """Everything fit() needs, built by the recipe from the config."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    objective: Objective
    train: list[Encoded]
    cfg: TrainConfig
    total_steps: int
    pad_id: int
    device: torch.device
    checkpoints: Path
    metrics: MetricsLog
    evaluate: Callable[[], dict[str, float]]  # held-out metrics of the model as it is now
    crash_after_step: int | None = None  # tests only: raise after this step, as a killed process would stop
    order: Order | None = None  # epoch -> row indices (training/order.py); None: a permutation of all rows
    pack_to: int | None = None  # pack each micro-batch into sequences of at most this many tokens (packing.py)
    make_batch: BatchFn = make_batch  # the method's batching (methods/*.py); the causal LM's by default
    autocast: torch.dtype | None = None  # mixed precision: fp32 weights, this dtype inside forward (GPU auto: bf16)
    # Called with (step, held-out metrics) after each train.eval_every evaluation; a search uses it to report the
    # trial's progress and to stop a trial it prunes (by raising).
    on_eval: Callable[[int, dict[str, float]], None] | None = None
    epoch_rows: int | None = None  # rows an epoch visits, when not every training row (replay: prepare.epoch_length)
    parallel: Parallel | None = None  # data-parallel under torchrun (training/distributed.py); None: one process
    # The base model's held-out loss when it is a per-token NLL (it has a perplexity): an evaluation far above it
    # stops the run as diverged (training/divergence.check_blowup).
    base_loss: float | None = None

    @property
    def world(self) -> World:
        return self.parallel.world if self.parallel is not None else SINGLE


def accumulate(
    model: nn.Module,
    objective: Objective,
    micro: list[Batch],
    autocast: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    parallel: Parallel | None = None,
    real_batches: int | None = None,
) -> tuple[float, int, int, int]:
    """Forward and backward over one step's micro-batches; returns (loss sum, correct, real tokens, trained tokens),
    of the whole step (every rank's, in a data-parallel run).

    The loss is normalised by the trained tokens of the whole step, not per micro-batch: otherwise a micro-batch
    with few trained tokens would weigh as much as one with many, and accumulation would not equal a big batch.
    With fp16 autocast `scaler` scales the loss before backward (training/loss_scale.py); the sums returned are
    unscaled. Data-parallel (`parallel`): the step's trained tokens are summed over the ranks before any backward,
    and each rank's loss is multiplied by the world size, which the gradient averaging divides out again, so the
    reduced gradient is the single-process one. Micro-batches from `real_batches` on are fillers (a rank with a
    short share of the last step of an epoch still takes part in every collective); their loss is multiplied by 0."""
    world = parallel.world if parallel is not None else SINGLE
    real_batches = len(micro) if real_batches is None else real_batches
    local = sum(b.trained_tokens for b in micro[:real_batches])
    window = int(all_sum([local], world)[0])
    loss_sum, correct, real = 0.0, 0, 0
    # Frozen weights already in the autocast dtype: no cast per step (frozen.py). Under autocast, peft's own cast of
    # a LoRA layer's input to its fp32 factors is undone by autocast right after (bf16 -> fp32 -> bf16, exact): it
    # is skipped, which saves two full copies of every bf16 input (the MLP's down projection, the attention output).
    with frozen_in(model, autocast), disable_input_dtype_casting(model, active=autocast is not None):
        for i, batch in enumerate(micro):
            filler = i >= real_batches
            held = parallel.held(i < len(micro) - 1) if parallel is not None else nullcontext()
            with (
                held,
                torch.autocast(
                    batch.input_ids.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
                ),
            ):
                if parallel is not None:
                    part_sum, part_correct = parallel.forward(batch)
                else:
                    parts = objective(model, batch)
                    part_sum, part_correct = parts.loss_sum, parts.correct
                loss = part_sum / max(1, window) * (0.0 if filler else world.size)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if not filler:
                loss_sum += float(part_sum.detach())
                correct += part_correct
                real += batch.real_tokens
    if world.distributed:
        loss_sum, correct, real = all_sum([loss_sum, correct, real], world)
        correct, real = int(correct), int(real)
    return loss_sum, correct, real, window


def _step_indices(loop: Loop, position: Position) -> list[int]:
    if loop.order is not None:
        order = loop.order(position.epoch)
    else:
        order = epoch_order(len(loop.train), loop.cfg.seed, position.epoch)
    start = position.batch_in_epoch * loop.cfg.batch_size
    return order[start : start + loop.cfg.batch_size]


def _rank_batches(loop: Loop, indices: list[int]) -> tuple[list[Batch], int]:
    """This rank's micro-batches of the step's examples `indices` and how many of them are real. Every rank runs as
    many as the rank with the most (FSDP gathers weights in every forward, so the ranks' forwards must pair up): a
    rank short of examples (the last step of an epoch) repeats the step's first example as fillers, not trained."""
    cfg = loop.cfg
    mine = share(indices, loop.world)
    micro = micro_batches(loop.train, mine, cfg.micro_batch_size, loop.make_batch, loop.pad_id, loop.pack_to)
    short = all_max(len(micro), loop.world) - len(micro)
    if short:
        micro += [loop.make_batch([loop.train[indices[0]]], loop.pad_id, loop.pack_to)] * short
    return micro, len(micro) - short


def _advance(position: Position, n_examples: int, batch_size: int, examples: int, tokens: int) -> Position:
    per_epoch = steps_per_epoch(n_examples, batch_size)
    batch = position.batch_in_epoch + 1
    epoch = position.epoch + batch // per_epoch
    return Position(
        step=position.step + 1,
        epoch=epoch,
        batch_in_epoch=batch % per_epoch,
        examples_seen=position.examples_seen + examples,
        tokens_seen=position.tokens_seen + tokens,
        data_fingerprint=position.data_fingerprint,
    )


def _autocast(loop: Loop, batch: Batch):
    return torch.autocast(
        batch.input_ids.device.type, dtype=loop.autocast or torch.bfloat16, enabled=loop.autocast is not None
    )


def _probe_loss(loop: Loop, batch: Batch) -> float:
    """The loss of the weights as they are now, on one micro-batch and without gradients. A step can leave the
    weights finite but so large that the next forward overflows (lr=1e30 does); such weights must not become a
    checkpoint or final/, and only a forward pass shows it. Eval mode, so no dropout draws from the RNG."""
    loop.model.eval()
    with torch.no_grad(), _autocast(loop, batch):
        loss = float(loop.objective(loop.model, batch).loss_sum)
    loop.model.train()
    return all_sum([loss], loop.world)[0]  # every rank decides alike (a nan on one rank is a nan on all)


def fit(loop: Loop, position: Position) -> Position:
    """Train to loop.total_steps from `position`. A non-finite loss, gradient norm or held-out loss raises
    DivergedError before anything computed from it is applied or saved (training/divergence.py)."""
    cfg, model = loop.cfg, loop.model
    per_epoch = steps_per_epoch(loop.epoch_rows or len(loop.train), cfg.batch_size)
    # The optimizer's parameters: FSDP keeps the root's gathered weights registered on the model between steps, and
    # the sharded ones, which receive the gradients, in the optimizer.
    params = [p for group in loop.optimizer.param_groups for p in group["params"]]
    scaler = loss_scaler(loop.autocast, loop.device, loop.optimizer)
    half = loop.autocast == torch.float16 or any(p.dtype == torch.float16 for p in params)

    def check(value: float | None, what: str, step: int) -> None:
        check_finite(value, what, step, cfg, loop.checkpoints, half)

    world = loop.world
    bar = tqdm(
        total=loop.total_steps,
        initial=position.step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not world.main,  # one progress bar for the run, rank 0's
    )
    started, tokens_since = time.perf_counter(), 0
    micro: list[Batch] = []
    model.train()
    try:  # the bar is closed on every way out, so an error line never lands on the bar's own line
        while position.step < loop.total_steps:
            indices = _step_indices(loop, position)
            micro, real_batches = _rank_batches(loop, indices)
            micro = [batch.to(loop.device) for batch in micro]
            loss_sum, correct, real, window = accumulate(
                model, loop.objective, micro, loop.autocast, scaler, loop.parallel, real_batches
            )
            check(loss_sum, "the training loss", position.step + 1)
            if scaler is not None:
                scaler.unscale_(loop.optimizer)  # clip and check the true gradients, not the scaled ones
            grad_norm = gradient_norm(params, cfg.max_grad_norm)
            # Under loss scaling an overflow only skips the step and halves the scale; once the scale is down to 1
            # the gradients overflow unscaled, and that is divergence too.
            if scaler is None or scaler.get_scale() <= 1:
                check(grad_norm, "the gradient norm", position.step + 1)
            lr = loop.scheduler.get_last_lr()[0]
            if scaler is not None:
                scaler.step(loop.optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
                remember(scaler, loop.optimizer)
            else:
                loop.optimizer.step()
            with warnings.catch_warnings():  # a step the loss scaler skipped still advances the schedule, by design
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
                loop.scheduler.step()
            loop.optimizer.zero_grad(set_to_none=True)

            position = _advance(position, loop.epoch_rows or len(loop.train), cfg.batch_size, len(indices), real)
            tokens_since += real
            elapsed = time.perf_counter() - started
            tps = tokens_since / elapsed if elapsed > 0 else 0.0
            loss = loss_sum / max(1, window)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:.0f}", epoch=position.step / per_epoch)
            if position.step % cfg.log_every == 0 or position.step == loop.total_steps:
                record = {
                    "step": position.step,
                    "epoch": round(position.step / per_epoch, 4),
                    "loss": loss,
                    "token_accuracy": correct / max(1, window),
                    "lr": lr,
                    "grad_norm": grad_norm if math.isfinite(grad_norm) else None,  # an fp16 overflow: step skipped
                    "trained_tokens": window,
                    "tokens": real,
                    "tokens_per_s": tps,
                    "elapsed_s": elapsed,
                    "peak_rss_mb": round(peak_rss() / 2**20, 1),
                    "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
                    if loop.device.type == "cuda"
                    else None,
                }
                if scaler is not None:
                    record["loss_scale"] = scaler.get_scale()
                loop.metrics.write(record)
            evaluated = False
            if cfg.eval_every and position.step % cfg.eval_every == 0 and position.step < loop.total_steps:
                result = loop.evaluate()
                check(result.get("loss"), "the held-out eval loss", position.step)
                check_blowup(result.get("loss"), loop.base_loss, position.step, cfg, loop.checkpoints, half)
                evaluated = True
                loop.metrics.write({"step": position.step, "split": "eval", **result})
                shown = "".join(f", {k} {result[k]:.{d}f}" for k, d in EVAL_SHOWN if k in result)
                if world.main:
                    bar.write(f"step {position.step}: eval loss {result['loss']:.4f}{shown}")
                model.train()
                if loop.on_eval is not None:
                    loop.on_eval(position.step, result)
            if cfg.save_every and position.step % cfg.save_every == 0 and position.step < loop.total_steps:
                if not evaluated:  # the held-out loss just checked these weights already
                    check(_probe_loss(loop, micro[0]), "the loss after the step's update", position.step)
                save_checkpoint(
                    loop.checkpoints, model, loop.optimizer, loop.scheduler, position, cfg.keep_checkpoints, world
                )
            if loop.crash_after_step is not None and position.step >= loop.crash_after_step:
                raise RuntimeError(f"simulated crash after step {position.step}")
        if micro:  # the caller saves the last checkpoint and final/ from these weights next
            check(_probe_loss(loop, micro[0]), "the loss after the step's update", position.step)
    finally:
        bar.close()
    return position
