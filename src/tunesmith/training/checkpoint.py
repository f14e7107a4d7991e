"""Atomic checkpoints and exact resume.

A checkpoint is written into a hidden temporary folder and renamed to `checkpoints/step-N` only once every file
is on disk, so a run killed mid-save (even with kill -9) leaves either the complete checkpoint or none. It holds
what an exact continuation needs: trainable weights, optimizer and scheduler state, every RNG state and the data
position. Tensors are saved with safetensors / torch.save and read back with `weights_only=True` (no pickle code).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.faults import fault
from tunesmith.rundir import RunDirError
from tunesmith.training.distributed import SINGLE, World, barrier, broadcast, is_sharded

_STEP_DIR = re.compile(r"^step-(\d+)$")
_ASIDE_PREFIX = ".aside-"  # `.aside-step-N-XXXX`: the previous copy of step-N during a re-save
CHECKPOINT_FILES = ("trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "position.json")
# A data-parallel run's checkpoint: torch.distributed.checkpoint's folder (every rank's share of the trainable
# weights and the optimizer state), and each rank's random state.
SHARDED_FILES = ("state/.metadata", "scheduler.pt", "rng-0.pt", "position.json")


@dataclass
class Position:
    """Where training stands; with the seed it fixes the data order of everything that follows."""

    step: int  # optimizer steps done
    epoch: int  # epoch of the next batch
    batch_in_epoch: int  # index of the next batch within its epoch
    examples_seen: int
    tokens_seen: int  # non-padding tokens processed
    data_fingerprint: str  # hash of the encoded training data; resume refuses if it changed
    ranks: int = 1  # processes that trained it (training/distributed.py)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())


def _torch_save(obj: object, path: Path) -> None:
    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: Position,
    keep: int,
    world: World = SINGLE,
) -> Path:
    """Write checkpoint `step-N` atomically and keep only the newest `keep` ones.

    Every file goes into a hidden staging folder first. An existing `step-N` (a re-save after a resume) is renamed
    aside before the new one is renamed into place and deleted only after, so a stop at any moment leaves a complete
    `step-N` or a complete aside copy that `clean_staging` puts back. Interrupts and errors propagate unchanged, with
    the staging folder removed."""
    if world.distributed:
        return _save_sharded(folder, model, optimizer, scheduler, position, keep, world)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{position.step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{position.step}-", dir=folder))
    try:
        save_file(trainable_state(model), staging / "trainable.safetensors")
        fault("checkpoint:weights", staging)
        _torch_save(optimizer.state_dict(), staging / "optimizer.pt")
        fault("checkpoint:optimizer", staging)
        _torch_save(scheduler.state_dict(), staging / "scheduler.pt")
        _torch_save(rng_state(), staging / "rng.pt")
        _write_json(staging / "position.json", asdict(position))  # written last: marks the folder complete
        _place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(folder, keep)
    return final


def _place(staging: Path, final: Path) -> None:
    """Rename a complete staging folder to `final`, an earlier copy of `final` moved aside until it is replaced."""
    folder = final.parent
    aside: Path | None = None
    try:
        _fsync_dir(staging)
        fault("checkpoint:staged", staging)
        if final.exists():  # a copy of this step from an earlier attempt: moved aside, deleted once replaced
            aside = folder / f"{_ASIDE_PREFIX}{final.name}-{staging.name.rsplit('-', 1)[-1]}"
            final.rename(aside)
            fault("checkpoint:aside", final)
        staging.rename(final)
        _fsync_dir(folder)
        fault("checkpoint:renamed", final)
    finally:
        if aside is not None:
            _settle_aside(aside, final)


def _prune(folder: Path, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep]:
        _remove(old)
        fault("checkpoint:pruned", old)


def _sharded_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Trainable weights only, as a one-process checkpoint. Not strict: the frozen weights are not in the checkpoint
    # (a trainable one missing still fails, in dcp.load, which must fill every key it is given).
    return StateDictOptions(ignore_frozen_params=True, strict=False)


def _save_sharded(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: Position,
    keep: int,
    world: World,
) -> Path:
    """A data-parallel checkpoint: rank 0 makes the staging folder, every rank writes its share of weights and
    optimizer state into it through torch.distributed.checkpoint (and its own random state), and once all have
    written, rank 0 adds scheduler and position and renames it into place as a one-process save does."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = folder / f"step-{position.step}"
    staging = None
    if world.main:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".step-{position.step}-", dir=folder))
    staging = Path(broadcast(str(staging), world))
    try:
        weights, optim = get_state_dict(model, optimizer, options=_sharded_options())
        dcp.save({"model": weights, "optimizer": optim}, checkpoint_id=staging / "state")
        fault("checkpoint:weights", staging)
        _torch_save(rng_state(), staging / f"rng-{world.rank}.pt")
        barrier(world)  # every share is on disk
        if world.main:
            _torch_save(scheduler.state_dict(), staging / "scheduler.pt")
            _write_json(staging / "position.json", asdict(replace(position, ranks=world.size)))
            _place(staging, final)
    finally:
        if world.main:
            shutil.rmtree(staging, ignore_errors=True)
    if world.main:
        _prune(folder, keep)
    barrier(world)  # no rank goes on (or resumes) before the checkpoint is in place
    return final


def _remove(checkpoint: Path) -> None:
    """Hide a checkpoint by renaming, then delete it: a stop halfway never leaves a half-deleted `step-N`."""
    hidden = checkpoint.with_name(f".{checkpoint.name}-deleted")
    shutil.rmtree(hidden, ignore_errors=True)  # left by an earlier stop in the same place
    checkpoint.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def _settle_aside(aside: Path, final: Path) -> None:
    """After a re-save: drop the old copy if the new one is in place, else put the old one back."""
    if is_complete(final):
        shutil.rmtree(aside, ignore_errors=True)
    elif not final.exists():
        aside.rename(final)


def is_complete(path: Path) -> bool:
    """Every file `load_checkpoint` reads is there (position.json, written last, alone could outlive the others)."""
    kinds = (CHECKPOINT_FILES, SHARDED_FILES)
    return path.is_dir() and any(all((path / name).is_file() for name in kind) for kind in kinds)


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Half-written staging folders are hidden and never listed."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and is_complete(child):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def clean_staging(folder: Path) -> None:
    """Remove leftovers of saves that were stopped halfway; restore a checkpoint that was moved aside for a re-save
    whose new copy never arrived."""
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith(_ASIDE_PREFIX):
            final = folder / child.name[len(_ASIDE_PREFIX) :].rsplit("-", 1)[0]
            if is_complete(child) and not is_complete(final):
                shutil.rmtree(final, ignore_errors=True)  # a broken step-N: the complete copy aside replaces it
                child.rename(final)
            else:
                shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(".step-"):
            shutil.rmtree(child, ignore_errors=True)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    world: World = SINGLE,
    log: Callable[[str], object] = print,
) -> Position:
    """Restore everything `save_checkpoint` wrote; the caller continues at the returned position."""
    if (path / SHARDED_FILES[0]).is_file():
        return _load_sharded(path, model, optimizer, scheduler, world, log)
    if is_sharded(model):
        raise RunDirError(
            f"--resume: {path} was written by one process, which a sharded (train.distributed=fsdp) run cannot "
            "read; resume it with one process or with train.distributed=ddp"
        )
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise ValueError(f"{path}: checkpoint holds weights the model does not have: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return Position(**json.loads((path / "position.json").read_text(encoding="utf-8")))


def _load_sharded(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    world: World,
    log: Callable[[str], object],
) -> Position:
    """A data-parallel checkpoint, read on any number of ranks (one included): torch.distributed.checkpoint gives
    each rank its share as the model is split now. Each rank takes back its own random state; on a different number
    of ranks a rank without one takes rank 0's, so weights, optimizer and data order continue exactly but dropout's
    draws do not (which is said)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    position = Position(**json.loads((path / "position.json").read_text(encoding="utf-8")))
    weights, optim = get_state_dict(model, optimizer, options=_sharded_options())  # optimizer state made first
    state = {"model": weights, "optimizer": optim}
    with warnings.catch_warnings():  # one process reading a sharded checkpoint is meant: DCP's note says so
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load(state, checkpoint_id=path / "state")
    weights, optim = state["model"], state["optimizer"]
    set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=optim, options=_sharded_options())
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    own = path / f"rng-{world.rank}.pt"
    set_rng_state(torch.load(own if own.is_file() else path / "rng-0.pt", weights_only=True))
    if position.ranks != world.size:
        log(
            f"note: {path.name} was written by {position.ranks} rank(s) and resumes on {world.size}: weights, "
            "optimizer and data order continue exactly; random draws (dropout) differ from an uninterrupted run"
        )
    return replace(position, ranks=world.size)
