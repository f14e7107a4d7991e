"""The setup every recipe that trains or measures training shares (train, plan, verify): threads, device and
precision, the base, the rows as the method encodes them, and the model as the method trains it.

    loaded = load(cfg, method)                           # bad data fails here, before anything is written
    model = trainable_model(cfg, method, loaded, out)    # seeded: the same head and adapter weights every time
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import Config, TrainConfig
from tunesmith.data.templates import Renderer
from tunesmith.methods.base import Method
from tunesmith.models.loading import (
    MOVES_BASE,
    LoadedBase,
    default_threads,
    load_base,
    pick_device,
    save_initial_adapter,
    training_precision,
)
from tunesmith.recipes.replay import add_replay, add_retention, parent_prepared
from tunesmith.rundir import RunDir
from tunesmith.training.distributed import SINGLE, World, parallelize, threads_per_rank
from tunesmith.training.loop import Loop, MetricsLog, build_optimizer, total_steps
from tunesmith.training.prepare import Prepared, prepare_data, train_order
from tunesmith.training.speed import make_trainable


@dataclass
class Loaded:
    device: torch.device
    dtype: torch.dtype  # the weights'
    autocast: torch.dtype | None  # mixed precision inside forward, or None
    base: LoadedBase
    renderer: Renderer
    prepared: Prepared
    lineage: dict | None = None  # the parent run, when model.base is a finished run (recipes/replay.py)

    @property
    def pad_id(self) -> int:
        return self.base.tokenizer.pad_token_id


def load(
    cfg: Config,
    method: Method,
    log: Callable[[str], object] = print,
    world: World = SINGLE,
    recorded: dict | None = None,
) -> Loaded:
    """Base model, tokenizer and data, validated: a base that does not fit the config, or bad rows, stop here. A run
    continuing from a finished one also scores that run's held-out rows (retention), and data.replay adds its rows.
    `recorded`: the precision a resumed run's manifest.json holds, which it keeps (run_precision)."""
    torch.set_num_threads(cfg.train.threads or threads_per_rank(default_threads(), world))
    device = pick_device()
    dtype, autocast = run_precision(cfg.model.dtype, device, recorded, log)
    base = load_base(cfg.model, device, dtype, cfg.data.max_length, cfg.adapter)
    renderer = Renderer(base.tokenizer, cfg.data.prompt_format, cfg.data.max_length)
    prepared = prepare_data(cfg, method.encoder(renderer))
    parent = parent_prepared(cfg, renderer)  # read once: retention and parent replay both use it
    lineage = add_retention(cfg, prepared, parent, log)
    add_replay(cfg, prepared, parent, renderer, base.weights_dir, base.model, device, log, autocast)
    method.attach(prepared, base, device, autocast, log)
    return Loaded(device, dtype, autocast, base, renderer, prepared, lineage)


def run_precision(
    name: str, device: torch.device, recorded: dict | None, log: Callable[[str], object] = print
) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype) of a run. A fresh run chooses (training_precision). A resumed one keeps what
    its manifest.json recorded when it started on this kind of device: `auto` depends on a measurement of the
    machine, and a run that went on in another precision would not end at the weights of one that never stopped.
    On another kind of device the recorded precision may not exist, so the run continues in this one's and says so."""
    chosen = training_precision(name, device)
    if not recorded:
        return chosen
    try:
        kept = (_dtype(recorded["weights"]), _dtype(recorded["autocast"]) if recorded["autocast"] else None)
    except (KeyError, TypeError, AttributeError):
        return chosen  # a manifest written before the precision was recorded
    if recorded.get("device") != device.type:
        log(
            f"note: the run started on {recorded.get('device')} and continues on {device.type} in "
            f"{_describe(chosen)} (it trained in {_describe(kept)}): the weights will differ slightly from a run "
            "that never stopped"
        )
        return chosen
    if kept != chosen:
        log(f"resume: keeping the run's {_describe(kept)} (a fresh run here would choose {_describe(chosen)})")
    return kept


def _dtype(text: str) -> torch.dtype:
    dtype = getattr(torch, str(text).removeprefix("torch."))
    if not isinstance(dtype, torch.dtype):
        raise TypeError(text)
    return dtype


def _describe(precision: tuple[torch.dtype, torch.dtype | None]) -> str:
    weights, autocast = precision
    name = str(weights).removeprefix("torch.")
    return f"{name} weights with {str(autocast).removeprefix('torch.')} autocast" if autocast else f"{name} weights"


def trainable_model(
    cfg: Config, method: Method, loaded: Loaded, out: Path | None, train: TrainConfig | None = None
) -> nn.Module:
    """The method's model with the adapter (or every weight trainable) and the speed options of `train` (default
    cfg.train), from the run's seed. `out`: the run folder, where a method may write the base its final/ needs."""
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    model = method.build_model(loaded.base, out and RunDir(out), loaded.device, loaded.dtype)
    train = train or cfg.train
    model = make_trainable(model, cfg.adapter, train, method.peft_task_type, method.packs(train))
    if out is not None and cfg.adapter.method == "lora" and cfg.adapter.init in MOVES_BASE:
        # The initialisation is a pure function of the base, so a resumed run writes the same files again.
        save_initial_adapter(model, RunDir(out).initial_adapter)
    return model


def build_loop(
    cfg: Config,
    method: Method,
    loaded: Loaded,
    model: nn.Module,
    folder: Path,
    evaluate: Callable[[], dict] | None = None,
    log: Callable[[str], object] = print,
    crash_after_step: int | None = None,
    world: World = SINGLE,
) -> Loop:
    """The training loop over cfg's rows as the method batches them, with the optimizer and schedule, writing its
    checkpoints and metrics under `folder`. `evaluate` gives the held-out metrics (None: the loop never evaluates:
    tests of loop properties need no run around it). Data-parallel (`world` of several ranks): the model is wrapped
    (DDP) or sharded in place (FSDP) first, and the optimizer built on what each rank holds."""
    rows = loaded.prepared.train
    objective = method.objective(rows, log)
    parallel = parallelize(model, objective, cfg.train.distributed, world, loaded.device) if world.distributed else None
    steps = total_steps(cfg.train, loaded.prepared.epoch_length())
    b_ratio = cfg.adapter.lora_plus_ratio if cfg.adapter.method == "lora" else None
    optimizer, scheduler = build_optimizer(model, cfg.train, steps, b_ratio)
    return Loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        objective=objective,
        train=rows,
        cfg=cfg.train,
        total_steps=steps,
        pad_id=loaded.pad_id,
        device=loaded.device,
        checkpoints=folder / "checkpoints",
        metrics=MetricsLog(folder / "metrics.jsonl", enabled=world.main),
        evaluate=evaluate or dict,
        crash_after_step=crash_after_step,
        order=train_order(cfg, loaded.prepared, method.packs(cfg.train)),
        pack_to=pack_length(cfg, method),
        make_batch=method.make_batch,
        autocast=loaded.autocast,
        epoch_rows=loaded.prepared.epoch_length(),
        parallel=parallel,
    )


def pack_length(cfg: Config, method: Method, train: TrainConfig | None = None) -> int | None:
    """The length micro-batches are packed to under `train` (default cfg.train), or None when they are not packed."""
    return cfg.data.max_length if method.packs(train or cfg.train) else None
