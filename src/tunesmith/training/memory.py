"""Memory accounting: what the machine has, what the process holds, and what a training step will need.

Peak RSS is read from the kernel (VmHWM); writing 5 to /proc/self/clear_refs resets it, so the peak of one step can
be measured in a process that has already done other work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tunesmith.training.chunked_ce import CE_CHUNK

GIB = 1024**3


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel; True when set.

    A training step allocates and frees the same large activations every micro-batch. By default glibc serves
    every block over its mmap threshold (128 KiB to 32 MiB) with a fresh mapping and unmaps it on free, so the next
    micro-batch faults in and zeroes every page again: measured on the gsm8k LoRA workload, about 1.9 M page faults
    and 9.5 s of system time for 8 steps. Served from the heap, which is never trimmed, the same work took 1.0 M
    faults and 7.5 s, and a step about 4% less wall time. The cost is that the process keeps its high-water mark
    (peak resident memory about 2% higher there), which a training process reaches anyway. Only the process that
    trains calls this; elsewhere (not glibc) it does nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


# oneDNN (the CPU matmul library) caches one compiled kernel per operation and shape, up to 1,024 of them.
KERNEL_CACHE = 256


def bound_kernel_cache() -> bool:
    """Keep oneDNN's cache of compiled CPU kernels to KERNEL_CACHE entries; True when set here (a value the user set
    in ONEDNN_PRIMITIVE_CACHE_CAPACITY is kept). Must run before the process's first matmul.

    Packed micro-batches have a new number of token rows almost every time, and every new shape compiles a new kernel
    for each matmul of the forward and backward passes (about 4 ms each on a 2-core CPU), which the cache keeps: on
    the gsm8k LoRA workload, memory the process never freed grew by ~50 MB per step until 1,024 kernels were held,
    about 1 GB more than the first steps, so a run's peak climbed for its first ~20 steps, past what `tunesmith
    plan` measured. A step reuses only its own shapes (the same kernels serve every layer), so 256 entries hit as
    often as 1,024 here (the same tokens/s), and the growth stops within the first steps the plan already measures."""
    if "ONEDNN_PRIMITIVE_CACHE_CAPACITY" in os.environ:
        return False
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(KERNEL_CACHE)
    return True


def current_rss() -> int:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss()


def peak_rss() -> int:
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def available_memory(device: torch.device) -> int:
    """Bytes this run may still use: free GPU memory, or the smaller of MemAvailable and the cgroup limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            cgroup_free = int(limit) - used
            available = cgroup_free if available is None else min(available, cgroup_free)
    except (OSError, ValueError):
        pass
    return available if available is not None else 0


@dataclass
class MemoryBreakdown:
    """Bytes, by what holds them, at the peak of a training step on the longest micro-batch."""

    process: int  # interpreter, libraries, data, and the model weights as loaded
    gradients: int
    optimizer: int
    activations: int  # saved for backward, plus the trained positions' logits and their gradient

    @property
    def total(self) -> int:
        return self.process + self.gradients + self.optimizer + self.activations


def activation_bytes(config, tokens: int, trained_tokens: int, dtype_bytes: int, checkpointing: bool) -> int:
    """Analytic activation memory of one forward+backward for a Llama-style decoder.

    Per token and layer, backward needs: the inputs of the norms (2 x hidden), of the q/k/v, o, gate/up and down
    projections (3 x hidden + intermediate), the attention's q, k, v and output (2 x hidden + 2 x kv width), and
    the MLP's gate, up and activation outputs (3 x intermediate). Full fine-tuning keeps the same tensors (weight
    gradients need the same inputs). Checkpointing keeps only each layer's input plus one layer's working set.
    The output projection runs on trained positions only, CE_CHUNK at a time: one chunk's logits and gradient, fp32.
    During backward, the gradients of those tensors coexist with them and the allocator keeps freed blocks, which
    on CPU measured about twice the saved tensors at the peak (SmolLM2-135M, LoRA, 8 x 179 tokens).
    """
    hidden = config.hidden_size
    inter = getattr(config, "intermediate_size", 4 * hidden)
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", heads) * getattr(config, "head_dim", hidden // heads)
    per_layer = 7 * hidden + 4 * inter + 2 * kv
    kept = (layers * hidden + per_layer) if checkpointing else layers * per_layer
    logits = 2 * min(trained_tokens, CE_CHUNK) * config.vocab_size * 4  # chunked: one chunk's logits at a time
    return 2 * tokens * kept * dtype_bytes + logits


def static_bytes(total_params: int, trainable: int, dtype_bytes: int) -> tuple[int, int]:
    """(gradients, optimizer state) for AdamW: one gradient and two moments per trainable parameter."""
    return trainable * dtype_bytes, 2 * trainable * 4
