"""Data-parallel training on PyTorch's own engine: torchrun starts the processes, DDP or FSDP2 does the rest.

    torchrun --nproc-per-node 2 -m tunesmith.cli train examples/gsm8k-lora.yaml       # one machine, two ranks
    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m tunesmith.cli train CFG                                                     # two machines
    tunesmith train examples/gsm8k-lora.yaml --ranks 2                                 # the first, launched for you

Every rank runs the same program on the same rows in the same seeded order; only the optimizer steps are shared
out. A step's examples (training/order.py, a pure function of seed and epoch) are cut into one contiguous share
per rank, a whole number of micro-batches each (check_split), so each rank's micro-batches are exactly the ones a
single process would form. The trained tokens of the whole step are summed across ranks before any backward, and
each rank's loss is divided by that global count. The reduced gradient is then the single-process one
(tests/unit/test_distributed.py checks per-step losses and final weights against a one-process run).

- `train.distributed: ddp` (adapters, and full fine-tuning that fits on one device): every rank holds the whole
  model; DistributedDataParallel averages the gradients once per step (no_sync on all but the last micro-batch).
- `train.distributed: fsdp` (full fine-tuning): FSDP2 (`fully_shard`) shards parameters, gradients and optimizer
  state; each decoder layer is one unit, the model the root. Weights stay fp32 and forward runs under the same
  autocast as a single process. The loss goes through the model's own forward, so the root unit gathers the
  embeddings and the head.

Rank 0 alone speaks and writes (logs, metrics.jsonl, audit, eval records, final/, report); every rank evaluates
(DDP: its own replica, FSDP: together, as the shards require) so they stay in step. Checkpoints go through
torch.distributed.checkpoint: every rank writes its share into one folder, which is renamed into place once all are
written, and a run resumes on any number of ranks (DCP reshards). Under torchrun a rank that dies ends the job
(the others are stopped by the launcher) and `--resume` continues from the last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard  # peft and transformers import it already

from tunesmith.errors import TunesmithError

# How long a rank waits for the others at a collective: rank 0 alone writes final/ and the report (the others wait
# at a barrier), which can take long on a big model. A rank that dies is noticed by torchrun at once, not by this.
TIMEOUT = timedelta(hours=6)


class DistributedError(TunesmithError):
    """A world size, mode or checkpoint that a data-parallel run cannot use; the message says what would."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks torchrun started (one rank when not started by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The world torchrun (or `accelerate launch`) describes in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(
        rank=int(os.environ.get("RANK", "0")),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))),
    )


def start(world: World) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPU. Each rank on a GPU machine takes its local GPU."""
    if not world.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=torch.device("cuda", world.local_rank))
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)


@contextmanager
def peers_watched(world: World) -> Iterator[None]:
    """A collective that fails because another rank is gone (killed, out of memory, its machine lost) becomes one
    line that says so and how to continue, instead of the transport's own error."""
    try:
        yield
    except (dist.DistError, RuntimeError) as err:
        text = str(err)
        lost = isinstance(err, dist.DistError) or any(mark in text for mark in LOST_PEER)
        if not world.distributed or not lost:
            raise
        raise DistributedError(
            f"rank {world.rank}: another rank of this run stopped (the connection to it was lost); the job ends "
            "here. Its checkpoints are kept: start it again with --resume to continue from the last one"
        ) from None


# What gloo and NCCL say when the other end of a collective went away.
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def threads_per_rank(threads: int, world: World) -> int:
    """CPU threads for one rank: the machine's share of the ranks that run on it."""
    return max(1, threads // world.local_size)


def check_split(batch_size: int, micro_batch_size: int, ranks: int, key: str = "train.batch_size") -> None:
    """Refuse a world size that cannot split every step evenly, with the settings that would."""
    if ranks <= 1:
        return
    if batch_size % (ranks * micro_batch_size) == 0:
        return
    fits = [n for n in range(2, batch_size + 1) if batch_size % (n * micro_batch_size) == 0]
    sizes = ", ".join(str(n) for n in fits[:6]) or "none"
    raise DistributedError(
        f"{key} ({batch_size}) cannot be split evenly over {ranks} ranks of micro-batches of {micro_batch_size}: "
        f"each rank must get a whole number of micro-batches; set {key} to a multiple of "
        f"{ranks * micro_batch_size}, or train.micro_batch_size to a divisor of {batch_size // ranks or 1}, "
        f"or run on {sizes} ranks"
    )


def share(indices: list[int], world: World) -> list[int]:
    """This rank's contiguous share of one step's examples (a short last step leaves the last ranks fewer)."""
    if not world.distributed:
        return indices
    per = -(-len(indices) // world.size)
    return indices[world.rank * per : (world.rank + 1) * per]


def _collective_device() -> torch.device:
    """Where a tensor must be for a collective: NCCL reduces only GPU tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sums over the ranks (float64: token counts stay exact)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_max(value: int, world: World) -> int:
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast(value: object, world: World) -> object:
    """Rank 0's `value`, on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _loss(objective: Callable, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
    """A micro-batch's (loss sum, correct tokens) under the objective."""
    parts = objective(model, batch)
    return parts.loss_sum, parts.correct


class _Step(nn.Module):
    """A micro-batch's loss as a module's forward, so DDP sees every step's forward (where it prepares the gradient
    reduction) while the objective still reaches into the model (chunked cross-entropy calls decoder and head)."""

    def __init__(self, model: nn.Module, objective: Callable):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch):
        return _loss(self.objective, self.model, batch)


@dataclass
class Parallel:
    """How one rank takes part in a step: the forward that computes a micro-batch's loss parts, the context that
    holds the gradient reduction back on all micro-batches but the last, and the world."""

    world: World
    mode: str  # "ddp" or "fsdp"
    forward: Callable  # batch -> (loss sum, correct tokens)
    module: nn.Module  # what DDP wraps, or the sharded model

    @contextmanager
    def held(self, hold: bool) -> Iterator[None]:
        """Accumulate without reducing gradients (every micro-batch of a step but its last)."""
        if not hold:
            yield
        elif self.mode == "ddp":
            with self.module.no_sync():
                yield
        else:
            self.module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformers model (its `_no_split_modules` classes): FSDP's units."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def parallelize(model: nn.Module, objective: Callable, mode: str, world: World, device: torch.device) -> Parallel:
    """Wrap `model` for data-parallel training. DDP keeps `model` as it is (the optimizer and evaluation use it);
    FSDP2 shards it in place, so the optimizer must be built after this."""
    if mode == "ddp":
        step = _Step(model, objective)
        ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(step, device_ids=ids)
        return Parallel(world, mode, wrapped, wrapped)
    layers = decoder_layers(model)
    if not layers:
        raise DistributedError(
            f"train.distributed=fsdp: {type(model).__name__} names no decoder layer class (_no_split_modules) to "
            "shard by; use train.distributed=ddp"
        )
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return Parallel(world, mode, partial(_loss, objective, model), model)


def full_state(model: nn.Module, world: World) -> dict[str, torch.Tensor] | None:
    """The whole (unsharded) state dict of an FSDP model on rank 0, on the CPU (None on the other ranks). Every rank
    must call it: the shards are gathered."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not world.main:
        return None
    # A tied weight (the output head sharing the embedding) comes back as two copies; save_pretrained recognises a
    # tie only by shared memory, so the second name goes, as it does for a model that was never sharded.
    first = {name for name, _ in model.named_parameters()}
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - first
    return {name: tensor for name, tensor in state.items() if name not in tied}


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor as one piece: a sharded (FSDP) one is gathered from every rank, so every rank must call this."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def quiet_unless(world: World, log: Callable[[str], object]) -> Callable[[str], object]:
    """Rank 0's log; the other ranks say nothing (they would only repeat it)."""
    return log if world.main else (lambda _message: None)


def main_only(world: World, context):
    """`context` on rank 0, nothing on the others (a lock, a writer of the run folder)."""
    return context if world.main else nullcontext()
