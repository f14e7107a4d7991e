"""Training speed, side by side: tunesmith vs TRL SFTTrainer + PEFT vs LLaMA-Factory, same model, rows and batch.

    python benchmarks/speed/compare.py --out /tmp/speed \\
        --trl-python /path/to/trl-venv/bin/python --lf-python /path/to/llamafactory-venv/bin/python
    python benchmarks/speed/compare.py --out /tmp/speed --workloads gsm8k --tools tunesmith trl   # a subset
    python benchmarks/speed/compare.py --out /tmp/speed --only gsm8k:tunesmith gsm8k:trl hh:tunesmith hh:trl

Tools: tunesmith (its defaults; on a CPU that multiplies bf16 natively, AVX512-BF16 or AMX, and measured it faster
than fp32, that is fp32 weights with bf16 autocast, elsewhere fp32), tunesmith-fp32 (model.dtype float32),
tunesmith-bf16 (model.dtype bf16-mixed: bf16 autocast whatever the measurement), trl (CPU-sensible: fp32, no
gradient checkpointing), trl-bf16 (bf16 autocast, no checkpointing: tunesmith's mixed precision), trl-packing
(sensible plus TRL's packing), trl-defaults (bf16 autocast and gradient checkpointing, step-capped), llamafactory
(its CLI, fp32).

On a machine with a GPU every tool trains there in bf16 (TRL: bf16 without gradient checkpointing as its sensible
setting), peak memory is the GPU's, and MFU is against the GPU's measured bf16 matmul peak.

Workloads (SmolLM2-135M-Instruct, max length 1024, batch 8 = 4 x 2 accumulation, lr 2e-4 cosine, 1 epoch):
  gsm8k       LoRA r=16 on all linear layers, gsm8k train[:128]; held out: gsm8k test[:32]
  hh          LoRA r=16, hh-rlhf helpful-base chosen dialogues [:128] (multi-turn, uneven); held out: [128:160]
  gsm8k-full  full fine-tuning on the gsm8k rows
Every tool trains on assistant turns only. The held-out loss of every result is computed by one evaluator
(tunesmith's, on the saved adapter or model), so the numbers compare like with like. Each tool runs as its own
process under /usr/bin/time -v (peak RSS); epoch time is the tool's own training-loop time. MFU divides the model
FLOPs the epoch needs (LoRA: 4 x params per token, frozen weights take no weight gradient; full: 6 x params; the
output projection counted on trained positions only) by the time and this machine's measured matmul peak in the
precision the row trains in (fp32, or bf16 where it autocasts; bf16 on a GPU). TRL and LLaMA-Factory live in their
own virtual environments (LLaMA-Factory brings its own torch); the paths are arguments, and a tool whose interpreter
is not given is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
# The real datasets: ../shared/data beside the repository, or wherever TUNESMITH_SHARED_DATA points.
SHARED = Path(os.environ.get("TUNESMITH_SHARED_DATA", HERE.parents[1].parent / "shared" / "data"))
TOOLS = (
    *("tunesmith", "tunesmith-fp32", "tunesmith-bf16"),
    *("trl", "trl-bf16", "trl-packing", "trl-defaults", "llamafactory"),
)
TRL_VARIANTS = {"trl": "sensible", "trl-bf16": "bf16", "trl-packing": "packing", "trl-defaults": "defaults"}
WORKLOADS = ("gsm8k", "hh", "gsm8k-full")
BATCH, MICRO, LR, MAX_LENGTH, THREADS = 8, 4, 2e-4, 1024, 2


def prepare(out: Path) -> dict[str, tuple[Path, Path]]:
    """messages JSONL files per dataset: (train, held-out)."""
    import gzip

    from tunesmith.data.formats import parse_transcript

    out.mkdir(parents=True, exist_ok=True)
    names = {"gsm8k": ("gsm8k-train.jsonl", "gsm8k-eval.jsonl"), "hh": ("hh-train.jsonl", "hh-eval.jsonl")}
    if not SHARED.is_dir():  # a machine without ../shared: files prepared elsewhere and copied into `out`
        return {k: (out / a, out / b) for k, (a, b) in names.items()}

    def write(path: Path, rows: list[list[dict]]) -> Path:
        path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows), encoding="utf-8")
        return path

    def gsm(split: str, n: int) -> list[list[dict]]:
        lines = (SHARED / "gsm8k" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        rows = [json.loads(x) for x in lines]
        return [
            [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}] for r in rows
        ]

    with gzip.open(SHARED / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", "rt", encoding="utf-8") as fh:
        hh = [parse_transcript(json.loads(next(fh))["chosen"]) for _ in range(160)]
    return {
        "gsm8k": (
            write(out / "gsm8k-train.jsonl", gsm("train", 128)),
            write(out / "gsm8k-eval.jsonl", gsm("test", 32)),
        ),
        "hh": (write(out / "hh-train.jsonl", hh[:128]), write(out / "hh-eval.jsonl", hh[128:])),
    }


GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if GPU else "cpu")


def matmul_peak(dtype: torch.dtype, threads: int = THREADS, trials: int = 5, repeats: int = 5) -> float:
    """GFLOP/s of a large square matmul in `dtype`, the best of a few timed trials: the MFU denominator."""
    torch.set_num_threads(threads)
    n = 8192 if GPU else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(trials):
        if GPU:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if GPU:
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def precision(tool: str) -> str:
    """The matmul precision a row trains in: bf16 on a GPU; on a CPU, bf16 autocast where the tool's settings ask
    for it (tunesmith's `auto` does where bf16 is native and measured faster), fp32 otherwise."""
    from tunesmith.models.loading import training_precision

    asked = tool in ("trl-bf16", "trl-defaults", "tunesmith-bf16")
    if GPU or asked or (tool == "tunesmith" and training_precision("auto", DEVICE)[1]):
        return "bf16"
    return "fp32"


def timed(cmd: list[str], log: Path, env: dict | None = None) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MiB) of a command run under /usr/bin/time -v."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        code = subprocess.call(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return code, wall, int(match.group(1)) / 1024 if match else float("nan")


def tunesmith_config(model: str, train: Path, held: Path, out: Path, full: bool, dtype: str = "auto") -> dict:
    return {
        "model": {"base": model, "dtype": dtype},
        "data": {
            "train": [{"path": str(train)}],
            "eval": [{"path": str(held)}],
            "max_length": MAX_LENGTH,
            "replay": {"fraction": 0.0},  # the same rows as every other tool: no replay rows added
        },
        "adapter": {"method": "full" if full else "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "train": {
            "epochs": 1,
            "batch_size": BATCH,
            "micro_batch_size": MICRO,
            "lr": LR,
            "warmup_ratio": 0.05,
            "seed": 42,
            "threads": THREADS,
        },
        "eval": {"general": False, "samples": 0},
        "audit": {"allow": ["leakage", "pii"]},
        "output": {"dir": str(out), "overwrite": True},
    }


def run_tunesmith(model: str, train: Path, held: Path, out: Path, full: bool, dtype: str = "auto") -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump(tunesmith_config(model, train, held, out, full, dtype)), encoding="utf-8")
    code, wall, rss = timed(
        [sys.executable, "-m", "tunesmith.cli", "train", str(config)], out.parent / f"{out.name}.log"
    )
    tuned = json.loads((out / "eval" / "tuned.json").read_text()) if code == 0 else {}
    gpu_mb = None
    if GPU and code == 0:
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
        gpu_mb = max((x.get("peak_gpu_mb") or 0 for x in lines), default=None)
    return {
        "code": code,
        "wall": wall,
        "rss": rss,
        "gpu_mb": gpu_mb,
        "train_seconds": tuned.get("train_seconds"),
        "final": out / "final",
    }


def run_trl(python: str, variant: str, model_dir: Path, train: Path, out: Path, full: bool, max_steps: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        python,
        str(HERE / "trl_run.py"),
        "--model",
        str(model_dir),
        "--train",
        str(train),
        "--out",
        str(out),
        "--variant",
        variant,
        "--max-steps",
        str(max_steps),
        "--threads",
        str(THREADS),
    ]
    code, wall, rss = timed(cmd + (["--full"] if full else []), out / "run.log")
    info = json.loads((out / "result.json").read_text()) if code == 0 else {}
    return {
        "code": code,
        "wall": wall,
        "rss": rss,
        "train_seconds": info.get("train_seconds"),
        "gpu_mb": info.get("peak_gpu_mb"),
        "steps": info.get("steps"),
        "final": out / "final",
    }


def run_llamafactory(python: str, model_dir: Path, train: Path, out: Path, full: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    rows = [json.loads(x) for x in train.read_text(encoding="utf-8").splitlines()]
    (out / "data" / "train.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {
        "bench": {
            "file_name": "train.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }
    (out / "data" / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    cfg = {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "template": "smollm2",
        "finetuning_type": "full" if full else "lora",
        "dataset": "bench",
        "dataset_dir": str(out / "data"),
        "cutoff_len": MAX_LENGTH,
        "per_device_train_batch_size": MICRO,
        "gradient_accumulation_steps": BATCH // MICRO,
        "learning_rate": LR,
        "num_train_epochs": 1.0,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.05,
        "output_dir": str(out / "final"),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
    }
    if not full:
        cfg.update({"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target": "all"})
    (out / "train.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    cli = str(Path(python).parent / "llamafactory-cli")
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "CUDA_VISIBLE_DEVICES": ""}
    code, wall, rss = timed([cli, "train", str(out / "train.yaml")], out / "run.log", env)
    results = out / "final" / "train_results.json"
    runtime = json.loads(results.read_text()).get("train_runtime") if results.is_file() else None
    return {"code": code, "wall": wall, "rss": rss, "train_seconds": runtime, "final": out / "final"}


def held_out_loss(final: Path, base_dir: Path, held: Path) -> float | None:
    """Loss on the held-out rows by tunesmith's evaluator, whichever tool saved `final`."""
    from transformers import AutoModelForCausalLM

    from tunesmith.config import DatasetSpec
    from tunesmith.data.loading import load_dataset
    from tunesmith.data.templates import Encoded, Renderer
    from tunesmith.eval.runner import evaluate_loss
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.training.objectives import CausalLMObjective

    if not final.is_dir():
        return None
    if (final / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), final)
    else:
        model = AutoModelForCausalLM.from_pretrained(final)
    model = model.to(DEVICE, torch.float32)
    tokenizer = load_tokenizer(base_dir)
    renderer = Renderer(tokenizer, "auto", MAX_LENGTH)
    rows = [renderer.encode(ex) for ex in load_dataset(DatasetSpec(path=str(held))).examples]
    rows = [r for r in rows if isinstance(r, Encoded)]
    return evaluate_loss(model, rows, CausalLMObjective(), 8, tokenizer.pad_token_id, DEVICE).loss


def epoch_tokens(train: Path, base_dir: Path) -> tuple[int, int]:
    """(non-padding tokens, trained tokens) of one epoch, as the chat template renders the rows."""
    from tunesmith.config import DatasetSpec
    from tunesmith.data.loading import load_dataset
    from tunesmith.data.templates import Encoded, Renderer
    from tunesmith.models.loading import load_tokenizer

    renderer = Renderer(load_tokenizer(base_dir), "auto", MAX_LENGTH)
    rows = [renderer.encode(ex) for ex in load_dataset(DatasetSpec(path=str(train))).examples]
    rows = [r for r in rows if isinstance(r, Encoded)]
    return sum(len(r.input_ids) for r in rows), sum(r.trained_tokens for r in rows)


def model_flops(tokens: int, trained: int, full: bool, params: int, head: int) -> float:
    body = params - head
    per = 6 if full else 4
    return per * body * tokens + per * head * trained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument(
        "--tools",
        nargs="+",
        default=[t for t in TOOLS if t not in ("tunesmith-fp32", "tunesmith-bf16")],
        choices=TOOLS,
        metavar="TOOL",
    )
    parser.add_argument("--trl-python", default=None, help="python of a virtual environment with trl, peft, datasets")
    parser.add_argument("--lf-python", default=None, help="python of a virtual environment with llamafactory")
    parser.add_argument("--defaults-steps", type=int, default=4, help="step cap for TRL with its own defaults")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="registry name, HF folder or .gguf file")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="WORKLOAD:TOOL",
        help="run just these pairs, e.g. gsm8k:trl hh:tunesmith (other rows of --out's results.json are kept)",
    )
    args = parser.parse_args()
    from tunesmith.models.registry import resolve_base

    base_dir = resolve_base(args.model).path
    data = prepare(args.out / "data")
    peaks = {"bf16": matmul_peak(torch.bfloat16)} if GPU else {"fp32": matmul_peak(torch.float32)}
    if not GPU and any(precision(t) == "bf16" for t in args.tools):
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    where = torch.cuda.get_device_name() if GPU else f"{THREADS} CPU threads"
    print(f"matmul peak ({where}): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()), flush=True)
    config = json.loads((base_dir / "config.json").read_text())
    params = 134_515_008  # SmolLM2-135M (tied embeddings)
    head = config["vocab_size"] * config["hidden_size"]
    results = []
    previous = args.out / "results.json"
    if args.only is not None and previous.is_file():  # rerun some pairs: keep the other rows of the last run
        results = [
            r for r in json.loads(previous.read_text())["rows"] if f"{r['workload']}:{r['tool']}" not in args.only
        ]
    for workload in args.workloads:
        full = workload.endswith("-full")
        train, held = data[workload.removesuffix("-full")]
        tokens, trained = epoch_tokens(train, base_dir)
        for tool in args.tools:
            if (tool.startswith("trl") and not args.trl_python) or (tool == "llamafactory" and not args.lf_python):
                continue
            if full and tool in ("trl-defaults", "trl-packing", "trl-bf16"):
                continue
            if args.only is not None and f"{workload}:{tool}" not in args.only:
                continue
            out = args.out / workload / tool
            print(f"{workload} / {tool} ...", flush=True)
            if GPU and tool in ("llamafactory", "tunesmith-fp32", "tunesmith-bf16", "trl-bf16"):
                continue  # LLaMA-Factory's environment here is CPU-only; on a GPU the precision rows are the main ones
            if tool.startswith("tunesmith"):
                dtype = {"tunesmith-fp32": "float32", "tunesmith-bf16": "bf16-mixed"}.get(tool, "auto")
                r = run_tunesmith(args.model, train, held, out, full, dtype)
            elif tool == "llamafactory":
                r = run_llamafactory(args.lf_python, base_dir, train, out, full)
            else:
                variant = TRL_VARIANTS[tool]
                steps = args.defaults_steps if variant == "defaults" else -1
                r = run_trl(args.trl_python, variant, base_dir, train, out, full, steps)
            capped = tool == "trl-defaults" and (r.get("steps") or 16) < 16  # stopped before the epoch ended
            share = (r.get("steps") or 16) / 16 if capped else 1.0  # a capped run covers this share of the epoch
            seconds = r["train_seconds"] / share if r.get("train_seconds") else None
            row_precision = precision(tool)
            row = {
                "workload": workload,
                "tool": tool,
                "exit": r["code"],
                "epoch_s": seconds,
                "wall_s": r["wall"],
                "peak_rss_mb": r["rss"],
                "peak_gpu_mb": r.get("gpu_mb"),
                "tokens_per_s": tokens / seconds if seconds else None,
                "eval_loss": None if capped else held_out_loss(r["final"], base_dir, held),
                "precision": row_precision,
                "mfu": model_flops(tokens, trained, full, params, head) / seconds / (peaks[row_precision] * 1e9)
                if seconds
                else None,
                "note": f"{r.get('steps')} steps, extrapolated to the epoch" if capped else "",
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            summary = {"peak_gflops": peaks, "where": where, "rows": results}
            (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    order = {(w, t): i for i, (w, t) in enumerate((w, t) for w in WORKLOADS for t in TOOLS)}
    results.sort(key=lambda r: order[(r["workload"], r["tool"])])
    text = table(results, peaks, where)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def table(rows: list[dict], peaks: dict[str, float], where: str) -> str:
    memory = "peak GPU memory" if GPU else "peak RSS"
    lines = [
        f"matmul peak ({where}): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()),
        "",
        f"| workload | tool | epoch time | vs tunesmith | non-pad tokens/s | {memory} | held-out loss | MFU "
        "(of the peak in its precision) | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    ours = {r["workload"]: r["epoch_s"] for r in rows if r["tool"] == "tunesmith"}
    for r in rows:
        ratio = r["epoch_s"] / ours[r["workload"]] if r["epoch_s"] and ours.get(r["workload"]) else None
        note = r["note"] or (f"exit {r['exit']}" if r["exit"] else "")
        mfu = f"{_f(r['mfu'] and 100 * r['mfu'], '.1f', '%')} {r.get('precision', '')}".strip()
        lines.append(
            f"| {r['workload']} | {r['tool']} | {_f(r['epoch_s'], '.0f', ' s')} | {_f(ratio, '.2f', 'x')} | "
            f"{_f(r['tokens_per_s'], '.0f')} | {_f(r['peak_gpu_mb'] if GPU else r['peak_rss_mb'], '.0f', ' MiB')} | "
            f"{_f(r['eval_loss'], '.4f')} | {mfu} | {note} |"
        )
    return "\n".join(lines)


def _f(value, spec: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


if __name__ == "__main__":
    sys.exit(main())
