"""What one training step asks of the CPU, counted rather than timed: operators dispatched, dtype casts and the
elements they convert, attention kernels. Counts do not move with the machine's load, so two commits compare
exactly where wall-clock ratios on a busy or throttled machine cannot.

    python benchmarks/speed/step_work.py                      # the default model's shapes, all layers
    python benchmarks/speed/step_work.py --layers 2 4         # per-layer cost: the difference of two depths
    python benchmarks/speed/step_work.py --micro-batch 8      # one micro-batch per step of 8 rows

One optimizer step of the speed benchmark's workload (gsm8k rows, LoRA r=16 on all linear layers, bf16 autocast,
packed micro-batches of 4 rows into max_length 512) runs through training/loop.accumulate under torch.profiler,
after one warm-up step. The model has the default base's configuration with freshly initialised weights (counts
do not depend on the values) and `--layers` decoder layers.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import prod
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import SHARED

from tunesmith.config import build_config
from tunesmith.data.templates import Renderer
from tunesmith.models.loading import load_tokenizer
from tunesmith.models.registry import resolve_base
from tunesmith.training.loop import accumulate, micro_batches
from tunesmith.training.objectives import CausalLMObjective, make_batch
from tunesmith.training.prepare import prepare_data
from tunesmith.training.speed import make_trainable


def count(layers: int, micro_batch: int, rows: int) -> dict:
    data = Path("/tmp/step-work-gsm8k.jsonl")
    lines = (SHARED / "gsm8k" / "train.jsonl").read_text().splitlines()[: rows + 16]
    data.write_text(
        "".join(json.dumps({"prompt": r["question"], "completion": r["answer"]}) + "\n" for r in map(json.loads, lines))
    )
    cfg = build_config(
        {
            "data": {"train": [{"path": str(data)}], "eval_fraction": 0.05, "max_length": 512},
            "train": {"batch_size": rows, "micro_batch_size": micro_batch},
        }
    )
    path = resolve_base(cfg.model.base).path
    tokenizer = load_tokenizer(path)
    prepared = prepare_data(cfg, Renderer(tokenizer, "auto", 512))
    config = AutoConfig.from_pretrained(path)
    config.num_hidden_layers = layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model = make_trainable(model, cfg.adapter, cfg.train, "CAUSAL_LM", packs=True)
    model.train()
    micro = micro_batches(
        prepared.train, list(range(rows)), micro_batch, make_batch, tokenizer.pad_token_id, cfg.data.max_length
    )
    accumulate(model, CausalLMObjective(), micro, torch.bfloat16)  # warm-up: one-time work is not counted
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        accumulate(model, CausalLMObjective(), micro, torch.bfloat16)
    events = prof.key_averages()
    casts = [e for e in prof.events() if e.name == "aten::_to_copy"]
    return {
        "layers": layers,
        "micro_batch": micro_batch,
        "tokens": sum(b.real_tokens for b in micro),
        "aten_ops": sum(e.count for e in events if e.key.startswith("aten::")),
        "casts": len(casts),
        "cast_elements_M": round(sum(prod(e.input_shapes[0]) for e in casts if e.input_shapes) / 1e6, 1),
        "attention_kernels": sum(e.count for e in events if e.key.startswith("aten::_scaled_dot_product_flash")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[30], help="decoder layers (default: all 30)")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--rows", type=int, default=8, help="rows per optimizer step")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for layers in args.layers:
        print(json.dumps(count(layers, args.micro_batch, args.rows)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
