"""Golden values: per-step losses of every training method on the tiny model, fp32, fixed seed.

Recorded before the training methods were restructured into one module each (methods/); a change to a method, the
loop, the batching or the loss normalisation that moves any of them by more than float noise fails here. To record
them again after an intended change: `TUNESMITH_RECORD_GOLDEN=FILE pytest tests/unit/test_golden.py` writes the new
table to FILE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_classify import LABELS, write_toy
from tiny_runs import tiny_config, write_chat_data, write_pair_data

from tunesmith.config import build_config
from tunesmith.recipes.train import run_training

STEPS = 3


def sft(model_dir: Path, folder: Path, **settings) -> dict:
    data = write_chat_data(folder / "chat.jsonl", n=24)
    return tiny_config(model_dir, data, folder / "run", max_steps=STEPS, eval_every=2, **settings)


def classifier(model_dir: Path, folder: Path, **settings) -> dict:
    cfg = tiny_config(model_dir, write_toy(folder / "toy.jsonl", n=48), folder / "run", max_steps=STEPS, **settings)
    cfg["data"]["train"] = [
        {"path": cfg["data"]["train"][0]["path"], "fields": {"tweet": "text", "class": "label"}}
        | {"labels": {0: "account", 1: "friendly"}}
    ]
    cfg["data"]["eval_fraction"] = 0.25
    cfg["task"] = {"type": "classification", "labels": LABELS, "max_rows": 4, "bootstrap_resamples": 100}
    cfg["task"]["baselines"] = ["likelihood_zero_shot"]
    cfg["method"] = {"type": "classifier", "loss": "focal", "class_weights": "balanced"}
    cfg["audit"] = {"allow": ["leakage"]}
    return cfg


def pairs(model_dir: Path, folder: Path, method: str = "dpo", **settings) -> dict:
    cfg = tiny_config(model_dir, write_pair_data(folder / "pairs.jsonl", n=32), folder / "run", max_steps=STEPS,
                      eval_every=2, lr=2e-2, **settings)  # fmt: skip
    cfg["method"] = {"type": method}
    cfg["data"]["eval_fraction"] = 0.25
    return cfg


# name -> (config builder, settings); every method and the batching variants that change how rows meet the loss.
CASES = {
    "sft-lora-packed": (sft, {}),
    "sft-lora-padded": (sft, {"packing": False}),
    "sft-full": (sft, {"method": "full", "lr": 1e-4}),
    "classifier-lora-focal-balanced": (classifier, {}),
    "dpo-lora-packed": (pairs, {"packing": True}),
    "simpo-lora-padded": (pairs, {"method": "simpo", "packing": False}),
    "reward-model-lora": (pairs, {"method": "reward_model"}),
}

# Per case: the train loss of steps 1..3, then every eval loss in metrics.jsonl (base at step 0, mid-run, final).
GOLDEN: dict[str, list[float]] = {
    "sft-lora-packed": [
        6.013437906901042,
        5.953861781529018,
        5.902262033509814,
        5.963794708251953,
        5.881259918212891,
        5.866350446428571,
    ],
    "classifier-lora-focal-balanced": [
        0.18731682747602463,
        0.2698461189866066,
        0.2286478877067566,
        0.17910683155059814,
        0.20953482389450073,
    ],
    "sft-lora-padded": [
        6.013438102526543,
        5.953861573926446,
        5.902262537932593,
        5.963794708251953,
        5.881259918212891,
        5.866350446428571,
    ],
    "sft-full": [
        6.013437906901042,
        5.980956616044855,
        5.954262977789257,
        5.963794708251953,
        5.91949953351702,
        5.913387298583984,
    ],
    "dpo-lora-packed": [
        0.6931471824645996,
        0.5450212359428406,
        0.45598624646663666,
        0.6931471824645996,
        0.4788500852882862,
        0.4327702224254608,
    ],
    "reward-model-lora": [
        0.6950928866863251,
        0.5917830169200897,
        0.4253039211034775,
        0.6950594782829285,
        0.4591788649559021,
        0.1831611692905426,
    ],
    "simpo-lora-padded": [
        1.2634872794151306,
        0.9874991178512573,
        0.8360398411750793,
        1.244132548570633,
        0.8305247202515602,
        0.7391667291522026,
    ],
}


def losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r["loss"] for r in records if r.get("split", "train") == "train"]
    return train + [r["loss"] for r in records if r.get("split") == "eval"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_per_step_losses_match_the_recorded_values(case, tiny_model_dir, tmp_path):
    build, settings = CASES[case]
    run_training(build_config(build(tiny_model_dir, tmp_path, **settings)), log=lambda *_: None)
    got = losses(tmp_path / "run")
    record = os.environ.get("TUNESMITH_RECORD_GOLDEN")
    if record:  # a file the new values are appended to, one `case: [...]` line each
        with open(record, "a", encoding="utf-8") as f:
            f.write(f"    {case!r}: {got!r},\n")
        return
    assert got == pytest.approx(GOLDEN[case], rel=1e-5, abs=1e-6)
