"""The search space of `tunesmith sweep`: the LoRA-aware default, its check against the config, and how a trial's
values are drawn from it and applied to the config (recipes/sweep.py runs the search)."""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml

from tunesmith.config import Config, build_config
from tunesmith.config_sweep import DERIVED_KEYS, ParamSpec
from tunesmith.config_yaml import ConfigError, set_key
from tunesmith.errors import TunesmithError
from tunesmith.rundir import flatten

# Keys the sweep sets on every trial itself.
RESERVED = ("output.", "data.validation_fraction", "data.eval", "train.eval_every", "sweep.")


class SweepError(TunesmithError):
    """A sweep that cannot start (a bad search space, an objective the config cannot score) or ends with no result."""


def lora_space(cfg: Config) -> dict[str, ParamSpec]:
    """The default search space, from what is known about LoRA: a learning rate log-uniform around the LoRA prior
    (about ten times a full fine-tuning rate: 5e-5 to 3e-3; with LoRA+ the B matrices' rate, apply_params), rank,
    alpha as a multiple of it, dropout, warmup, the length of training (half to twice the config's), batch size,
    which layers are adapted and the adapter variants.
    A full fine-tuning config searches the rate an order of magnitude lower and no adapter keys."""
    train = cfg.train
    space: dict[str, ParamSpec] = {}
    if cfg.adapter.method == "full":
        space["train.lr"] = ParamSpec(low=5e-6, high=3e-4, log=True)
    else:
        space["train.lr"] = ParamSpec(low=5e-5, high=3e-3, log=True)
        space["adapter.r"] = ParamSpec(choices=[4, 8, 16, 32])
        space["adapter.alpha/r"] = ParamSpec(choices=[1, 2, 4])
        space["adapter.dropout"] = ParamSpec(choices=[0.0, 0.05, 0.1])
        space["adapter.target_modules"] = ParamSpec(choices=["all-linear", ["q_proj", "k_proj", "v_proj", "o_proj"]])
        space["adapter.rslora"] = ParamSpec(choices=[False, True])
        space["adapter.dora"] = ParamSpec(choices=[False, True])
        space["adapter.init"] = ParamSpec(choices=["default", "pissa", "olora"])
        space["adapter.lora_plus_ratio"] = ParamSpec(choices=[None, 4.0, 16.0])
    space["train.warmup_ratio"] = ParamSpec(low=0.0, high=0.1)
    if train.max_steps is not None:
        low, high = max(1, train.max_steps // 2), max(2, train.max_steps * 2)
        space["train.max_steps"] = ParamSpec(type="int", low=low, high=high, log=True)
    else:
        space["train.epochs"] = ParamSpec(low=train.epochs / 2, high=train.epochs * 2, log=True)
    sizes = sorted({train.batch_size // 2, train.batch_size, train.batch_size * 2})
    sizes = [s for s in sizes if s >= train.micro_batch_size and s % train.micro_batch_size == 0]
    if len(sizes) > 1:
        space["train.batch_size"] = ParamSpec(choices=sizes)
    return space


def _choice_label(value: Any) -> Any:
    """Optuna stores categorical choices as None, bool, int, float or str: a list choice goes as its YAML text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip()


def check_space(raw: dict, space: dict[str, ParamSpec]) -> None:
    """Refuse, naming the key, a space the config cannot take: a key the sweep sets itself, a key the config does not
    have, or a value it refuses. Checked one key at a time, at every choice and at both ends of every range."""
    for key, spec in space.items():
        if any(key == r.rstrip(".") or key.startswith(r) for r in RESERVED if r.endswith(".")) or key in RESERVED:
            raise SweepError(f"sweep.space.{key}: the sweep sets this key on every trial itself; remove it")
        if key in DERIVED_KEYS:
            if any(not isinstance(v, int | float) or isinstance(v, bool) or v <= 0 for v in spec.values_to_check()):
                raise SweepError(f"sweep.space.{key}: alpha/r values must be positive numbers")
            continue
        for value in spec.values_to_check():
            trial = copy.deepcopy(raw)
            try:
                set_key(trial, key.split("."), value)
                build_config(trial)
            except ConfigError as err:
                reason = str(err).split("\n")[-1].removeprefix("config key ")
                raise SweepError(f"sweep.space.{key}: {value!r} is refused: {reason}") from None
    labels = [[_choice_label(c) for c in spec.choices or []] for spec in space.values()]
    for key, choice_labels in zip(space, labels, strict=True):
        if len(set(map(repr, choice_labels))) != len(choice_labels):
            raise SweepError(f"sweep.space.{key}: two choices are the same value")


def sample(trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """The trial's value for every key of the space (categorical list choices decoded back from their label)."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            labels = [_choice_label(c) for c in spec.choices or []]
            picked = trial.suggest_categorical(key, labels)
            params[key] = (spec.choices or [])[labels.index(picked)]
        elif spec.type == "int":
            params[key] = trial.suggest_int(key, int(spec.low or 0), int(spec.high or 0), log=spec.log)
        else:
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    return params


def decode(space: dict[str, ParamSpec], stored: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as Optuna stored them, with list choices turned back from their labels."""
    params = {}
    for key, value in stored.items():
        spec = space.get(key)
        if spec is not None and spec.type == "categorical":
            labels = [_choice_label(c) for c in spec.choices or []]
            value = (spec.choices or [])[labels.index(value)] if value in labels else value
        params[key] = value
    return params


def config_params(cfg: Config, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """The config's own value of every key of `space` that the space can hold, as `sample` would draw it (the inverse
    of apply_params: alpha/r is the adapter's scale, and with LoRA+ train.lr is the B factors' rate). A value outside
    a range or not among the choices is left out, for the sampler to draw."""
    flat = flatten(cfg.model_dump(mode="json"))
    adapter = cfg.adapter
    flat["adapter.alpha/r"] = adapter.alpha / (math.sqrt(adapter.r) if adapter.rslora else adapter.r)
    if adapter.lora_plus_ratio:
        flat["train.lr"] = cfg.train.lr * adapter.lora_plus_ratio
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if key not in flat:
            continue
        value = flat[key]
        if spec.type == "categorical":
            label = _choice_label(value)  # 2.0 is the choice 2, but True is not the choice 1
            same = [
                c
                for c in map(_choice_label, spec.choices or [])
                if c == label and isinstance(c, bool) == isinstance(label, bool)
            ]
            if same:
                params[key] = same[0]
        elif isinstance(value, int | float) and not isinstance(value, bool) and spec.low <= value <= spec.high:
            params[key] = int(value) if spec.type == "int" else float(value)
    return params


def apply_params(raw: dict, params: dict[str, Any]) -> dict:
    """The config with the trial's values. A drawn alpha/r is the scale the adapter multiplies its update by, and
    becomes adapter.alpha for the trial's rank: alpha/r for LoRA, alpha/sqrt(r) with rsLoRA (so alpha = scale x
    sqrt(r)); read as alpha/r under rsLoRA, a multiple of 4 at rank 32 gave a scale of 22.6. With LoRA+ a drawn
    train.lr is the B matrices' rate, the fastest any weight trains at, and train.lr becomes A's (drawn / ratio): a
    ratio of 16 on top of a rate drawn for plain LoRA sent B to 16 x 3e-3, and every such trial of a pubmedqa sweep
    blew up in its first steps."""
    out = copy.deepcopy(raw)
    for key, value in params.items():
        if key not in DERIVED_KEYS:
            set_key(out, key.split("."), value)
    if "adapter.alpha/r" in params:
        rank = out["adapter"].get("r", 16)
        per_rank = math.sqrt(rank) if out["adapter"].get("rslora") else rank
        out["adapter"]["alpha"] = float(params["adapter.alpha/r"]) * per_rank
    ratio = out.get("adapter", {}).get("lora_plus_ratio")
    if "train.lr" in params and ratio:
        out["train"]["lr"] = float(params["train.lr"]) / float(ratio)
    return out
