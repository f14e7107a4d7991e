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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.faults import fault

_STEP_DIR = re.compile(r"^step-(\d+)$")
_ASIDE_PREFIX = ".aside-"  # `.aside-step-N-XXXX`: the previous copy of step-N during a re-save
CHECKPOINT_FILES = ("trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "position.json")


@dataclass
class Position:
    """Where training stands; with the seed it fixes the data order of everything that follows."""

    step: int  # optimizer steps done
    epoch: int  # epoch of the next batch
    batch_in_epoch: int  # index of the next batch within its epoch
    examples_seen: int
    tokens_seen: int  # non-padding tokens processed
    data_fingerprint: str  # hash of the encoded training data; resume refuses if it changed


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
) -> Path:
    """Write checkpoint `step-N` atomically and keep only the newest `keep` ones.

    Every file goes into a hidden staging folder first. An existing `step-N` (a re-save after a resume) is renamed
    aside before the new one is renamed into place and deleted only after, so a stop at any moment leaves a complete
    `step-N` or a complete aside copy that `clean_staging` puts back. Interrupts and errors propagate unchanged, with
    the staging folder removed."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{position.step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{position.step}-", dir=folder))
    aside: Path | None = None
    try:
        save_file(trainable_state(model), staging / "trainable.safetensors")
        fault("checkpoint:weights", staging)
        _torch_save(optimizer.state_dict(), staging / "optimizer.pt")
        fault("checkpoint:optimizer", staging)
        _torch_save(scheduler.state_dict(), staging / "scheduler.pt")
        _torch_save(rng_state(), staging / "rng.pt")
        _write_json(staging / "position.json", asdict(position))  # written last: marks the folder complete
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
        shutil.rmtree(staging, ignore_errors=True)
        if aside is not None:
            _settle_aside(aside, final)
    for old in list_checkpoints(folder)[:-keep]:
        _remove(old)
        fault("checkpoint:pruned", old)
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
    return path.is_dir() and all((path / name).is_file() for name in CHECKPOINT_FILES)


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
) -> Position:
    """Restore everything `save_checkpoint` wrote; the caller continues at the returned position."""
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
