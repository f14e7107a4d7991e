"""How close is `tunesmith plan` to the run it plans? Peak RSS and epoch wall time, planned vs measured.

    python benchmarks/plan_accuracy.py examples/support-lora.yaml [key.sub=value ...] [--out /tmp/plan-check]

Runs `tunesmith plan CONFIG` and then one epoch of `tunesmith train CONFIG` in fresh processes, one after the
other, and prints a markdown row: planned and measured peak memory and epoch time, with the ratio of each.
The measured peak RSS is the training process's own high-water mark (VmHWM, logged per step in metrics.jsonl);
the measured epoch time is the loop's elapsed time at the last step, without the before/after evaluations.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings for both plan and train")
    parser.add_argument("--out", default="/tmp/plan-check")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "tunesmith.cli"]
    run_dir = out / "run"
    overrides = [
        *args.overrides,
        "train.epochs=1",
        "train.max_steps=null",
        f"output.dir={run_dir}",
        "output.overwrite=true",
    ]
    subprocess.run([*cli, "plan", args.config, *overrides, "--json", str(out / "plan.json")], check=False)
    subprocess.run([*cli, "train", args.config, *overrides, "eval.samples=0"], check=True)

    plan = json.loads((out / "plan.json").read_text())
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [s for s in steps if "lr" in s]
    measured_peak = max(s["peak_rss_mb"] for s in train) * 2**20
    measured_epoch = train[-1]["elapsed_s"]
    rows = [
        ("peak memory (GiB)", plan["peak"] / 2**30, measured_peak / 2**30),
        ("epoch time (s)", plan["epoch_seconds"], measured_epoch),
    ]
    print(f"\n| {args.config} | planned | measured | planned / measured |\n|---|---|---|---|")
    for name, planned, measured in rows:
        print(f"| {name} | {planned:.2f} | {measured:.2f} | {planned / measured:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
