"""`tunesmith plan CONFIG`: what a run will cost before it is launched, from the real config and data.

    tunesmith plan examples/gsm8k-lora.yaml [key.sub=value ...]

Parameter counts, optimizer steps and tokens per epoch; the peak memory (weights, gradients, optimizer state,
activations; with and without activation checkpointing) of a step on the largest micro-batch the run will see (its
order is a pure function of the seed) and on the largest any order of the data could produce; and the epoch time
from a few real, timed steps on this machine. When a step would not fit, it says so and what to change, and does
not try it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from tunesmith.config import Config
from tunesmith.data.templates import IGNORE
from tunesmith.methods import build_method
from tunesmith.models.loading import count_parameters
from tunesmith.recipes.setup import load, pack_length, trainable_model
from tunesmith.training.distributed import check_split, decoder_layers
from tunesmith.training.frozen import copies_for
from tunesmith.training.loop import accumulate, build_optimizer, steps_per_epoch, total_steps
from tunesmith.training.memory import (
    GIB,
    MemoryBreakdown,
    activation_bytes,
    available_memory,
    current_rss,
    peak_rss,
    reset_peak_rss,
    static_bytes,
)
from tunesmith.training.objectives import Batch
from tunesmith.training.order import Order
from tunesmith.training.packing import best_fit_decreasing
from tunesmith.training.prepare import train_order


@dataclass
class Plan:
    total_params: int
    trainable_params: int
    train_rows: int
    eval_rows: int
    steps_per_epoch: int
    total_steps: int
    tokens_per_epoch: int  # non-padding tokens
    padded_tokens_per_epoch: int  # what the model computes on, padding included
    trained_tokens_per_epoch: int
    largest_batch: tuple[int, int]  # (rows, padded length) of the largest micro-batch this run will see
    longest_possible_batch: tuple[int, int]  # the largest any order of this data could produce
    memory: MemoryBreakdown  # for the run's largest micro-batch
    memory_checkpointed: MemoryBreakdown
    memory_any_order: MemoryBreakdown  # for the largest micro-batch any order could produce
    measured_peak: int | None  # peak RSS over a step on the longest micro-batch and the timed steps, when safe
    available: int
    calibration_steps: int
    seconds_per_step: float
    tokens_per_second: float  # non-padding tokens per second in the calibration steps
    epoch_seconds: float
    warnings: list[str] = field(default_factory=list)
    ranks: RanksPlan | None = None  # `--ranks N`: each rank's share of a data-parallel run

    @property
    def peak(self) -> int:
        return self.measured_peak if self.measured_peak is not None else self.memory.total

    def to_json(self) -> dict:
        data = asdict(self)
        data["peak"] = self.peak
        return data


LINK_GBPS = 10.0  # what the communication time is quoted at unless told: a PCIe-class link between devices


@dataclass
class RanksPlan:
    """One rank of a data-parallel run (training/distributed.py), from this machine's one-process measurement.

    Every rank takes batch_size / N examples per step in micro-batches of the same size, so activations are the
    one-process ones and compute per step is 1/N of it. DDP keeps whole weights, gradients and optimizer state on
    every rank, plus its gradient buckets (one more copy of the trainable gradients); FSDP keeps 1/N of each, plus the
    gathered weights of the unit in use and the one prefetched (two decoder layers, or the root: embeddings and head)
    and that unit's unsharded gradients. Communication per rank and step: DDP all-reduces the trainable gradients
    (2 (N-1)/N of their bytes); FSDP gathers the weights in forward and again in backward and reduce-scatters the
    gradients (3 (N-1)/N of the fp32 weights)."""

    ranks: int
    mode: str
    process: int  # interpreter, libraries, data, and the weights this rank holds
    gradients: int
    optimizer: int
    activations: int
    saved_by_sharding: int  # what FSDP saves against DDP on each rank (0 under DDP)
    compute_seconds: float  # per step: the one-process step over N
    sent_bytes: int  # per rank and step
    link_gbps: float
    comm_seconds: float  # sent_bytes at link_gbps, none of it overlapped with compute (an upper bound)

    @property
    def total(self) -> int:
        return self.process + self.gradients + self.optimizer + self.activations

    @property
    def seconds_per_step(self) -> float:
        return self.compute_seconds + self.comm_seconds


def ranks_plan(plan: Plan, model, dtype_bytes: int, ranks: int, mode: str, link_gbps: float) -> RanksPlan:
    """The per-rank costs of running the one-process step `plan` measured on `ranks` ranks under `mode`."""
    total, trainable, memory = plan.total_params, plan.trainable_params, plan.memory
    weights = total * dtype_bytes
    gradients, optimizer = memory.gradients, memory.optimizer
    share = (ranks - 1) / ranks
    if mode == "ddp":
        process, grads, optim = memory.process, 2 * gradients, optimizer  # the buckets: one more gradient copy
        sent = int(2 * share * trainable * dtype_bytes)
        saved = 0
    else:
        layers = [sum(p.numel() for p in layer.parameters()) for layer in decoder_layers(model)]
        root = total - sum(layers)
        unit = max([root, *layers]) * dtype_bytes  # the largest unit, gathered whole
        process = memory.process - weights + weights // ranks + 2 * unit
        grads, optim = gradients // ranks + unit, optimizer // ranks
        sent = int(3 * share * weights)
        ddp_total = memory.process + 2 * gradients + optimizer
        saved = max(0, ddp_total - (process + grads + optim))
    return RanksPlan(
        ranks=ranks,
        mode=mode,
        process=process,
        gradients=grads,
        optimizer=optim,
        activations=memory.activations,
        saved_by_sharding=saved,
        compute_seconds=plan.seconds_per_step / ranks,
        sent_bytes=sent,
        link_gbps=link_gbps,
        comm_seconds=sent / (link_gbps * 1e9),
    )


def _run_batches(cfg: Config, n_rows: int, steps: int, order: Order) -> list[list[list[int]]]:
    """Every optimizer step of the run as the loop will take it (the order is a pure function of the seed):
    a list of micro-batches of row indices per step."""
    per_epoch = steps_per_epoch(n_rows, cfg.train.batch_size)
    out = []
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        idx = order(epoch)[k * cfg.train.batch_size : (k + 1) * cfg.train.batch_size]
        out.append([idx[j : j + cfg.train.micro_batch_size] for j in range(0, len(idx), cfg.train.micro_batch_size)])
    return out


def _suggestions(cfg: Config, plan_bytes: int, available: int) -> list[str]:
    tips = [f"the step needs ~{plan_bytes / GIB:.1f} GiB but only {available / GIB:.1f} GiB is available; try:"]
    if cfg.train.micro_batch_size > 1:
        half = max(1, cfg.train.micro_batch_size // 2)
        tips.append(f"  train.micro_batch_size={half} (same batch, more accumulation)")
    tips.append(f"  data.max_length={max(64, cfg.data.max_length // 2)} (truncates long rows)")
    if cfg.adapter.method == "full":
        tips.append("  adapter.method=lora (no gradients or optimizer state for the frozen weights)")
    if not cfg.train.activation_checkpointing:
        tips.append(
            "  train.activation_checkpointing=true (recomputes activations; see the checkpointed estimate above)"
        )
    return tips


def make_plan(cfg: Config, calibration_steps: int = 3, log=print, ranks: int = 1, link_gbps: float = LINK_GBPS) -> Plan:
    """The plan of `cfg` on this machine; with `ranks` > 1 also each rank's share of a data-parallel run of it
    (a world size that cannot split the steps is refused first, with the settings that would)."""
    check_split(cfg.train.batch_size, cfg.train.micro_batch_size, ranks)
    method = build_method(cfg)
    loaded = load(cfg, method)  # the run's own setup (recipes/setup.py): same rows, same model, same seed
    device, dtype, autocast, prepared = loaded.device, loaded.dtype, loaded.autocast, loaded.prepared
    rows, pad_id = prepared.train, loaded.pad_id
    model = trainable_model(cfg, method, loaded, None)
    objective = method.objective(rows, lambda *_: None)
    total, trainable = count_parameters(model)
    epoch_rows = prepared.epoch_length()
    steps = total_steps(cfg.train, epoch_rows)
    run = _run_batches(cfg, epoch_rows, steps, train_order(cfg, prepared, method.packs(cfg.train)))
    per_epoch = steps_per_epoch(epoch_rows, cfg.train.batch_size)
    epoch = run[:per_epoch]
    lengths = [[len(side.input_ids) for side in r.sides] for r in rows]  # both sides of a preference pair

    pack_to = pack_length(cfg, method)

    def make_batch(indices: list[int]) -> Batch:
        return method.make_batch([rows[i] for i in indices], pad_id, pack_to)

    def padded_size(micro: list[int]) -> int:
        """Tokens the model computes on for this micro-batch: padded rows, or packed sequences."""
        sizes = [n for i in micro for n in lengths[i]]
        if pack_to is None:
            return len(sizes) * max(sizes)
        bins = best_fit_decreasing(sizes, pack_to)
        return len(bins) * max(sum(sizes[k] for k in b) for b in bins)

    padded = sum(padded_size(m) for step in epoch for m in step)
    # The largest micro-batch this run will see (its seeded order is known), and the largest any order could
    # produce: the micro_batch_size longest rows together.
    largest = max((m for step in run for m in step), key=padded_size)
    longest = sorted(range(len(rows)), key=lambda i: max(lengths[i]), reverse=True)[: cfg.train.micro_batch_size]
    biggest, worst = make_batch(largest), make_batch(longest)
    dtype_bytes = torch.finfo(dtype).bits // 8
    grads, optim = static_bytes(total, trainable, dtype_bytes)
    if autocast is not None:
        copies_for(model, autocast)  # the frozen weights' autocast copies the run keeps (training/frozen.py)
    process = current_rss() if device.type == "cpu" else torch.cuda.memory_allocated(device)

    def breakdown(batch, checkpointing: bool) -> MemoryBreakdown:
        # Positions the output projection runs on (a head's batch has one label per row).
        labelled = batch.trained_tokens if batch.labels.dim() < 2 else int((batch.labels[:, 1:] != IGNORE).sum())
        act = activation_bytes(model.config, batch.input_ids.numel(), labelled, dtype_bytes, checkpointing)
        return MemoryBreakdown(process, grads, optim, act)

    ckpt = cfg.train.activation_checkpointing
    memory, memory_ckpt, memory_any = breakdown(biggest, ckpt), breakdown(biggest, True), breakdown(worst, ckpt)
    available = available_memory(device) + (process if device.type == "cpu" else 0)
    warnings: list[str] = []
    if memory.total <= 0.9 * available < memory_any.total:
        warnings.append(
            f"this seed's batches fit, but the {len(longest)} longest rows together (~{memory_any.total / GIB:.1f} GiB)"
            " would not: another seed or batch size could run out of memory"
        )

    if autocast is not None and device.type == "cpu":
        warnings.append(
            "mixed precision on a CPU: a run's resident peak has climbed through the epoch to ~1.15x what the first"
            " steps show (benchmarks/README.md, plan accuracy); leave that much headroom"
        )

    optimizer, _ = build_optimizer(model, cfg.train, steps)
    model.train()
    measured = None
    if memory.total > 0.9 * available:
        warnings += _suggestions(cfg, memory.total, available)
    else:
        log(f"measuring a step on the run's largest micro-batch ({tuple(biggest.input_ids.shape)} tokens)")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        reset_peak_rss()
        accumulate(model, objective, [biggest.to(device)], autocast)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Time: one warm-up step, then `calibration_steps` real steps from the start of the epoch, timed.
    timed_tokens = timed_padded = 0
    timed_seconds = 0.0
    n_cal = min(calibration_steps + 1, len(epoch))
    for s in range(n_cal):
        started = time.perf_counter()
        batches = [make_batch(m).to(device) for m in epoch[s]]
        accumulate(model, objective, batches, autocast)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if s == 0 and n_cal > 1:
            continue  # warm-up: allocator and kernel caches
        timed_seconds += time.perf_counter() - started
        timed_tokens += sum(b.real_tokens for b in batches)
        timed_padded += sum(b.input_ids.numel() for b in batches)
    if memory.total <= 0.9 * available:
        # The peak over the longest step *and* the calibration steps after it: the allocator keeps freed blocks
        # between steps of different shapes, and a run's resident peak includes that, not one step alone.
        measured = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss()
    log(f"calibrated on {max(1, n_cal - 1)} real step(s): {timed_seconds / max(1, n_cal - 1):.2f} s per step")
    # The model computes on padding too, so time scales with padded tokens.
    epoch_seconds = padded * timed_seconds / max(1, timed_padded)
    plan = Plan(
        total_params=total,
        trainable_params=trainable,
        train_rows=len(rows),
        eval_rows=len(prepared.eval),
        steps_per_epoch=len(epoch),
        total_steps=steps,
        tokens_per_epoch=sum(map(sum, lengths)),
        padded_tokens_per_epoch=padded,
        trained_tokens_per_epoch=sum(side.trained_tokens for r in rows for side in r.sides),
        largest_batch=tuple(biggest.input_ids.shape),
        longest_possible_batch=tuple(worst.input_ids.shape),
        memory_any_order=memory_any,
        memory=memory,
        memory_checkpointed=memory_ckpt,
        measured_peak=measured,
        available=available,
        calibration_steps=max(1, n_cal - 1),
        seconds_per_step=timed_seconds / max(1, n_cal - 1),
        tokens_per_second=timed_tokens / max(1e-9, timed_seconds),
        epoch_seconds=epoch_seconds,
        warnings=warnings,
    )
    if measured is not None and measured > 0.9 * available:
        plan.warnings += _suggestions(cfg, measured, available)
    if ranks > 1:
        plan.ranks = ranks_plan(plan, model, dtype_bytes, ranks, cfg.train.distributed, link_gbps)
    return plan


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def _duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def print_plan(plan: Plan, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    work = Table(title="work", show_header=False)
    work.add_row("parameters", f"{plan.total_params:,} total, {plan.trainable_params:,} trainable")
    work.add_row("rows", f"{plan.train_rows} train, {plan.eval_rows} eval")
    work.add_row("optimizer steps", f"{plan.steps_per_epoch} per epoch, {plan.total_steps} in the run")
    work.add_row(
        "tokens per epoch",
        f"{plan.tokens_per_epoch:,} ({plan.trained_tokens_per_epoch:,} trained, "
        f"{plan.padded_tokens_per_epoch:,} with padding)",
    )
    console.print(work)
    rows, width = plan.largest_batch
    mem = Table(title=f"peak memory at the run's largest micro-batch, {rows} x {width} tokens")
    mem.add_column("")
    mem.add_column("plain", justify="right")
    mem.add_column("activation checkpointing", justify="right")
    for name in ("process", "gradients", "optimizer", "activations"):
        label = "process + weights" if name == "process" else name
        mem.add_row(label, _gib(getattr(plan.memory, name)), _gib(getattr(plan.memory_checkpointed, name)))
    mem.add_row("estimate", _gib(plan.memory.total), _gib(plan.memory_checkpointed.total))
    if plan.measured_peak is not None:
        mem.add_row(f"measured ({plan.calibration_steps + 2} real steps)", _gib(plan.measured_peak), "")
    any_rows, any_width = plan.longest_possible_batch
    mem.add_row(f"estimate, any order ({any_rows} x {any_width})", _gib(plan.memory_any_order.total), "")
    mem.add_row("available", _gib(plan.available), "")
    console.print(mem)
    console.print(
        f"time: {plan.seconds_per_step:.2f} s per step, {plan.tokens_per_second:.0f} tokens/s over "
        f"{plan.calibration_steps} calibration step(s) -> epoch ~{_duration(plan.epoch_seconds)}, "
        f"run ~{_duration(plan.epoch_seconds * plan.total_steps / max(1, plan.steps_per_epoch))} (plus evaluation)"
    )
    if plan.ranks is not None:
        _print_ranks(plan, console)
    for line in plan.warnings:
        console.print(f"[yellow]{line}[/yellow]")


def _print_ranks(plan: Plan, console) -> None:
    from rich.table import Table

    r = plan.ranks
    table = Table(title=f"each of {r.ranks} ranks ({r.mode}), at the run's largest micro-batch")
    table.add_column("")
    table.add_column("one process", justify="right")
    table.add_column(f"per rank, {r.ranks} ranks", justify="right")
    for name in ("process", "gradients", "optimizer", "activations"):
        label = "process + weights" if name == "process" else name
        table.add_row(label, _gib(getattr(plan.memory, name)), _gib(getattr(r, name)))
    table.add_row("estimate", _gib(plan.memory.total), _gib(r.total))
    if r.mode == "fsdp":
        table.add_row("saved by sharding (vs ddp)", "", _gib(r.saved_by_sharding))
    console.print(table)
    console.print(
        f"step on {r.ranks} ranks: ~{r.compute_seconds:.2f} s compute (this machine's step over {r.ranks}) + "
        f"{r.sent_bytes / 1e9:.2f} GB sent per rank, ~{r.comm_seconds:.2f} s at {r.link_gbps:g} GB/s (not "
        f"overlapped: an upper bound) -> ~{r.seconds_per_step:.2f} s per step, run ~"
        f"{_duration(r.seconds_per_step * plan.total_steps)}"
    )
