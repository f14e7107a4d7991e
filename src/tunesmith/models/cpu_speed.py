"""Whether bf16 matrix multiplies pay off on this CPU: measured once per machine and thread count, then remembered.

Having the instruction is not enough. With AMX, oneDNN's bf16 kernels multiply several times faster than fp32; with
AVX512-BF16 alone (the same Xeon family with AMX switched off in a virtual machine) they measured 0.15 TFLOP/s against
fp32's 0.26 on two threads, so mixed precision made a training step 1.65x slower. `model.dtype: auto` therefore asks
this module, not the CPU flags alone, before it autocasts to bf16 on a CPU.

The answer is cached in `cache_root()/cpu-precision.json`, keyed by the CPU (model name and capability flags), the
torch version and the thread count, so that every run on one machine makes the same choice (a resumed run keeps its
precision) and the measurement (about a second) runs once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from tunesmith.models.registry import cache_root

# bf16 must beat fp32 by this much to be chosen: a close call is not worth the rounding, and a busy machine blurs the
# measurement (AMX measures 2.5x and more; AVX512-BF16 alone 0.6x).
MARGIN = 1.3
# One of the default model's projections (a packed micro-batch of 1024 tokens through a 576 -> 1536 linear layer):
# the shape that dominates a training step, not a square matrix that flatters either kernel.
SHAPE = (1024, 576, 1536)


def cpu_key(threads: int) -> str:
    flags = ",".join(sorted(k for k, v in torch.cpu.get_capabilities().items() if v is True))
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{flags}|torch {torch.__version__}|threads {threads}"


def measure_bf16_speedup(rounds: int = 15) -> float:
    """fp32 time over bf16 time for SHAPE on the current threads (above 1: bf16 is faster). The two dtypes take turns,
    and each keeps its fastest round, so that other work on the machine slows both alike and the minimum filters it
    out (measured one after the other, a busy machine turned 0.6 into anything from 0.4 to 1.6)."""
    m, k, n = SHAPE
    x = torch.randn(m, k)
    w = torch.randn(n, k)
    pairs = {dtype: (x.to(dtype), w.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(pairs, float("inf"))
    for a, b in pairs.values():
        torch.nn.functional.linear(a, b)  # kernel selection and first-touch
    for _ in range(rounds):
        for dtype, (a, b) in pairs.items():
            started = time.perf_counter()
            torch.nn.functional.linear(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - started)
    return best[torch.float32] / best[torch.bfloat16]


def bf16_speedup(threads: int | None = None) -> float:
    """The remembered (or now measured) bf16 speed-up of this CPU at `threads` (default: torch's current count)."""
    threads = threads or torch.get_num_threads()
    path = cache_root() / "cpu-precision.json"
    key = cpu_key(threads)
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("speedup"), int | float):
        return float(entry["speedup"])
    speedup = measure_bf16_speedup()
    known[key] = {"speedup": round(speedup, 3)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one
    except OSError:  # a read-only or full cache: measured again next time, the same answer
        tmp.unlink(missing_ok=True)
    return speedup


def bf16_pays_off(threads: int | None = None) -> bool:
    return bf16_speedup(threads) >= MARGIN
