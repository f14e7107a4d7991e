"""The two-task table from runs/seq-*: the first task's accuracy (the base's strongest baseline, after task 1, after
task 2) with the share of its gain kept, the second task's ROUGE-L gain, and the probe families the second run made
worse beyond noise (against the first run, its base).

    python benchmarks/forgetting/sequence_table.py      # after benchmarks/forgetting/sequence.sh
"""

from __future__ import annotations

import json
from pathlib import Path

RUNS = Path("runs")


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def interval(d: dict) -> str:
    return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main() -> None:
    first = read(RUNS / "seq-sst2" / "eval" / "sst2.json")["comparison"]["accuracy"]
    base, after_first = first["base"], first["tuned"]
    print(f"SST-2 accuracy: base (its strongest baseline) {base:.3f}, after task 1 {after_first:.3f}, "
          f"gain {interval(first)}\n")  # fmt: skip
    print("| second run (replay) | SST-2 accuracy after task 2 | change vs after task 1 [paired 95% CI] | share of "
          "task-1 gain kept | SciTLDR ROUGE-L gain [paired 95% CI] | probe families worse beyond noise |")  # fmt: skip
    print("|---|---:|---|---:|---|---|")
    for variant in ("none", "self", "both"):
        run = RUNS / f"seq-scitldr-{variant}"
        if not (run / "eval" / "sst2.json").is_file():
            continue
        kept = read(run / "eval" / "sst2.json")["comparison"]["accuracy"]
        tuned = read(run / "eval" / "tuned.json")
        families = tuned.get("forgetting", {}).get("families", {})
        worse = [name for name, f in families.items() if f.get("worse")]
        share = (kept["tuned"] - base) / (after_first - base)
        rouge = interval(tuned["comparison"]["rougeL"])
        print(f"| {variant} | {kept['tuned']:.3f} | {interval(kept)} | {share:.0%} | {rouge} | "
              f"{len(worse)} of {len(families)} {', '.join(worse)} |")  # fmt: skip


if __name__ == "__main__":
    main()
