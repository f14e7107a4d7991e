"""Recall and precision of tunesmith.data.pii.scan_text on the planted set, per kind and overall.

    python benchmarks/pii/make_planted.py /tmp/pii_planted.jsonl
    python benchmarks/pii/measure.py /tmp/pii_planted.jsonl --show 10    # exit 1 below recall 0.99 or precision 0.95

A planted value is found when a hit of the same kind overlaps its span; a hit is correct when it overlaps a planted
span of its own kind. Everything else is a miss or a false positive, and `--show` prints the first few of each with
the row id and the look-alikes in that row.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.pii import PII_KINDS, scan_text

MIN_RECALL = 0.99
MIN_PRECISION = 0.95


@dataclass
class Tally:
    planted: int = 0
    found: int = 0  # planted values that a hit of their kind overlaps
    hits: int = 0
    correct: int = 0  # hits that overlap a planted value of their kind

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0


@dataclass
class Scores:
    rows: int
    by_kind: dict[str, Tally]
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)

    @property
    def overall(self) -> Tally:
        total = Tally()
        for t in self.by_kind.values():
            total.planted += t.planted
            total.found += t.found
            total.hits += t.hits
            total.correct += t.correct
        return total

    @property
    def passed(self) -> bool:
        return self.overall.recall >= MIN_RECALL and self.overall.precision >= MIN_PRECISION


def measure(rows: list[dict[str, Any]]) -> Scores:
    scores = Scores(len(rows), {kind: Tally() for kind in PII_KINDS})
    for row in rows:
        text, planted = row["text"], row["pii"]
        hits = scan_text(text)
        for p in planted:
            tally = scores.by_kind[p["kind"]]
            tally.planted += 1
            if any(h.kind == p["kind"] and h.start < p["end"] and p["start"] < h.end for h in hits):
                tally.found += 1
            else:
                got = [(h.kind, text[h.start : h.end]) for h in hits if h.start < p["end"] and p["start"] < h.end]
                value = text[p["start"] : p["end"]]
                scores.misses.append(f"{row['id']}: {p['kind']} {value!r} (overlapping hits: {got})")
        for h in hits:
            tally = scores.by_kind[h.kind]
            tally.hits += 1
            if any(h.kind == p["kind"] and h.start < p["end"] and p["start"] < h.end for p in planted):
                tally.correct += 1
            else:
                where = f"look-alikes {row['decoys']}" if row.get("decoys") else "no look-alike"
                scores.false_positives.append(f"{row['id']}: {h.kind} {text[h.start : h.end]!r} ({where})")
    return scores


def table(scores: Scores) -> str:
    """The markdown table that benchmarks/README.md shows."""
    lines = ["| kind | planted | found | hits | correct | recall | precision |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, t in [*scores.by_kind.items(), ("**overall**", scores.overall)]:
        lines.append(
            f"| {kind} | {t.planted} | {t.found} | {t.hits} | {t.correct} | {t.recall:.3f} | {t.precision:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("planted", nargs="?", default="/tmp/pii_planted.jsonl", help="from make_planted.py")
    parser.add_argument("--show", type=int, default=0, help="print this many misses and false positives")
    args = parser.parse_args(argv)
    path = Path(args.planted)
    if not path.exists():
        print(f"{path}: not found; run benchmarks/pii/make_planted.py {path} first", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    scores = measure(rows)
    print(f"{scores.rows} rows from {path}\n")
    print(table(scores))
    if args.show:
        for title, items in (("misses", scores.misses), ("false positives", scores.false_positives)):
            print(f"\n{title} ({len(items)}):")
            print("\n".join(f"  {item}" for item in items[: args.show]))
    overall = scores.overall
    if not scores.passed:
        print(
            f"\nFAIL: recall {overall.recall:.3f} (need {MIN_RECALL}), precision {overall.precision:.3f} "
            f"(need {MIN_PRECISION})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
