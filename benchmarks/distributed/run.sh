#!/usr/bin/env bash
# Data-parallel training against one process, on this machine's CPUs (gloo; NCCL where there are GPUs):
# `tunesmith verify --ranks 2` on the default model, LoRA through DDP and full fine-tuning through FSDP2, in the
# precision `auto` picks here and pinned to fp32; then `tunesmith plan --ranks` for the per-rank memory of 4 ranks.
#   bash benchmarks/distributed/run.sh            (from the repository root; ~15 minutes on 2 CPU cores)
set -euo pipefail
TS=${TUNESMITH:-.venv/bin/tunesmith}
for spec in "examples/gsm8k-lora.yaml" \
            "examples/gsm8k-lora.yaml model.dtype=float32" \
            "examples/gsm8k-full.yaml train.distributed=fsdp" \
            "examples/gsm8k-full.yaml train.distributed=fsdp model.dtype=float32"; do
  echo "== tunesmith verify $spec --ranks 2 --steps 3"
  # shellcheck disable=SC2086
  $TS verify $spec --ranks 2 --steps 3 | tail -n 9
done
for mode in ddp fsdp; do
  echo "== tunesmith plan examples/gsm8k-full.yaml train.distributed=$mode train.micro_batch_size=2 --ranks 4"
  $TS plan examples/gsm8k-full.yaml train.distributed=$mode train.micro_batch_size=2 --ranks 4 --steps 1 | tail -n 14
done
