"""`tunesmith quickstart`: LoRA-tune the embedded default model on the bundled support dataset (a few minutes on
two CPU cores) and show base and tuned answers to the same held-out questions side by side.

The dataset teaches a fictional company's support house style with a fixed answer format (greeting, issue, numbered
steps, reference number, sign-off), which a 135M model picks up in a few dozen steps and which is easy to see.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tunesmith.config import build_config
from tunesmith.recipes.summary import print_result
from tunesmith.recipes.train import run_training


def asset(name: str) -> Path:
    return Path(str(resources.files("tunesmith") / "assets" / name))


def quickstart_config(out: str) -> dict:
    return {
        "model": {"base": "smollm2-135m-instruct"},
        "data": {
            "train": [{"path": str(asset("support_train.jsonl")), "kind": "chat"}],
            "eval": [{"path": str(asset("support_eval.jsonl")), "kind": "chat"}],
            "max_length": 384,
        },
        "adapter": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "train": {
            "max_steps": 14,
            "batch_size": 8,
            "micro_batch_size": 8,
            "lr": 2e-3,
            "warmup_ratio": 0.1,
            "schedule": "cosine",
            "save_every": 8,
            "seed": 42,
        },
        "eval": {"samples": 3, "max_new_tokens": 110},
        # The bundled tickets mention addresses on the reserved .example domain; the audit still lists them.
        "audit": {"allow": ["pii"]},
        "output": {"dir": out, "overwrite": True},
    }


def run_quickstart(out: str = "runs/quickstart", overrides: list[str] | None = None) -> None:
    cfg = build_config(quickstart_config(out), overrides, source="quickstart")
    print_result(run_training(cfg))
