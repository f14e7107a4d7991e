"""The model as its run trained it: how prompts were rendered and in which dtype it is scored, for every consumer
of a finished run (eval, generate, predict and serve).

    settings = TrainedSettings.of_run(Path("runs/sst2"))   # the run's config.yaml; defaults for a bare final/
    renderer = settings.renderer(tokenizer)                # prompts exactly as training rendered them
    dtype = settings.weight_dtype(device)                  # base and tuned are scored in the same dtype

    trained = load_run(RunDir(Path("runs/sst2")), device)  # final/ as the run trained it, tokenizer, settings

A run's prompts use its `data.prompt_format` and `data.max_length`, and open with the system message its training
rows opened with (when its training datasets share one). Every consumer builds its renderer here, so a prompt that
`tunesmith generate` or the server sends is, token for token, the prompt the model was trained to answer. And every
consumer loads final/ through load_run: a causal LM or a sequence classifier by what final/ holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from tunesmith.config import Config, DataConfig
from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import _load_causal_lm, _quiet_transformers, load_tokenizer, loading, pick_dtype
from tunesmith.rundir import RunDir

ModelKind = Literal["causal_lm", "classifier"]


@dataclass(frozen=True)
class TrainedSettings:
    prompt_format: str = "auto"
    max_length: int = DataConfig().max_length
    system: str | None = None  # the system message every training row began with; None when there was none
    dtype: str = "auto"  # model.dtype: scoring and serving dtype (pick_dtype)

    @classmethod
    def of_config(cls, cfg: Config) -> TrainedSettings:
        return cls(cfg.data.prompt_format, cfg.data.max_length, shared_system(cfg), cfg.model.dtype)

    @classmethod
    def of_run(cls, run: Path | RunDir) -> TrainedSettings:
        """The settings of a run folder (or of the run that holds a final/ folder); the defaults a run would have
        used for a model folder with no config.yaml beside it."""
        run = run if isinstance(run, RunDir) else RunDir.at(run)
        return cls.of_config(run.config()) if run.config_file.is_file() else cls()

    def renderer(self, tokenizer) -> Renderer:
        return Renderer(tokenizer, self.prompt_format, self.max_length, self.system)

    def weight_dtype(self, device: torch.device) -> torch.dtype:
        return pick_dtype(self.dtype, device)


def shared_system(cfg: Config) -> str | None:
    """The system message of the training datasets when they all share one (a mixture whose datasets differ
    has no single prompt to reproduce, so none is added and a caller must give one)."""
    systems = {spec.system for spec in cfg.data.train}
    return systems.pop() if len(systems) == 1 else None


# --- the finished model ------------------------------------------------------------------------------------------


class NoFinishedModel(TunesmithError):
    """A folder without a model a run finished: neither adapter_config.json nor config.json."""


@dataclass
class TrainedModel:
    """A run's final/ model, its tokenizer and the settings its inputs were rendered with."""

    model: nn.Module
    tokenizer: Any
    settings: TrainedSettings
    kind: ModelKind


def _json_object(path: Path, folder: Path, what: str) -> dict:
    """A model file that must hold a JSON object (adapter_config.json, config.json), read as one."""
    with loading(folder, what):
        value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise TunesmithError(f"{path}: cannot load the {what}: the file holds JSON but not an object")
    return value


def model_kind(folder: Path) -> ModelKind:
    """What a finished model folder holds, from its files alone: a LoRA adapter's task_type, or a full model's
    architectures (a *ForSequenceClassification class is a classifier; anything else a causal LM)."""
    adapter, config = folder / "adapter_config.json", folder / "config.json"
    if adapter.is_file():
        task_type = _json_object(adapter, folder, "adapter").get("task_type")
        return "classifier" if task_type == "SEQ_CLS" else "causal_lm"
    if config.is_file():
        architectures = _json_object(config, folder, "model").get("architectures") or []
        return "classifier" if any(a.endswith("ForSequenceClassification") for a in architectures) else "causal_lm"
    raise NoFinishedModel(f"{folder}: no finished model here (expected final/ with adapter_config.json or config.json)")


def adapter_base(folder: Path) -> Path | None:
    """The base weights folder a LoRA adapter in `folder` was saved against; None for a full model."""
    config = folder / "adapter_config.json"
    if not config.is_file():
        return None
    settings = _json_object(config, folder, "adapter")
    with loading(folder, "adapter"):
        return Path(settings["base_model_name_or_path"]).resolve()


def load_run(
    run: RunDir | str | Path,
    device: torch.device,
    dtype: torch.dtype | Literal["auto"] | None = None,
    *,
    merged: bool = False,
    trust_remote_code: bool = False,
) -> TrainedModel:
    """The model as the run trained it: its final/ (load_trained), prompted and scored with its config's settings.
    `run` is a run folder or its final/ folder (a final/ folder on its own gets the defaults a run would have used)."""
    run = run if isinstance(run, RunDir) else RunDir.at(run)
    settings = TrainedSettings.of_run(run)
    return load_trained(run.model_dir, settings, device, dtype, merged=merged, trust_remote_code=trust_remote_code)


def load_trained(
    folder: Path,
    settings: TrainedSettings,
    device: torch.device,
    dtype: torch.dtype | Literal["auto"] | None = None,
    *,
    merged: bool = False,
    trust_remote_code: bool = False,
) -> TrainedModel:
    """The model in a finished model folder (a run's final/), in `dtype`: None is the run's scoring dtype, `auto`
    the dtype the files were saved in. An adapter is loaded over the base it names and kept apart (peft's
    AutoPeftModel classes, which also size the embeddings to the saved tokenizer); `merged` instead folds it into
    the base weights and gives the causal LM (of a classifier: its decoder) that a run continuing from this one
    starts from."""
    kind: ModelKind = "causal_lm" if merged else model_kind(folder)
    dtype = settings.weight_dtype(device) if dtype is None else dtype
    _quiet_transformers()
    if merged:
        model = _merged_causal_lm(folder, dtype, trust_remote_code)
    elif kind == "causal_lm" and not (folder / "adapter_config.json").is_file():
        model = _load_causal_lm(folder, dtype, trust_remote_code)
    else:
        model = _unmerged(folder, kind, dtype, trust_remote_code)
    return TrainedModel(model.to(device).eval(), load_tokenizer(folder), settings, kind)


def _merged_causal_lm(folder: Path, dtype: torch.dtype | str, trust_remote_code: bool) -> nn.Module:
    base = adapter_base(folder)
    if base is None:
        return _load_causal_lm(folder, dtype, trust_remote_code)
    from peft import PeftModel

    model = _load_causal_lm(base, dtype, trust_remote_code)
    with loading(folder, "adapter"):
        return PeftModel.from_pretrained(model, folder).merge_and_unload()


def _unmerged(folder: Path, kind: ModelKind, dtype: torch.dtype | str, trust_remote_code: bool) -> nn.Module:
    """A classifier (adapter or full model), or a causal LM's adapter over its base, loaded as transformers and
    peft load them on their own."""
    adapter = (folder / "adapter_config.json").is_file()
    if kind == "causal_lm":
        from peft import AutoPeftModelForCausalLM as auto_class
    elif adapter:
        from peft import AutoPeftModelForSequenceClassification as auto_class
    else:
        from transformers import AutoModelForSequenceClassification as auto_class
    # Passed only when set: peft hands every keyword to its config reader as well.
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    with loading(folder):
        return auto_class.from_pretrained(folder, dtype=dtype, **remote)
