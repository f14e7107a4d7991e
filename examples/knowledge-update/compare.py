"""python examples/knowledge-update/compare.py [--v1 runs/knowledge-v1] [--v2 runs/knowledge-v2]

The base, v1 and v2 side by side on the changed facts (new answers, and the old ones), the unchanged facts, and the
general-knowledge probe: exact match per set, each model prompted as its run was trained (`tunesmith eval`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {
    "changed facts, new answer": "eval_changed.jsonl",
    "changed facts, old answer": "eval_changed_old.jsonl",
    "unchanged facts": "eval_unchanged.jsonl",
}


def exact_match(target: str, data: Path, scratch: Path) -> tuple[float, float | None]:
    """(the model's exact match, its base's when the target is a run) on one set."""
    out = scratch / f"{abs(hash((target, str(data))))}.json"
    cmd = [
        sys.executable,
        "-m",
        "tunesmith.cli",
        "eval",
        target,
        "--config",
        str(HERE / "v1.yaml"),
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.read_text(encoding="utf-8"))
    if "tuned" in result:
        return result["tuned"]["task"]["metrics"]["exact_match"], result["base"]["task"]["metrics"]["exact_match"]
    return result["model"]["task"]["metrics"]["exact_match"], None


def knowledge(run: Path, side: str) -> float:
    general = json.loads((run / "eval" / f"{side}.json").read_text(encoding="utf-8"))["general"]
    return general["families"]["knowledge"]["value"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--v1", type=Path, default=Path("runs/knowledge-v1"))
    parser.add_argument("--v2", type=Path, default=Path("runs/knowledge-v2"))
    args = parser.parse_args()
    table = {name: {} for name in SETS}
    with tempfile.TemporaryDirectory() as scratch:
        for name, file in SETS.items():
            v1, base = exact_match(str(args.v1), HERE / file, Path(scratch))
            v2, _ = exact_match(str(args.v2), HERE / file, Path(scratch))
            table[name] = {"base": base, "v1": v1, "v2": v2}
    table["general questions (accuracy)"] = {
        "base": knowledge(args.v1, "base"),
        "v1": knowledge(args.v1, "tuned"),
        "v2": knowledge(args.v2, "tuned"),
    }
    print("| set | base | v1 | v2 |\n|---|---:|---:|---:|")
    for name, r in table.items():
        print(f"| {name} | {r['base']:.3f} | {r['v1']:.3f} | {r['v2']:.3f} |")


if __name__ == "__main__":
    main()
