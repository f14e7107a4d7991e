"""Where one training step's time goes: torch.profiler over a few steps of the speed benchmark's gsm8k rows.

    python benchmarks/speed/profile_step.py [--full] [--steps 2] [--threads 2] [--sdpa] [--compile] [--fp32]

Prints the operators by total self time and the share of the step spent in matrix multiplies, next to the
machine's measured matmul rate (the MFU ceiling): what limits model FLOPs utilisation on this CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import SHARED, matmul_peak

from tunesmith.config import build_config
from tunesmith.data.templates import Renderer
from tunesmith.models.loading import load_base, training_precision, unwrap
from tunesmith.training.loop import accumulate, build_optimizer
from tunesmith.training.objectives import CausalLMObjective, make_batch
from tunesmith.training.prepare import prepare_data
from tunesmith.training.speed import make_trainable

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full fine-tuning (default: LoRA r=16)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sdpa", action="store_true", help="packed rows through SDPA and a block-diagonal mask, not row by row"
    )
    parser.add_argument("--compile", action="store_true", help="train.compile: each decoder layer compiled")
    parser.add_argument(
        "--fp32", action="store_true", help="pin fp32 (default: tunesmith's auto, bf16 autocast where bf16 is native)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path("/tmp/profile-gsm8k.jsonl")
    rows = [json.loads(x) for x in (SHARED / "gsm8k" / "train.jsonl").read_text().splitlines()[:64]]
    data.write_text("".join(json.dumps({"prompt": r["question"], "completion": r["answer"]}) + "\n" for r in rows))
    cfg = build_config(
        {
            "data": {"train": [{"path": str(data)}], "eval_fraction": 0.05},
            "adapter": {"method": "full" if args.full else "lora"},
            "train": {"batch_size": 8, "micro_batch_size": 4, "compile": args.compile},
        }
    )
    base = load_base(cfg.model, torch.device("cpu"), torch.float32)
    prepared = prepare_data(cfg, Renderer(base.tokenizer, "auto", 1024))
    model = make_trainable(base.model, cfg.adapter, cfg.train, "CAUSAL_LM", packs=cfg.train.packing)
    inner = unwrap(model)
    if args.sdpa:
        inner.set_attn_implementation("sdpa")
    _, autocast = training_precision("float32" if args.fp32 else "auto", torch.device("cpu"))
    print(f"attention: {inner.config._attn_implementation}; autocast: {autocast}")
    model.train()
    optimizer, _ = build_optimizer(model, cfg.train, 10)
    pad = base.tokenizer.pad_token_id
    steps = [prepared.train[i * 8 : (i + 1) * 8] for i in range(args.steps + 1)]

    def step(rows8):
        micro = [make_batch(rows8[j : j + 4], pad, 1024) for j in (0, 4)]
        accumulate(model, CausalLMObjective(), micro, autocast)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return sum(len(r.input_ids) for r in rows8)

    step(steps[0])  # warm-up
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tokens = sum(step(s) for s in steps[1:])
    seconds = time.perf_counter() - started
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    peak = matmul_peak(autocast or torch.float32, args.threads)
    print(
        f"{tokens} tokens in {seconds:.1f} s ({tokens / seconds:.0f} tokens/s, profiled); matmul kernels "
        f"{100 * matmul / total:.0f}% of self time; measured {autocast or torch.float32} matmul peak {peak:.1f} GFLOP/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
