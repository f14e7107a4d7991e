"""Task benchmarks: each task trained and scored base vs tuned on ../shared/data, then one markdown table.

    python benchmarks/tasks/run.py --out runs/bench-tasks                 # every task, one after another
    python benchmarks/tasks/run.py --out runs/bench-tasks --only sst2-head
    python benchmarks/tasks/run.py --out runs/bench-tasks --table-only    # rebuild the table from finished runs

Each task is an ordinary `tunesmith train` run (its config is in this folder or in examples/), so every number in
the table is also in that run's eval/base.json and eval/tuned.json, report.html and MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Job:
    name: str
    config: str
    overrides: list[str] = field(default_factory=list)
    metrics: tuple[str, ...] = ("accuracy",)
    note: str = ""


# 100 steps of 16 rows (1,600 of the 2,744 training rows, ~13 min here) and a larger stratified held-out share: 15%
# of 3,000 capped at data.eval_max_rows (256), all scored, so that the rare class (hate, 6%) has 15 eval rows.
DAVIDSON = [
    "data.train.0.limit=3000",
    "data.eval_fraction=0.15",
    "train.max_steps=100",
    "train.micro_batch_size=16",
    "train.lr=1.0e-3",
    "task.max_rows=450",
]
JOBS = [
    Job("sst2-head", "examples/sst2-head.yaml", note="LoRA + head, 3,200 train rows; full dev (872)"),
    Job(
        "davidson-unweighted",
        "examples/davidson-head.yaml",
        ["task.class_weights=none", *DAVIDSON],
        ("macro_f1", "recall/hate", "accuracy"),
        "head, plain CE, 100 steps of 16; 256 of 3,000 rows held out (stratified), all scored",
    ),
    Job(
        "davidson-weighted",
        "examples/davidson-head.yaml",
        ["task.class_weights=balanced", *DAVIDSON],
        ("macro_f1", "recall/hate", "accuracy"),
        "head, balanced class weights; same split",
    ),
    Job("scitldr", str(HERE / "scitldr.yaml"), metrics=("rougeL", "rouge1"), note="192 train papers; test[:60]"),
    Job("xquad", str(HERE / "xquad.yaml"), metrics=("exact_match", "f1"), note="paragraph split; 120 eval questions"),
    Job("pubmedqa", str(HERE / "pubmedqa.yaml"), note="128 train rows; first 100 of the official 500 test ids"),
]


def run(job: Job, out: Path) -> None:
    run_dir = out / job.name
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", job.config, f"output.dir={run_dir}", "output.overwrite=true"]
    cmd += job.overrides
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    with open(out / f"{job.name}.log", "w", encoding="utf-8") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"  {job.name}: exit {code} after {time.perf_counter() - started:.0f} s (log: {out / job.name}.log)")


def _read(run_dir: Path, name: str) -> dict:
    path = run_dir / "eval" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _strongest(base: dict) -> tuple[str, dict]:
    """(name, metrics) of the base the tuned model is compared with: the strongest baseline (eval/baselines.py), or
    zero-shot generation for a run written before baselines existed."""
    name = base.get("strongest")
    if name:
        return name, base["baselines"][name]["metrics"]
    return "generation_zero_shot", base["task"]["metrics"]


def table(out: Path, jobs: list[Job]) -> str:
    lines = [
        "| task | metric | strongest base | trivial | tuned | tuned − strongest base [95% CI] | train time | "
        "forgetting: QA acc / text ppl | setup |",
        "|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for job in jobs:
        base, tuned = _read(out / job.name, "base"), _read(out / job.name, "tuned")
        if not tuned:
            lines.append(f"| {job.name} | (no finished run) | | | | | | | {job.note} |")
            continue
        forgetting = tuned.get("forgetting")
        lost = (
            f"{forgetting['qa_accuracy']:+.3f} / {forgetting['text_perplexity']:+.2f}"
            if forgetting
            else "n/a (a head does not generate)"
        )
        name, strongest = _strongest(base)
        trivial = base.get("trivial") or {}
        for metric in job.metrics:
            diff = tuned.get("comparison", {}).get(metric, {})
            ci = f"{diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "—"
            floor = (trivial.get("metrics") or {}).get(metric)
            floor_cell = f"{_cell(floor)} ({trivial['name']})" if floor is not None else "—"
            lines.append(
                f"| {job.name} | {metric} | {_cell(strongest.get(metric))} ({name}) | "
                f"{floor_cell} | "
                f"{_cell(tuned['task']['metrics'].get(metric))} | {ci} | {tuned.get('train_seconds', 0):.0f} s | "
                f"{lost} | {job.note} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tasks"))
    parser.add_argument("--only", nargs="*", help="task names to run (default: all)")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from finished runs")
    args = parser.parse_args()
    jobs = [j for j in JOBS if not args.only or j.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for job in jobs:
            run(job, args.out)
    text = table(args.out, JOBS)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
