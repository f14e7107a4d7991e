"""Load a base model and its tokenizer from local files, and put a LoRA adapter (peft) on it."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import AdapterConfig, ModelConfig
from tunesmith.models.registry import ResolvedBase, is_run_dir, resolve_base

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
    autocast in training is a separate choice: training_precision)."""
    if name != "auto":
        return getattr(torch, name)
    return torch.bfloat16 if device.type == "cuda" and has_bf16(device) else torch.float32


def training_precision(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype) for training. `auto` where the hardware multiplies bf16 natively (GPUs with
    bf16, CPUs with AVX512-BF16 or AMX) is mixed precision: fp32 weights and optimizer state, bf16 matmuls inside
    the forward and backward. Weights stay fp32 because bf16 weights lose small updates to rounding (full
    fine-tuning then ends measurably worse). `float16` is mixed precision too, with dynamic loss scaling in the
    loop (training/loss_scale.py): fp16 weights under AdamW break outright (its epsilon and every small update
    round to zero, and one step turned every weight NaN). Everywhere else, and for `float32` or `bfloat16`, the
    weights are that dtype and nothing is autocast; `float32` pins exact fp32 training on any machine."""
    if name == "auto" and has_bf16(device):
        return torch.float32, torch.bfloat16
    if name == "float16":
        return torch.float32, torch.float16
    return pick_dtype(name, device), None


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id works; eos is always there.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _load_causal_lm(path: Path, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)


def load_base(spec: ModelConfig, device: torch.device, dtype: torch.dtype) -> LoadedBase:
    """Load `model.base`. A finished run as base means *continue training from its result* (never resume):
    its adapter is merged into its own base, and training starts afresh on top of that."""
    resolved = resolve_base(spec.base)
    if is_run_dir(resolved.path):
        final = resolved.path / "final"
        adapter_cfg = final / "adapter_config.json"
        if adapter_cfg.is_file():
            from peft import PeftModel

            base_dir = Path(json.loads(adapter_cfg.read_text())["base_model_name_or_path"])
            model = _load_causal_lm(base_dir, dtype, spec.trust_remote_code)
            model = PeftModel.from_pretrained(model, final).merge_and_unload()
        else:
            model = _load_causal_lm(final, dtype, spec.trust_remote_code)
        weights_dir = final
        tokenizer = load_tokenizer(final)
    else:
        model = _load_causal_lm(resolved.path, dtype, spec.trust_remote_code)
        weights_dir = resolved.path
        tokenizer = load_tokenizer(resolved.path)
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

    lora = LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, lora)


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
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        dtype=dtype,
        trust_remote_code=trust_remote_code,
    )
    model.config.pad_token_id = pad_id
    model.config.problem_type = "single_label_classification"
    model.config.architectures = [type(model).__name__]  # the base's config still names its causal-LM class
    return model.to(device)


_WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")


def save_classifier_base(model: nn.Module, weights_dir: Path, folder: Path, tokenizer) -> Path:
    """Write the folder a head's adapter is saved against and point `model` at it: the classifier's config (labels,
    pad id) beside the base weights. AutoPeftModelForSequenceClassification builds the base from the config in that
    folder, so the base's own folder (a causal-LM config) would give a 2-way head without label names. The weight
    files are hard-linked (copied across file systems): the run holds its own base at no extra disk cost."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights_dir.resolve() != folder.resolve():
        for pattern in _WEIGHT_FILES:
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
