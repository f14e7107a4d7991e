"""The fixtures every case builds on: the tiny on-disk Llama, good data, and two finished runs of it.

Made once per harness run under its scratch folder (or reused from --keep DIR when they are already there).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from common import REPO, Fixtures, cli, tiny_config, write_yaml

sys.path.insert(0, str(REPO / "tests" / "assets"))
from make_tiny import write_tiny
from tiny_runs import write_chat_data

LABELS = ["account", "friendly"]
ACCOUNT = ["password", "reset", "settings", "account", "page", "click", "open"]
FRIENDLY = ["hello", "thanks", "help", "today", "there", "how", "you"]


def write_toy(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A learnable two-class task in a davidson-like layout (tweet, class as 0/1)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        cls = i % 2
        words = [*rng.choices((ACCOUNT, FRIENDLY)[cls], k=rng.randint(2, 5)), f"n{i}"]
        rows.append({"tweet": " ".join(words), "class": cls})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def head_config(fx: Fixtures, data: Path, out: Path, **train: object) -> dict:
    cfg = tiny_config(fx, data, out, **train)
    cfg["data"]["train"] = [
        {"path": str(data), "fields": {"tweet": "text", "class": "label"}, "labels": {0: "account", 1: "friendly"}}
    ]
    cfg["data"]["eval_fraction"] = 0.25
    cfg["task"] = {"type": "classification", "labels": LABELS, "bootstrap_resamples": 100}
    cfg["method"] = {"type": "classifier"}
    cfg["audit"] = {"allow": ["leakage"]}  # short toy rows from a small vocabulary overlap by design
    return cfg


def _train(cfg: dict, path: Path) -> None:
    if (Path(cfg["output"]["dir"]) / "final").is_dir():
        return
    cfg["output"]["overwrite"] = True
    proc = cli("train", write_yaml(path, cfg), cwd=path.parent)
    if proc.rc != 0:
        raise SystemExit(f"could not build the fixture run {cfg['output']['dir']}:\n{proc.err[-3000:]}")


def build(root: Path) -> Fixtures:
    root.mkdir(parents=True, exist_ok=True)
    fixtures = root / "fixtures"
    fixtures.mkdir(exist_ok=True)
    model = fixtures / "tiny-llama"
    if not (model / "config.json").is_file():
        write_tiny(model)
    fx = Fixtures(
        root=root,
        model=model,
        chat=write_chat_data(fixtures / "chat.jsonl", n=32),
        toy=write_toy(fixtures / "toy.jsonl"),
        lora_run=fixtures / "runs" / "lora",
        head_run=fixtures / "runs" / "head",
    )
    _train(tiny_config(fx, fx.chat, fx.lora_run), fixtures / "lora.yaml")
    _train(head_config(fx, fx.toy, fx.head_run), fixtures / "head.yaml")
    return fx
