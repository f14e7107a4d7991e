"""The two-task table from runs/seq-*: the first task's accuracy (base, after task 1, after task 2) with the share of
its gain kept, the second task's ROUGE gain, and forgetting per probe family of the second run against the first.

    python benchmarks/forgetting/sequence_table.py      # after benchmarks/forgetting/sequence.sh
"""

from __future__ import annotations

import json
from pathlib import Path

RUNS = Path("runs")


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    first = read(RUNS / "seq-sst2" / "eval" / "tuned.json")
    base_acc = first["comparison_base"]["accuracy"]["base"] if "comparison_base" in first else None
    first_acc = first["task"]["metrics"]["accuracy"]
    print(f"task 1 (SST-2 as generation): base {base_acc}, after task 1 {first_acc:.3f}")
    print("| second run | SST-2 accuracy after task 2 [paired 95% CI vs after task 1] | share of task-1 gain kept |"
          " SciTLDR ROUGE-L gain [95% CI] | probe families worse beyond noise |")  # fmt: skip
    print("|---|---|---|---|---|")
    for variant in ("none", "self", "both"):
        run = RUNS / f"seq-scitldr-{variant}"
        if not (run / "eval" / "sst2.json").is_file():
            continue
        sst2 = read(run / "eval" / "sst2.json")
        diff = sst2["comparison"]["accuracy"]
        after = diff["tuned"]
        kept = (after - base_acc) / (first_acc - base_acc) if base_acc is not None and first_acc != base_acc else None
        tuned = read(run / "eval" / "tuned.json")
        rouge = tuned["comparison"].get("rougeL") or next(iter(tuned["comparison"].values()))
        families = tuned.get("forgetting", {}).get("families", {})
        worse = [name for name, f in families.items() if f.get("worse")]
        share = "" if kept is None else f"{kept:.0%}"
        gain = f"{rouge['diff']:+.3f} [{rouge['low']:+.3f}, {rouge['high']:+.3f}]"
        print(f"| {variant} | {after:.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}] | {share} | {gain} | "
              f"{len(worse)} of {len(families)} {', '.join(worse)} |")  # fmt: skip


if __name__ == "__main__":
    main()
