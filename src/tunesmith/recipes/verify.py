"""`tunesmith verify CONFIG`: prove on your own config that the speed options change nothing but speed.

    tunesmith verify examples/gsm8k-lora.yaml [key.sub=value ...] [--steps 3]

A few optimizer steps of the run are taken from the same seed, on the same rows, once with every speed option off
(the reference: padded batches, the plain output projection, no checkpointing, no compile, and the weights' own
dtype with no autocast) and once with each option on alone. Per step the loss must agree, and after the first step
every trainable gradient must agree, within a tolerance that fits the arithmetic (fp32 is tight; bf16, and mixed
precision against fp32, loose). `mixed_precision` (bf16 autocast, or fp16 under `model.dtype: float16`) is checked
whenever the config would train with it (`auto` on a GPU with bf16 or a CPU with native bf16, or `float16`). A nan
or infinite loss or gradient in any variant, the reference included, is a failure: it is no agreement, and it means
the config diverges (lower train.lr) whatever the speed options. Any failure is printed and the command exits 1, so
a CI job or a user can gate on it. Length grouping is not among the options: it changes which rows
share a batch (by design), not the arithmetic; tests check that it keeps every row exactly once per epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table

from tunesmith.config import Config
from tunesmith.methods import build_method
from tunesmith.methods.base import Method
from tunesmith.models.loading import load_base
from tunesmith.recipes.setup import Loaded, load, pack_length, trainable_model
from tunesmith.training.loop import accumulate, build_optimizer, micro_batches
from tunesmith.training.order import epoch_order

TOLERANCE = {torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}  # relative, loss and gradients
MIXED = "mixed_precision"


@dataclass
class Variant:
    name: str
    losses: list[float]
    grads: dict[str, torch.Tensor]
    seconds: float
    tolerance: float = 0.0
    loss_diff: float = 0.0  # largest relative difference from the reference over the steps
    grad_diff: float = 0.0  # largest |g - g_ref| / max |g_ref| over all trainable tensors, after step 1
    ok: bool = True

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in self.losses) and all(bool(g.isfinite().all()) for g in self.grads.values())


@dataclass
class VerifyReport:
    steps: int
    precision: str  # the reference's, e.g. "cpu, torch.float32"
    variants: list[Variant] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.variants)

    @property
    def finite(self) -> bool:
        return all(v.finite for v in self.variants)


def compare(variant: Variant, reference: Variant) -> None:
    """Set the variant's differences from the reference and its verdict. A nan anywhere makes the difference inf:
    Python's max() and comparisons would otherwise pass over a nan, and a nan that agrees with nothing is no
    agreement."""
    if not (variant.finite and reference.finite) or variant.grads.keys() != reference.grads.keys():
        variant.loss_diff = variant.grad_diff = math.inf
    else:
        variant.loss_diff = max(
            abs(a - b) / max(abs(b), 1e-8) for a, b in zip(variant.losses, reference.losses, strict=True)
        )
        variant.grad_diff = max(
            (
                float((variant.grads[n] - g).abs().max() / max(float(g.abs().max()), 1e-12))
                for n, g in reference.grads.items()
            ),
            default=0.0,
        )
    variant.ok = variant.loss_diff <= variant.tolerance and variant.grad_diff <= variant.tolerance * 10


def _run(cfg: Config, method: Method, loaded: Loaded, options: set[str], steps: int, autocast=None) -> Variant:
    train = cfg.train.model_copy(
        update={
            "packing": "packing" in options,
            "activation_checkpointing": "activation_checkpointing" in options,
            "compile": "compile" in options,
        }
    )
    rows, pad_id, device = loaded.prepared.train, loaded.pad_id, loaded.device
    base = load_base(cfg.model, device, loaded.dtype, cfg.data.max_length, cfg.adapter)  # fresh weights per variant
    model = trainable_model(cfg, method, dataclasses.replace(loaded, base=base), None, train)
    model.train()
    optimizer, scheduler = build_optimizer(model, cfg.train, max(steps, 1))
    objective = method.objective(rows, lambda *_: None, chunk=256 if "chunked_ce" in options else None)
    pack_to = pack_length(cfg, method, train)
    order = [
        i
        for epoch in range(steps * cfg.train.batch_size // max(1, len(rows)) + 1)
        for i in epoch_order(len(rows), cfg.train.seed, epoch)
    ]
    losses, grads = [], {}
    started = time.perf_counter()
    for step in range(steps):
        idx = order[step * cfg.train.batch_size : (step + 1) * cfg.train.batch_size]
        micro = micro_batches(rows, idx, cfg.train.micro_batch_size, method.make_batch, pad_id, pack_to)
        micro = [batch.to(device) for batch in micro]
        loss_sum, _, _, window = accumulate(model, objective, micro, autocast)
        losses.append(loss_sum / max(1, window))
        if step == 0:
            grads = {
                n: p.grad.detach().float().cpu().clone() for n, p in model.named_parameters() if p.grad is not None
            }
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    name = " + ".join(sorted(options)) if options else "reference (all off)"
    return Variant(name, losses, grads, time.perf_counter() - started)


def verify(cfg: Config, steps: int = 3, options: tuple[str, ...] | None = None, log=print) -> VerifyReport:
    """options=None checks every speed option the method uses (mixed precision only where the run would use it)."""
    method = build_method(cfg)
    loaded = load(cfg, method)
    device, dtype, autocast = loaded.device, loaded.dtype, loaded.autocast
    loaded.base.model = None  # each variant loads its own weights
    if options is None:
        options = (*method.speed_options, MIXED) if autocast else method.speed_options
    report = VerifyReport(steps, f"{device}, {dtype}")
    log(f"reference: {steps} steps of {cfg.train.batch_size} rows, every speed option off ({report.precision})")
    reference = _run(cfg, method, loaded, set(), steps)
    reference.tolerance = TOLERANCE.get(dtype, 1e-2)
    reference.ok = reference.finite
    report.variants.append(reference)
    for option in options:
        mixed = (autocast or torch.bfloat16) if option == MIXED else None
        log(f"{option}: the same steps with it on" + (f" ({mixed} autocast)" if mixed else ""))
        variant = _run(cfg, method, loaded, {option}, steps, mixed)
        variant.tolerance = max(reference.tolerance, TOLERANCE[mixed]) if mixed else reference.tolerance
        compare(variant, reference)
        report.variants.append(variant)
    return report


def print_report(report: VerifyReport, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"speed options vs reference ({report.precision}), {report.steps} steps")
    for column in ("variant", "losses", "max loss diff", "max grad diff", "tolerance", "seconds", "result"):
        table.add_column(column, justify="left" if column in ("variant", "losses") else "right")
    for v in report.variants:
        verdict = "[green]same[/green]" if v.ok else "[red]DIVERGES[/red]" if v.finite else "[red]NON-FINITE[/red]"
        table.add_row(
            v.name,
            ", ".join(f"{x:.5f}" for x in v.losses),
            f"{v.loss_diff:.2e}",
            f"{v.grad_diff:.2e}",
            f"{v.tolerance:g} (grads {10 * v.tolerance:g})",
            f"{v.seconds:.1f}",
            verdict if v.name != report.variants[0].name or not v.ok else "",
        )
    console.print(table)
    console.print(verdict_line(report))


def verdict_line(report: VerifyReport) -> str:
    broken = [v.name for v in report.variants if not v.finite]
    if broken:
        return (
            f"[red]nan or infinite loss or gradients in: {', '.join(broken)}; training this config diverges "
            "(lower train.lr, or check train.weight_decay and model.dtype)[/red]"
        )
    return "all speed options agree with the reference" if report.ok else "[red]a speed option diverges[/red]"
