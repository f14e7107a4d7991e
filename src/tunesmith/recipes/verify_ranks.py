"""`tunesmith verify CONFIG --ranks N`: prove on your own config that data-parallel training changes no number.

    tunesmith verify examples/quickstart.yaml --ranks 2 [--steps 3]

The first `--steps` optimizer steps of the run, from the same seed on the same rows, are taken once by this process
and once by N ranks that torchrun starts on this machine (gloo on a CPU, NCCL on GPUs) under the config's
`train.distributed` (DDP or FSDP2). Per step the loss and the gradient norm must agree, and so must every trainable
gradient of the first step (as the optimizer receives it: reduced over the ranks, clipped), within a tolerance that
fits the arithmetic, as `tunesmith verify` holds the speed options to. The weights after the last step are shown
beside it: under mixed precision Adam's first, sign-like steps turn rounding-level differences of small gradients
into whole steps of the learning rate, so they are a reading, not a criterion. A failure is printed and the command
exits 1.

    python -m tunesmith.recipes.verify_ranks CONFIG.yaml STEPS FOLDER     # what each rank runs (torchrun)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file, save_file

from tunesmith.config import Config, load_config
from tunesmith.errors import TunesmithError
from tunesmith.methods import build_method
from tunesmith.models.loading import pick_device, training_precision
from tunesmith.recipes.setup import build_loop, load, trainable_model
from tunesmith.recipes.verify import TOLERANCE  # the speed options' tolerances: losses, and gradients x 10
from tunesmith.training import distributed
from tunesmith.training.checkpoint import Position, trainable_state
from tunesmith.training.distributed import World, full_state, is_sharded, whole
from tunesmith.training.loop import fit


def quiet(*_: object) -> None:
    pass


def fit_steps(cfg: Config, steps: int, folder: Path, world: World) -> None:
    """The run's first `steps` optimizer steps, no evaluation and no checkpoint: metrics.jsonl and the trainable
    weights after the last step (weights.safetensors, whole) in `folder`, written by rank 0."""
    train = cfg.train.model_copy(update={"max_steps": steps, "eval_every": 0, "save_every": 0, "log_every": 1})
    cfg = cfg.model_copy(update={"train": train})
    method = build_method(cfg)
    loaded = load(cfg, method, quiet, world)
    model = trainable_model(cfg, method, loaded, None)
    loop = build_loop(cfg, method, loaded, model, folder, None, quiet, None, world)
    first: dict[str, torch.Tensor] = {}

    def keep_first(optimizer, *_: object) -> None:
        """The gradients the optimizer applies at the first step, whole (an FSDP shard is gathered from all ranks)."""
        if first:
            return
        for name, param in model.named_parameters():
            if param.requires_grad and param.grad is not None:
                first[name] = whole(param.grad).detach().float().cpu().clone()

    hook = loop.optimizer.register_step_pre_hook(keep_first)
    fit(loop, Position(0, 0, 0, 0, 0, ""))
    hook.remove()
    if world.main:
        save_file(first, folder / "grads.safetensors")
    weights = full_state(model, world) if is_sharded(model) else trainable_state(model)
    if world.main:
        if is_sharded(model):  # the full state holds every weight: keep the trainable ones, as the one process does
            names = {name for name, p in model.named_parameters() if p.requires_grad}
            weights = {name: tensor for name, tensor in weights.items() if name in names}
        save_file({k: v.float().contiguous() for k, v in weights.items()}, folder / "weights.safetensors")


@dataclass
class RanksReport:
    ranks: int
    mode: str
    precision: str
    losses: tuple[list[float], list[float]]  # one process, N ranks
    grad_norms: tuple[list[float], list[float]]
    loss_diff: float
    norm_diff: float
    grad_diff: float  # largest |g - g_one| / max |g_one| over the trainable tensors, first step
    weight_diff: float  # the same over the weights after the last step (shown, not judged)
    tolerance: float

    @property
    def ok(self) -> bool:
        tolerance = self.tolerance
        return self.loss_diff <= tolerance and self.norm_diff <= tolerance and self.grad_diff <= 10 * tolerance


def _records(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "lr" in r]


def _relative(a: list[float], b: list[float]) -> float:
    if len(a) != len(b) or not all(map(math.isfinite, a + b)):
        return math.inf
    return max((abs(x - y) / max(abs(y), 1e-8) for x, y in zip(a, b, strict=True)), default=0.0)


def _tensor_diff(one: dict[str, torch.Tensor], many: dict[str, torch.Tensor]) -> float:
    """Largest |x - x_one| / max |x_one| over the tensors; inf when they differ in names or hold a nan."""
    if one.keys() != many.keys():
        return math.inf
    worst = 0.0
    for name, ref in one.items():
        diff = float((many[name] - ref).abs().max() / max(float(ref.abs().max()), 1e-12))
        worst = max(worst, diff if math.isfinite(diff) else math.inf)
    return worst


def verify_ranks(cfg: Config, ranks: int, steps: int = 3, log=print) -> RanksReport:
    """Run `steps` steps in this process and on `ranks` torchrun ranks, and compare."""
    distributed.check_split(cfg.train.batch_size, cfg.train.micro_batch_size, ranks)
    with tempfile.TemporaryDirectory(prefix="tunesmith-verify-") as scratch:
        root = Path(scratch)
        (root / "one").mkdir()
        (root / "many").mkdir()
        config = root / "config.yaml"
        config.write_text(cfg.to_yaml(), encoding="utf-8")
        log(f"one process: {steps} steps of {cfg.train.batch_size} rows")
        fit_steps(cfg, steps, root / "one", distributed.SINGLE)
        log(f"{ranks} ranks ({cfg.train.distributed}, torchrun): the same steps")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
        command = [*launcher, "-m", "tunesmith.recipes.verify_ranks", str(config), str(steps), str(root / "many")]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            said = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
            reason = said[0] if said else f"the ranks exited with {done.returncode}"
            raise TunesmithError(f"tunesmith verify --ranks {ranks}: {reason}")
        one, many = _records(root / "one"), _records(root / "many")
        grad_diff = _tensor_diff(*(load_file(root / run / "grads.safetensors") for run in ("one", "many")))
        weight_diff = _tensor_diff(*(load_file(root / run / "weights.safetensors") for run in ("one", "many")))
    losses = ([r["loss"] for r in one], [r["loss"] for r in many])
    norms = ([r["grad_norm"] or 0.0 for r in one], [r["grad_norm"] or 0.0 for r in many])
    dtype, autocast = training_precision(cfg.model.dtype, pick_device())
    tolerance = max(TOLERANCE.get(dtype, 1e-2), TOLERANCE.get(autocast, 0.0))
    return RanksReport(
        ranks=ranks,
        mode=cfg.train.distributed,
        precision=str(dtype) + (f" with {autocast} autocast" if autocast else ""),
        losses=losses,
        grad_norms=norms,
        loss_diff=_relative(losses[1], losses[0]),
        norm_diff=_relative(norms[1], norms[0]),
        grad_diff=grad_diff,
        weight_diff=weight_diff,
        tolerance=tolerance,
    )


def print_ranks_report(report: RanksReport, console: Console | None = None) -> None:
    console = console or Console()
    steps = len(report.losses[0])
    table = Table(title=f"{report.ranks} ranks ({report.mode}) vs one process, {steps} steps, {report.precision}")
    for column in ("step", "loss, one process", f"loss, {report.ranks} ranks", "grad norm, one", "grad norm, ranks"):
        table.add_column(column, justify="right")
    for i, (x, y) in enumerate(zip(*report.losses, strict=False)):
        table.add_row(
            str(i + 1), f"{x:.6f}", f"{y:.6f}", f"{report.grad_norms[0][i]:.5f}", f"{report.grad_norms[1][i]:.5f}"
        )
    console.print(table)
    verdict = "[green]same[/green]" if report.ok else "[red]DIFFERENT[/red]"
    console.print(
        f"max relative difference: loss {report.loss_diff:.2e}, gradient norm {report.norm_diff:.2e} (tolerance "
        f"{report.tolerance:g}); first-step gradients {report.grad_diff:.2e} (tolerance {10 * report.tolerance:g}): "
        f"{verdict}. Trainable weights after step {steps}: {report.weight_diff:.2e} (a reading)"
    )


def main(argv: list[str] | None = None) -> int:
    """One rank's part of `verify --ranks` (started by torchrun)."""
    from tunesmith.errors import USER_ERRORS

    config, steps, folder = argv or sys.argv[1:]
    world = distributed.from_env()
    try:
        distributed.start(world)
        fit_steps(load_config(config, []), int(steps), Path(folder), world)
    except USER_ERRORS as err:
        if world.main:
            print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
