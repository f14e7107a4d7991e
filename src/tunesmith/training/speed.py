"""Model-side speed options, applied after the adapter: attention that keeps packed rows apart at their own cost,
activation checkpointing and regional torch.compile.

    train: {packing: true, activation_checkpointing: true, compile: true}

With packing the model's SDPA attention is switched to training/attention.py's (each packed row attends to itself
only, all rows of a layer in one SDPA call).
All of them leave the weights, their names and the saved files exactly as they are (`tunesmith verify` checks the
numbers): checkpointing uses transformers' own switch (non-reentrant, so frozen inputs need no gradient hook), and
compile compiles each decoder layer in place (`nn.Module.compile`), which keeps the state dict and peft's wrappers
intact and compiles one layer's graph once instead of the whole model's.
"""

from __future__ import annotations

from torch import nn

from tunesmith.config import AdapterConfig, TrainConfig
from tunesmith.models.loading import add_lora, unwrap
from tunesmith.training.attention import use_segment_attention


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of a causal LM or a sequence classifier (through a peft wrapper)."""
    inner = unwrap(model)
    backbone = getattr(inner, "model", None) or getattr(inner, "transformer", None) or inner
    layers = getattr(backbone, "layers", None) or getattr(backbone, "h", None)
    return list(layers) if layers is not None else []


def apply_speed_options(model: nn.Module, cfg: TrainConfig, packs: bool) -> None:
    """`packs`: whether the run's batches are packed (the method decides: methods/*.py `packs`)."""
    if packs:
        use_segment_attention(model)  # each packed row attends to itself only (training/attention.py)
    if cfg.activation_checkpointing:
        inner = unwrap(model)
        # transformers 5 renamed the switch; the old name still works there but warns.
        if hasattr(inner, "activation_checkpointing_enable"):
            inner.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        inner.config.use_cache = False
    if cfg.compile:
        for layer in decoder_layers(model):
            layer.compile(dynamic=True)


def make_trainable(model: nn.Module, adapter: AdapterConfig, train: TrainConfig, task_type: str, packs: bool):
    """The model as a run trains it: LoRA adapters (peft) or every weight trainable, then the speed options."""
    if adapter.method == "lora":
        model = add_lora(model, adapter, task_type=task_type)
    else:
        model.requires_grad_(True)
    apply_speed_options(model, train, packs)
    return model
