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

_STEP_DIR = re.compile(r"^step-(\d+)$")


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
    """Write checkpoint `step-N` atomically and keep only the newest `keep` ones."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{position.step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{position.step}-", dir=folder))
    try:
        save_file(trainable_state(model), staging / "trainable.safetensors")
        _torch_save(optimizer.state_dict(), staging / "optimizer.pt")
        _torch_save(scheduler.state_dict(), staging / "scheduler.pt")
        _torch_save(rng_state(), staging / "rng.pt")
        _write_json(staging / "position.json", asdict(position))  # written last: marks the folder complete
        _fsync_dir(staging)
        if final.exists():  # a stale copy of this step from an earlier attempt; the new one replaces it
            shutil.rmtree(final)
        staging.rename(final)
        _fsync_dir(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Half-written staging folders are hidden and never listed."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "position.json").is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def clean_staging(folder: Path) -> None:
    """Remove leftovers of saves that were killed halfway."""
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith(".step-"):
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
