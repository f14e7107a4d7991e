"""Loaded models: one per base weights directory, with every LoRA run of that base as a peft adapter on it.

    base model (weights in memory once)
      ├─ adapter "run0"  <- runs/support-1a2b/final     set_adapter("run0") for its requests
      └─ adapter "run1"  <- runs/legal-9f3e/final       set_adapter("run1")
    requests to the base itself run inside disable_adapter()

Full fine-tuned runs load as their own model; classifier runs load through eval/predict.py's load_head (one
load_run, as `predict` loads them).
Weights are read from safetensors files only (no pickle), and model code shipped with a checkpoint runs only when
the operator passed --trust-remote-code. Tokenizers and prompt settings are loaded without the weights, so
requests can be tokenized and checked before the model is even in memory.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_tokenizer, pick_device, pick_dtype
from tunesmith.models.registry import resolve_base
from tunesmith.models.trained import adapter_base, model_kind
from tunesmith.rundir import RunDir
from tunesmith.serve.catalog import ModelEntry

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class UnsafeWeights(TunesmithError):
    """A model folder whose weights are not in safetensors files."""


def require_safetensors(folder: Path) -> None:
    """Refuse a folder that offers pickle weights or no safetensors file: loaders would fall back to unpickling."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if not any(n.endswith(".safetensors") for n in names) or any(n.endswith(PICKLE_SUFFIXES) for n in names):
        raise UnsafeWeights(f"{folder.name}: this server loads weights from safetensors files only")


@dataclass
class Profile:
    """How to talk to one model id: its tokenizer and prompt rendering, and which loaded weights answer it."""

    entry: ModelEntry
    tokenizer: Any
    renderer: Renderer
    stop_ids: set[int]
    context: int  # positions the model can attend to
    weights: Path  # the base weights directory (or a full model's folder): one loaded model per distinct path
    adapter: Path | None  # final/ of a LoRA run


@dataclass
class Loaded:
    model: nn.Module
    adapters: dict[Path, tuple[str, float]] = field(default_factory=dict)  # final/ -> (adapter name, file mtime)


def _final(entry: ModelEntry) -> Path:
    assert entry.run_dir is not None
    return RunDir(entry.run_dir).final


def _context(folder: Path, trust_remote_code: bool) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


class Engines:
    """Every loaded model, shared by all requests. Only the batcher's thread runs models; profiles may be built
    from any thread."""

    def __init__(self, trust_remote_code: bool = False, device: torch.device | None = None, dtype: str = "auto"):
        self.trust_remote_code = trust_remote_code
        self.device = device or pick_device()
        self.dtype = pick_dtype(dtype, self.device)  # generating models; heads score in the dtype they trained in
        self._profiles: dict[tuple[str, float], Profile] = {}
        self._loaded: dict[Path, Loaded] = {}
        self._heads: dict[tuple[Path, float], Any] = {}
        self._lock = threading.Lock()

    # --- profiles (no weights) -------------------------------------------------------------------------------

    def profile(self, entry: ModelEntry) -> Profile:
        stamp = _final(entry).stat().st_mtime if entry.run_dir else 0.0
        key = (entry.id, stamp)
        with self._lock:
            if key not in self._profiles:
                self._profiles[key] = self._build_profile(entry)
            return self._profiles[key]

    def _build_profile(self, entry: ModelEntry) -> Profile:
        if entry.run_dir is None:
            weights, adapter = resolve_base(entry.source).path, None
            tokenizer_dir = weights
        else:
            final = _final(entry)
            require_safetensors(final)
            base = adapter_base(final)
            weights, adapter = (base, final) if base is not None else (final.resolve(), None)
            tokenizer_dir = final
        tokenizer = load_tokenizer(tokenizer_dir)
        renderer = entry.settings.renderer(tokenizer)  # prompts as the run was trained
        stop_ids = set(renderer.stop_ids()) if entry.generative else set()
        return Profile(
            entry, tokenizer, renderer, stop_ids, _context(weights, self.trust_remote_code), weights, adapter
        )

    # --- causal LMs ------------------------------------------------------------------------------------------

    def _load(self, folder: Path) -> nn.Module:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        require_safetensors(folder)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=self.dtype, use_safetensors=True, trust_remote_code=self.trust_remote_code
        )
        return model.to(self.device).eval()

    def _adapter_name(self, loaded: Loaded, final: Path) -> str:
        """Load (or reload, when the run was retrained in place) the adapter in `final` onto its base."""
        from peft import PeftModel

        mtime = (final / "adapter_model.safetensors").stat().st_mtime
        known = loaded.adapters.get(final)
        if known is not None and known[1] == mtime:
            return known[0]
        if known is not None:
            loaded.model.delete_adapter(known[0])
        # peft adapter names become module keys, which may not contain dots: number them instead of using run names.
        name = f"run{len(loaded.adapters)}" if known is None else f"{known[0]}r"
        if isinstance(loaded.model, PeftModel):
            loaded.model.load_adapter(final, adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(loaded.model, final, adapter_name=name)
        loaded.model.eval()
        loaded.adapters[final] = (name, mtime)
        return name

    @contextmanager
    def activate(self, profile: Profile):
        """The model that answers `profile`, with its adapter switched on (or all adapters off for the base)."""
        loaded = self._loaded.get(profile.weights)
        if loaded is None:
            loaded = self._loaded[profile.weights] = Loaded(self._load(profile.weights))
        if profile.adapter is not None:
            name = self._adapter_name(loaded, profile.adapter)  # may wrap loaded.model in a PeftModel first
            loaded.model.set_adapter(name)
            yield loaded.model
            return
        from peft import PeftModel

        with loaded.model.disable_adapter() if isinstance(loaded.model, PeftModel) else nullcontext():
            yield loaded.model

    # --- classification heads and reward models ---------------------------------------------------------------

    def _scorer(self, entry: ModelEntry, load):
        """`load(run_dir, device)` of a head run's final/ (safetensors only), once per final/ version."""
        final = _final(entry)
        require_safetensors(final)
        base = adapter_base(final)
        if base is not None and base.is_dir():
            require_safetensors(base)
        if model_kind(final) != "classifier":
            raise TunesmithError(f"{entry.id} is not a classification or reward-model run")
        key = (final, final.stat().st_mtime)
        if key not in self._heads:
            self._heads[key] = load(entry.run_dir, self.device)
        return self._heads[key]

    def head(self, entry: ModelEntry):
        """A classifier run as eval/predict.py's HeadModel."""
        from tunesmith.eval.predict import load_head

        return self._scorer(entry, load_head)

    def reward(self, entry: ModelEntry):
        """A reward-model run as eval/reward.py's RewardScorer."""
        from tunesmith.eval.reward import load_reward_model

        return self._scorer(entry, load_reward_model)
