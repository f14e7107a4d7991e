"""Load a base model and its tokenizer from local files, and put a LoRA adapter (peft) on it."""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import AdapterConfig, ModelConfig
from tunesmith.errors import TunesmithError
from tunesmith.models import cpu_speed
from tunesmith.models.registry import WEIGHT_FILES, ModelFilesError, ResolvedBase, resolve_base
from tunesmith.rundir import RunDir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing local file fails at once instead of timing out on a hub
# peft asks transformers a deprecated question on every wrap; the answer is right, the warning is noise.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def _quiet_transformers() -> None:
    """Our own progress bar reports the run; transformers' per-load bars would bury it."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@dataclass
class LoadedBase:
    model: nn.Module
    tokenizer: object  # a transformers tokenizer
    resolved: ResolvedBase
    weights_dir: Path  # HF-format directory holding the base weights an adapter is saved against


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Without it bf16 matmuls are emulated and run
    several times slower than fp32; with it they run faster (oneDNN's bf16 kernels)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def has_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """Weight dtype for inference and scoring: bf16 only on GPUs that have it. On CPUs the weights stay fp32 (bf16
    autocast in training is a separate choice: training_precision, so a `bf16-mixed` run scores like `auto`)."""
    if name not in ("auto", "bf16-mixed"):
        return getattr(torch, name)
    return torch.bfloat16 if device.type == "cuda" and has_bf16(device) else torch.float32


def training_precision(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype) for training. `auto` where bf16 is both native and faster (GPUs with bf16;
    CPUs with AVX512-BF16 or AMX whose bf16 matmuls measured faster than fp32: models/cpu_speed.py) is mixed
    precision: fp32 weights and optimizer state, bf16 matmuls inside the forward and backward; `bf16-mixed` asks for
    it on any machine. Weights stay fp32 because bf16 weights lose small updates to rounding (full fine-tuning then
    ends measurably worse). `float16` is mixed precision too, with dynamic loss scaling in the loop
    (training/loss_scale.py): fp16 weights under AdamW break outright (its epsilon and every small update round to
    zero, and one step turned every weight NaN). Everywhere else, and for `float32` or `bfloat16`, the weights are
    that dtype and nothing is autocast; `float32` pins exact fp32 training on any machine."""
    if name == "bf16-mixed" or (
        name == "auto" and has_bf16(device) and (device.type != "cpu" or cpu_speed.bf16_pays_off())
    ):
        return torch.float32, torch.bfloat16
    if name == "float16":
        return torch.float32, torch.float16
    return pick_dtype(name, device), None


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


@contextmanager
def loading(path: Path, what: str = "model") -> Iterator[None]:
    """Turn what transformers, peft and safetensors raise on broken model files (a corrupt config or weights, a
    missing tokenizer, an adapter whose base is gone) into one line naming the folder. Out-of-memory and system
    errors such as a full disk pass through unchanged: they are not the files' fault."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        if isinstance(err, TunesmithError | torch.OutOfMemoryError) or (
            isinstance(err, OSError) and err.errno is not None
        ):
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "ignore_mismatched_sizes" in reason:  # transformers points at a report that logging may have hidden
            reason = "the weight shapes in the files do not match config.json"
        raise ModelFilesError(f"{path}: cannot load the {what}: {reason}") from err


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    with loading(path, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id works; eos is always there.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _load_causal_lm(path: Path, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    with loading(path):
        model, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True
        )
    # transformers fills weights missing from the files with random ones and only logs it: training on top of a
    # half-random model would look like a run and be worthless.
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ModelFilesError(
            f"{path}: the weight files lack {len(missing)} of the weights config.json describes (e.g. {missing[0]}); "
            "the weights and config.json do not belong together"
        )
    return model


def context_length(model: nn.Module) -> int | None:
    """Positions the model was built for (max_position_embeddings, or n_positions for GPT-2-style configs)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_max_length(model: nn.Module, max_length: int, base: str) -> None:
    """data.max_length may not exceed the model's context: rows longer than it would get positions the model never
    saw (learned position tables would index out of range, rotary ones would quietly degrade)."""
    context = context_length(model)
    if context is not None and max_length > context:
        raise TunesmithError(
            f"data.max_length {max_length} exceeds the context of model {base} ({context} positions); "
            f"set data.max_length to {context} or less"
        )


def load_base(
    spec: ModelConfig,
    device: torch.device,
    dtype: torch.dtype,
    max_length: int | None = None,
    adapter: AdapterConfig | None = None,
) -> LoadedBase:
    """Load `model.base`. A finished run as base means *continue training from its result* (never resume):
    its adapter is merged into its own base, and training starts afresh on top of that. Given data.max_length and
    the adapter settings, a base they do not fit (a shorter context, target_modules it has no layer for) is refused
    here, before a run writes anything."""
    resolved = resolve_base(spec.base)
    run = RunDir(resolved.path)
    if run.is_run:
        from tunesmith.models.trained import load_run  # trained.py builds on this module

        trained = load_run(run, device, dtype, merged=True, trust_remote_code=spec.trust_remote_code)
        model, tokenizer, weights_dir = trained.model, trained.tokenizer, run.final
    else:
        model = _load_causal_lm(resolved.path, dtype, spec.trust_remote_code)
        weights_dir = resolved.path
        tokenizer = load_tokenizer(resolved.path)
    if max_length is not None:
        check_max_length(model, max_length, spec.base)
    if adapter is not None and adapter.method == "lora" and adapter.target_modules != "all-linear":
        check_target_modules(model, adapter.target_modules)
    model.to(device)
    return LoadedBase(model, tokenizer, resolved, weights_dir)


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def add_lora(model: nn.Module, adapter: AdapterConfig, task_type: str = "CAUSAL_LM") -> nn.Module:
    """Wrap with peft LoRA; every linear layer but the output head by default. Base weights are frozen by peft.
    For a sequence classifier (task_type SEQ_CLS) peft keeps the `score` head out of the LoRA targets and trains it
    whole (modules_to_save), so it is in the checkpoints and in the saved adapter."""
    from peft import LoraConfig, get_peft_model

    if adapter.target_modules != "all-linear":
        check_target_modules(model, adapter.target_modules)
    lora = LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules,
        task_type=task_type,
        use_dora=adapter.dora,
        use_rslora=adapter.rslora,
        init_lora_weights=_LORA_INIT[adapter.init],
    )
    return get_peft_model(model, lora)


def save_initial_adapter(model: nn.Module, folder: Path) -> None:
    """The adapter as initialised (pissa/olora), written aside and renamed into place."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with _moved_base_advice_muted():
        model.save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def save_weights(model: nn.Module, folder: Path, initial: Path | None = None, state: dict | None = None) -> None:
    """save_pretrained; an adapter initialised by pissa/olora (`initial`: as it was before training) is saved
    converted to a plain LoRA adapter of twice the rank, which applies to the unchanged base on disk. `state`: the
    whole weights of a model whose memory holds only a shard of them (FSDP), saved in its place."""
    if initial is None:
        model.save_pretrained(folder, **({"state_dict": state} if state is not None else {}))
        return
    # peft writes the initial adapter's config again as it converts; a copy keeps the run's own intact.
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        copy = Path(scratch) / "initial"
        shutil.copytree(initial, copy)
        with _moved_base_advice_muted():
            model.save_pretrained(folder, path_initial_model_for_weight_conversion=str(copy))


@contextmanager
def _moved_base_advice_muted() -> Iterator[None]:
    """peft advises converting a pissa/olora adapter whenever one is saved, even during that conversion; final/ is
    always converted (save_weights), so the advice is noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*changes the base weights of the model", category=UserWarning)
        yield


_LORA_INIT: dict[str, bool | str] = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}
# Initialisations that move part of each base weight into the adapter (the base in memory is then not the base on
# disk): a saved adapter must be converted against the initial one to apply to the unchanged base.
MOVES_BASE = ("pissa", "olora")


def _adaptable(module: nn.Module) -> bool:
    """Layers peft's LoRA can wrap (transformers' Conv1D is GPT-2's linear layer)."""
    return isinstance(module, nn.Linear | nn.Embedding | nn.Conv1d | nn.Conv2d) or type(module).__name__ == "Conv1D"


def check_target_modules(model: nn.Module, names: list[str]) -> None:
    """Every adapter.target_modules name must match a layer, as peft matches them (the full module name or its last
    parts): peft refuses only when no name matches at all and silently skips a misspelt one beside a right one."""
    layers = [key for key, module in model.named_modules() if key and _adaptable(module)]
    unmatched = [name for name in names if not any(key == name or key.endswith("." + name) for key in layers)]
    if unmatched:
        valid = sorted({key.rsplit(".", 1)[-1] for key in layers})
        raise TunesmithError(
            f"adapter.target_modules: no layer of this model is named {', '.join(unmatched)}; its layers are named: "
            f"{', '.join(valid)} (or use all-linear)"
        )


def load_classifier(
    path: Path,
    labels: list[str],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
) -> nn.Module:
    """The base at `path` as a sequence classifier: its decoder plus a fresh K-way `score` head (seeded by the
    caller's torch seed). The config names the labels (id2label / label2id) and the pad id, which transformers'
    pooling needs (the last token that is not the pad id), so `final/` classifies with transformers alone."""
    from transformers import AutoModelForSequenceClassification

    _quiet_transformers()
    with loading(path):
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
    model.config.pad_token_id = pad_id
    # One label is a score (a reward model), more are classes.
    model.config.problem_type = "regression" if len(labels) == 1 else "single_label_classification"
    model.config.architectures = [type(model).__name__]  # the base's config still names its causal-LM class
    return model.to(device)


def save_classifier_base(model: nn.Module, weights_dir: Path, folder: Path, tokenizer) -> Path:
    """Write the folder a head's adapter is saved against and point `model` at it: the classifier's config (labels,
    pad id) beside the base weights. AutoPeftModelForSequenceClassification builds the base from the config in that
    folder, so the base's own folder (a causal-LM config) would give a 2-way head without label names. The weight
    files are hard-linked (copied across file systems): the run holds its own base at no extra disk cost."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights_dir.resolve() != folder.resolve():
        for pattern in WEIGHT_FILES:
            for src in weights_dir.glob(pattern):
                dst = folder / src.name
                dst.unlink(missing_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model.name_or_path = str(folder.resolve())
    model.config._name_or_path = model.name_or_path
    return folder


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; tied weights counted once."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def cache_keyword(model: nn.Module) -> str:
    """The name under which the model's forward and generate take a cache: `cache` since transformers 5.2x,
    `past_key_values` before (still accepted, with a warning, until it goes)."""
    return "cache" if "cache" in inspect.signature(type(unwrap(model)).forward).parameters else "past_key_values"
