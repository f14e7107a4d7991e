"""The "Preference tuning" table of benchmarks/README.md from the finished runs of run.sh.

python benchmarks/preference/table.py runs/bench-preference
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _read(run: Path, name: str) -> dict:
    return json.loads((run / "eval" / f"{name}.json").read_text(encoding="utf-8"))


def _minutes(run: Path) -> str:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    seconds = max((json.loads(x).get("elapsed_s") or 0 for x in lines), default=0)
    return f"{seconds / 60:.1f}"


def _interval(d: dict, key: str = "diff") -> str:
    return f"{d[key]:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main(root: Path) -> None:
    judge = root / "judge"
    if (judge / "eval" / "tuned.json").is_file():
        base, tuned = _read(judge, "base"), _read(judge, "tuned")
        gain = tuned["preference"]
        print(
            f"Judge (reward model, {tuned['metrics']['rows']} held-out pairs of its own split): ranking accuracy "
            f"{gain['tuned']:.3f} vs the base LM's own ranking {gain['base']:.3f}, {_interval(gain)}; "
            f"untrained head {base['metrics']['accuracy']:.3f}; {_minutes(judge)} min training\n"
        )
    print(
        "| method | held-out pairs | preference accuracy base → tuned (diff, 95% CI) | ranking accuracy: base per "
        "token → tuned implicit reward (diff, 95% CI) | "
        "chosen log-p base → tuned | judge win rate vs base (95% CI) | words base → tuned | forgetting: "
        "families worse beyond noise | training min |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run in sorted(p.parent.parent for p in root.glob("*/eval/tuned.json")):
        name = run.name
        if name == "judge":
            continue
        if not (run / "eval" / "tuned.json").is_file():
            continue
        base, tuned = _read(run, "base"), _read(run, "tuned")
        m, b = tuned["metrics"], base["metrics"]
        gain = tuned["preference"]
        win = tuned.get("win_rate")
        won = f"{win['win_rate']:.3f} [{win['low']:.3f}, {win['high']:.3f}] of {win['rows']}" if win else "-"
        ranking = tuned.get("reward_ranking")  # DPO; SimPO's and ORPO's reward ranks as the likelihood per token does
        ranked = "the preference accuracy"
        if ranking:
            ranked = f"{ranking['base']:.3f} → {ranking['tuned']:.3f} ({_interval(ranking)})"
        lengths = tuned.get("lengths") or {}
        words = f"{lengths.get('base') or 0:.1f} → {lengths.get('tuned') or 0:.1f}"
        families = (tuned.get("forgetting") or {}).get("families") or {}
        worse = [f for f, v in families.items() if v["worse"]]
        forgot = f"{len(worse)} of {len(families)}" + (f" ({', '.join(worse)})" if worse else "")
        print(
            f"| {name} | {m['rows']} | {gain['base']:.3f} → {gain['tuned']:.3f} ({_interval(gain)}) | "
            f"{ranked} | {b['chosen_logp']:.1f} → {m['chosen_logp']:.1f} | {won} | {words} | "
            f"{forgot} | {_minutes(run)} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-preference"))
