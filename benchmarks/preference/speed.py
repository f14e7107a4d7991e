"""DPO speed side by side: tunesmith vs TRL's DPOTrainer on the same HH-RLHF pairs, LoRA, batch and precision, one
invocation, one tool at a time on an otherwise idle machine.

    python benchmarks/preference/speed.py --out runs/bench-dpo-speed --trl-python /path/to/trl-venv/bin/python

Both train SmolLM2-135M-Instruct with LoRA r16 on every linear layer, 1 epoch of the helpful-base pairs among the first
100 that fit 512 tokens whole (so neither tool truncates), effective batch 8 (micro-batches of 4), lr 5e-5 cosine,
beta 0.1, bf16 autocast, and then score the DPO loss on the same held-out pairs (those of rows 2001-2036 that fit).
Wall seconds are whole commands (loading, the reference, training, the held-out loss); "training" is each tool's own
timing of its loop (TRL computes the reference inside it, tunesmith reads it once before, shown apart).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1].parent / "shared" / "data" / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
TRAIN, HELD = (0, 100), (2000, 2036)
MAX_LENGTH = 512


def fits(tokenizer, prompt: list[dict], answer: list[dict]) -> bool:
    """Whether the whole conversation renders within MAX_LENGTH tokens, so neither tool truncates it (they truncate
    differently: tunesmith refuses a pair whose answer would be cut away, TRL cuts the prompt's start)."""
    ids = tokenizer.apply_chat_template(prompt + answer, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids) <= MAX_LENGTH


def pairs(span: tuple[int, int], tokenizer) -> list[dict]:
    """Conversational pairs, split as tunesmith splits HH-RLHF transcripts (the shared turns, then two replies); only
    pairs that fit MAX_LENGTH whole, so both tools train the same tokens."""
    from tunesmith.data.formats import split_pair, transcript_turns

    with gzip.open(SOURCE, "rt", encoding="utf-8") as fh:
        lines = [json.loads(x) for x in fh if x.strip()][span[0] : span[1]]
    out = []
    for row in lines:
        split = split_pair(row["chosen"], row["rejected"])
        if split is None:
            continue
        prompt, chosen, rejected = split
        row = {
            "prompt": transcript_turns(prompt),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        if fits(tokenizer, row["prompt"], row["chosen"]) and fits(tokenizer, row["prompt"], row["rejected"]):
            out.append(row)
    return out


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def flat(path: Path, rows: list[dict]) -> Path:
    """The same pairs as tunesmith reads them: the conversation so far in input.messages, OpenAI's layout."""
    return write(
        path,
        [{"input": {"messages": r["prompt"]}, "preferred_output": r["chosen"], "non_preferred_output": r["rejected"]}
         for r in rows],
    )  # fmt: skip


def timed(cmd: list[str], log: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    return code, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trl-python", required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    from tunesmith.models.registry import resolve_base

    model_dir = resolve_base(args.model).path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train, held = pairs(TRAIN, tokenizer), pairs(HELD, tokenizer)
    config = {
        "model": {"base": args.model},
        "data": {
            "train": [{"path": str(flat(out / "train.jsonl", train))}],
            "eval": [{"path": str(flat(out / "held.jsonl", held))}],
            "max_length": MAX_LENGTH,
        },
        "method": {"type": "dpo", "beta": 0.1},
        "adapter": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "micro_batch_size": 4,
            "lr": 5e-5,
            "warmup_ratio": 0.05,
            "seed": 42,
            "threads": 2,
        },
        "eval": {"general": False, "samples": 0},
        "audit": {"allow": ["leakage", "pii"]},
        "output": {"dir": str(out / "tunesmith"), "overwrite": True},
    }
    (out / "tunesmith.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    rows = []
    code, wall = timed([sys.executable, "-m", "tunesmith.cli", "train", str(out / "tunesmith.yaml")],
                       out / "tunesmith.log")  # fmt: skip
    if code == 0:
        tuned = json.loads((out / "tunesmith" / "eval" / "tuned.json").read_text())
        rows.append(("tunesmith", wall, tuned.get("train_seconds"), tuned["metrics"]["loss"],
                     tuned["metrics"]["reward_accuracy"]))  # fmt: skip
    trl_out = out / "trl-bf16"
    trl_out.mkdir(exist_ok=True)
    cmd = [args.trl_python, str(HERE / "trl_dpo.py"), "--model", str(model_dir), "--train",
           str(write(out / "trl-train.jsonl", train)), "--held", str(write(out / "trl-held.jsonl", held)),
           "--out", str(trl_out), "--bf16"]  # fmt: skip
    code, wall = timed(cmd, trl_out / "run.log")
    if code == 0:
        info = json.loads((trl_out / "result.json").read_text())
        rows.append(("TRL DPOTrainer + PEFT, bf16", wall, info["train_seconds"], info["held_out_loss"],
                     info.get("held_out_reward_accuracy")))  # fmt: skip
    log = (out / "tunesmith.log").read_text(encoding="utf-8", errors="replace")
    print(f"{len(train)} training pairs, {len(held)} held-out pairs; " + " ".join(re.findall(r"\d+ steps of 8", log)))
    print("| tool | wall s | training loop s | held-out DPO loss | held-out reward accuracy |")
    print("|---|---|---|---|---|")
    for name, wall, loop, loss, acc in rows:
        print(f"| {name} | {wall:.1f} | {loop or 0:.1f} | {loss:.4f} | {acc if acc is None else round(acc, 3)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
