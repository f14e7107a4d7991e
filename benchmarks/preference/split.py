"""Write the judge's pairs: rows 1000-1479 of HH-RLHF helpful-base (test.jsonl.gz), none of which the tuned runs
(the first 400 rows) train or are scored on, so the reward model judges answers to prompts it never saw.

    python benchmarks/preference/split.py runs/bench-preference/judge-pairs.jsonl
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
FIRST, COUNT = 1000, 480

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(SOURCE, "rt", encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    out.write_text("".join(lines[FIRST : FIRST + COUNT]), encoding="utf-8")
    print(f"{out}: rows {FIRST + 1}-{FIRST + COUNT} of {SOURCE.name}")
