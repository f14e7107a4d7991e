"""Small training datasets and configs for the tiny on-disk Llama (see make_tiny.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

PADDING = ("", "please", "now", "thanks", "again", "today", "here")


def write_chat_data(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Arithmetic chats of uneven length, so padding and token counts differ between micro-batches. Each length of
    padding repeats its own word, so no question is a part or a near copy of another: the audit would count one as
    leakage across the held-out split."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        pad = rng.randint(0, 6)
        extra = f" {PADDING[pad]}" * pad
        answer = f"the answer is {a + b}." + " thanks" * rng.randint(0, 4)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"what is {a} plus {b}?{extra}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_config(model_dir: Path, data: Path, out: Path, **train) -> dict:
    """Pinned to fp32: the mechanics tests compare runs to 1e-6, and `auto` would be bf16 autocast on CPUs that
    multiply bf16 natively (test_speed.py's precision tests cover that)."""
    general = train.pop("general", False)
    reuse_base = train.pop("reuse_base", False)
    return {
        "model": {"base": str(model_dir), "dtype": train.pop("dtype", "float32")},
        # No replay: the untrained tiny model answers the general prompts with nothing (tests that replay set it).
        "data": {"train": [{"path": str(data)}], "max_length": 128, "replay": {"fraction": train.pop("replay", 0.0)}},
        "adapter": {"method": train.pop("method", "lora"), "r": 4, "alpha": 8, "dropout": train.pop("dropout", 0.0)},
        "train": {"max_steps": 6, "batch_size": 8, "micro_batch_size": 4, "lr": 5e-3, "seed": 3, **train},
        # The forgetting probes generate 40 answers per model: tests that check them ask for them (general=True).
        # Each run scores its base (tests count and fault its evaluations); test_base_cache.py covers reusing it.
        "eval": {"samples": 1, "max_new_tokens": 4, "general": general, "reuse_base": reuse_base},
        "output": {"dir": str(out)},
    }


def write_pair_data(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Preference pairs over the arithmetic questions: the right sum chosen, a wrong one rejected (answers of uneven
    length, so the two sides of a pair differ in tokens)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        pad = rng.randint(0, 6)
        wrong = (a + b + rng.randint(1, 9)) % 19
        rows.append(
            {
                "prompt": f"what is {a} plus {b}?{f' {PADDING[pad]}' * pad}",
                "chosen": f"the answer is {a + b}." + " thanks" * rng.randint(0, 2),
                "rejected": f"it is {wrong}, i think." + " sorry" * rng.randint(0, 2),
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_kto_data(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Single answers to the arithmetic questions marked desirable (the right sum) or not (a wrong one), in TRL's
    unpaired layout (prompt, completion, label); about two in three desirable."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        pad = rng.randint(0, 6)
        good = i % 3 != 2
        answer = f"the answer is {a + b}." if good else f"it is {(a + b + rng.randint(1, 9)) % 19}, i think."
        rows.append({"prompt": f"what is {a} plus {b}?{f' {PADDING[pad]}' * pad}", "completion": answer, "label": good})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


LABELS = ["account", "friendly"]
ACCOUNT = ["password", "reset", "settings", "account", "page", "click", "open"]
FRIENDLY = ["hello", "thanks", "help", "today", "there", "how", "you"]
FILLER = ["the", "quick", "brown", "fox", "lazy", "dog", "over"]


def write_toy(path: Path, n: int = 96, seed: int = 0) -> Path:
    """A learnable two-class task of uneven lengths, in a davidson-like layout (tweet, class as 0/1)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        cls = i % 2
        words = rng.choices((ACCOUNT, FRIENDLY)[cls], k=rng.randint(2, 5)) + rng.choices(FILLER, k=rng.randint(0, 5))
        rng.shuffle(words)
        rows.append({"tweet": " ".join(words), "class": cls})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def head_config(model_dir: Path, data: Path, out: Path, **train) -> dict:
    cfg = tiny_config(model_dir, data, out, **train)
    cfg["data"]["train"] = [
        {"path": str(data), "fields": {"tweet": "text", "class": "label"}, "labels": {0: "account", 1: "friendly"}}
    ]
    cfg["data"]["eval_fraction"] = 0.25
    cfg["method"] = {"type": "classifier"}
    cfg["task"] = {
        "type": "classification",
        "labels": LABELS,
        "max_new_tokens": 4,
        "bootstrap_resamples": 200,
    }
    cfg["audit"] = {"allow": ["leakage"]}  # short toy rows from a small vocabulary overlap by design
    return cfg
