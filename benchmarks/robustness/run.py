"""Hostile cases against the real CLI and a real `tunesmith serve`: is every one handled cleanly?

    python benchmarks/robustness/run.py [--only CLASS] [--jobs 2] [--keep DIR] [--json F] [--markdown F]

Four classes (issue 12): data (hostile files and rows x every verb that reads data), config (configs, models and
CLI arguments), faults (kill -9 / SIGINT of a real training run at many points, then --resume; damaged run folders),
http (hostile requests to a real server while innocent requests run beside them). Every case runs on the tiny
on-disk Llama in its own scratch folder. One line per case (class, name, CLEAN/FAIL, why), then
"N handled cleanly of M"; exits 1 unless every case was clean.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cases_config
import cases_data
import cases_faults
import cases_http
import fixtures
import report
from common import Case, Verdict

CLASSES = {"data": cases_data, "config": cases_config, "faults": cases_faults, "http": cases_http}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def interleave(cases: list[Case]) -> list[Case]:
    """Classes taken in turn, each in a fixed shuffled order, so a run cut short by --budget-min still samples
    every class and every kind of problem."""
    by_class: dict[str, list[Case]] = {}
    for case in cases:
        by_class.setdefault(case.klass, []).append(case)
    for items in by_class.values():
        random.Random(0).shuffle(items)
    queues = list(by_class.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def run_case(index: int, case: Case, scratch: Path) -> report.Result:
    work = scratch / "cases" / f"{index:03d}-{_slug(case.klass + ' ' + case.name)}"
    work.mkdir(parents=True)
    start = time.monotonic()
    try:
        verdict = case.run(work)
    except Exception as err:  # a bug in the harness itself: shown as such, never counted clean
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
        verdict = Verdict(False, f"harness error: {detail}")
    return report.Result(case.klass, case.name, verdict, time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(CLASSES), help="run this class only (repeatable)")
    parser.add_argument("--match", action="append", help="run only cases whose name contains this text (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (2 at most on a 2-core machine)")
    parser.add_argument("--keep", type=Path, default=None, help="scratch folder to keep (fixtures are reused)")
    parser.add_argument("--json", type=Path, default=None, help="write every result as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the summary table here")
    parser.add_argument("--budget-min", type=float, default=None, help="start no case after this many minutes")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="tunesmith-robustness-"))
    shutil.rmtree(scratch / "cases", ignore_errors=True)
    start = time.monotonic()
    fx = fixtures.build(scratch)
    print(f"fixtures ready in {time.monotonic() - start:.0f}s under {scratch}", flush=True)
    chosen = [CLASSES[name] for name in (args.only or CLASSES)]
    cases = [case for module in chosen for case in module.cases(fx)]
    if args.match:
        cases = [case for case in cases if any(m.lower() in case.name.lower() for m in args.match)]

    results: list[report.Result] = []
    lock = threading.Lock()

    def record(result: report.Result) -> None:
        with lock:
            results.append(result)
            print(result.line(), flush=True)
            save(results, time.monotonic() - start)  # a run stopped early still leaves its table

    def save(done: list[report.Result], elapsed: float) -> None:
        order = {name: i for i, name in enumerate(CLASSES)}
        ordered = sorted(done, key=lambda r: (order[r.klass], r.name))
        if args.json:
            report.write_json(args.json, ordered, elapsed)
        if args.markdown:
            args.markdown.write_text(report.markdown(ordered, elapsed, argv or sys.argv[1:]), encoding="utf-8")

    def run_group(items: list[tuple[int, Case]]) -> None:
        for index, case in items:
            if time.monotonic() > stop_at:
                record(report.Result(case.klass, case.name, Verdict(True, "not run: time budget", skipped=True), 0))
            else:
                record(run_case(index, case, scratch))

    groups: dict[str, list[tuple[int, Case]]] = {}
    for index, case in enumerate(interleave(cases)):
        groups.setdefault(case.group or f"#{index}", []).append((index, case))
    stop_at = start + args.budget_min * 60 if args.budget_min else float("inf")
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            # Grouped cases (one shared server) first, so their long serial run overlaps the many short cases.
            ordered = sorted(groups.values(), key=lambda items: -len(items))
            for future in [pool.submit(run_group, items) for items in ordered]:
                future.result()
    finally:
        for module in chosen:
            getattr(module, "teardown", lambda: None)()
    elapsed = time.monotonic() - start
    order = {name: i for i, name in enumerate(CLASSES)}
    results.sort(key=lambda r: (order[r.klass], r.name))
    print(report.summary(results, elapsed))
    save(results, elapsed)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(r.verdict.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
