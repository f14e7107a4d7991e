"""Choosing by evidence: `tunesmith select` with both embedded bases, and `tunesmith sweep` against the hand-written
example config, on ../shared/data. Every number is also in the runs' own files (select.json, sweep.json, eval/).

    python benchmarks/choose/run.py select --task sst2-head --steps 50 --out runs/bench-choose
    python benchmarks/choose/run.py sweep --task pubmedqa --minutes 30 --out runs/bench-choose [--no-pruning]
    python benchmarks/choose/run.py hand --task pubmedqa --out runs/bench-choose     # the config as written
    (sweep and hand take --threads 1, to run side by side on one core each)
    python benchmarks/choose/run.py pruning --task sst2-head --minutes 30 --out runs/bench-choose  # three at once
    python benchmarks/choose/run.py variants --task sst2-head --out runs/bench-choose  # each adapter variant once
    python benchmarks/choose/run.py table --out runs/bench-choose                    # table.md from what finished

`sweep` gives every task the same wall-clock budget (`--minutes`); the winner is then trained again and scored once
on the test split. `table` compares it with the hand-written config's run on the same test rows (paired bootstrap
of winner minus hand-written, 1,000 resamples) and counts trials run and pruned, with and without pruning.

`pruning` runs the same sweep three times at once, with the median pruner, successive halving and no pruning, each on
one thread and with the same budget, so that all three share the machine alike: what it measures is how many trials
each pruner buys with the same compute, and what the search found with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASES = ["smollm2-135m-instruct", "gemma3-270m"]
# The hand-written configs of the task benchmarks, with the overrides that keep one run in minutes here.
TASKS = {
    "sst2-head": ("examples/sst2-head.yaml", ["task.max_rows=300", "data.eval_max_rows=300"]),
    "davidson-head": ("examples/davidson-head.yaml", ["train.max_steps=100", "task.max_rows=256"]),
    "scitldr": (str(HERE.parent / "tasks" / "scitldr.yaml"), []),
    # 500 training rows instead of 128, so that a 10% validation split has 50 questions to select on (one of them is
    # longer than data.max_length with nothing left to train: skipped and reported).
    "pubmedqa": (str(HERE.parent / "tasks" / "pubmedqa.yaml"), ["data.train.0.limit=500", "data.skip_invalid=true"]),
}
# What a sweep changes beyond TASKS: sst2's search starts from 60 steps (the default space then tries 30 to 120), so
# that a 12-minute budget holds several trials; pubmedqa selects on macro-F1, which a model answering "yes" to
# everything cannot win (accuracy rewards that collapse with 0.55), and so does davidson, whose rare class (hate, 6%)
# is what moderation is for (accuracy rewards calling every tweet offensive with 0.77).
SWEEP_ONLY = {
    "sst2-head": ["train.max_steps=60"],
    "pubmedqa": ["sweep.metric=macro_f1"],
    "davidson-head": ["sweep.metric=macro_f1"],
}


def _cli(args: list[str], log: Path) -> int:
    cmd = [sys.executable, "-m", "tunesmith.cli", *args]
    print("$", " ".join(cmd), flush=True)
    with open(log, "w", encoding="utf-8") as fh:
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)


def select(task: str, steps: int, out: Path) -> int:
    config, overrides = TASKS[task]
    folder = out / f"select-{task}"
    args = ["select", config, *overrides, "--bases", *BASES, "--steps", str(steps), "--out", str(folder)]
    return _cli(args, out / f"select-{task}.log")


def sweep(task: str, minutes: float, trials: int, pruning: bool, out: Path, threads: list[str]) -> int:
    config, overrides = TASKS[task]
    name = f"sweep-{task}" + ("" if pruning else "-unpruned")
    extra = SWEEP_ONLY.get(task, []) + ([] if pruning else ["sweep.pruner=none"]) + threads
    args = ["sweep", config, *overrides, *extra, "--trials", str(trials), "--timeout", str(minutes)]
    return _cli([*args, "--out", str(out / name)], out / f"{name}.log")


PRUNERS = ("median", "halving", "none")
# Shorter trials for the pruning comparison (sst2's space then tries 10 to 40 steps, scored on 100 validation rows),
# so that the budget holds enough trials on one thread each for the pruners to have something to compare.
PRUNING_ONLY = {"sst2-head": ["train.max_steps=20", "task.max_rows=100", "data.eval_max_rows=100"]}


def pruning(task: str, minutes: float, trials: int, out: Path) -> int:
    config, overrides = TASKS[task]
    extra = [*SWEEP_ONLY.get(task, []), *PRUNING_ONLY.get(task, []), "train.threads=1"]
    running = []
    for pruner in PRUNERS:
        name = f"prune-{task}-{pruner}"
        args = ["sweep", config, *overrides, *extra, f"sweep.pruner={pruner}", "--trials", str(trials)]
        cmd = [sys.executable, "-m", "tunesmith.cli", *args, "--timeout", str(minutes), "--out", str(out / name)]
        print("$", " ".join(cmd), flush=True)
        log = open(out / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed when the process ends
        running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for process, log in running:
        codes.append(process.wait())
        log.close()
    return max(codes)


# Each adapter variant the default search space can choose, trained alone on the task's config (the pruning
# comparison's short trials: `PRUNING_ONLY`), everything else as written. LoRA+ keeps the config's rate for the B
# factors and gives A a sixteenth of it, as the sweep draws it (recipes/sweep_space.apply_params): B at 16 times the
# config's rate blew up on pubmedqa.
VARIANTS = {
    "lora": [],
    "rslora": ["adapter.rslora=true"],
    "dora": ["adapter.dora=true"],
    "pissa": ["adapter.init=pissa"],
    "olora": ["adapter.init=olora"],
    "lora-plus": ["adapter.lora_plus_ratio=16"],
}


def variants(task: str, out: Path, threads: list[str]) -> int:
    from tunesmith.config import load_config

    config, overrides = TASKS[task]
    extra = [*overrides, *PRUNING_ONLY.get(task, []), *threads]
    lr = load_config(config, extra).train.lr
    codes = []
    for name, settings in VARIANTS.items():
        rate = [f"train.lr={lr / 16:g}"] if name == "lora-plus" else []
        folder = out / f"variant-{task}-{name}"
        args = ["train", config, *extra, *settings, *rate, f"output.dir={folder}", "output.overwrite=true"]
        codes.append(_cli(args, out / f"variant-{task}-{name}.log"))
    return max(codes)


def hand(task: str, out: Path, threads: list[str]) -> int:
    config, overrides = TASKS[task]
    folder = out / f"hand-{task}"
    args = ["train", config, *overrides, *threads, f"output.dir={folder}", "output.overwrite=true"]
    return _cli(args, out / f"hand-{task}.log")


def _tuned(run: Path) -> dict:
    return json.loads((run / "eval" / "tuned.json").read_text(encoding="utf-8"))


def _header(cells: str, align: str) -> list[str]:
    """A blank line and a markdown table's head: `cells` joined by " | ", `align` one l or r per column."""
    rule = "|".join("---:" if a == "r" else "---" for a in align)
    return ["", f"| {cells} |", f"|{rule}|"]


def table(out: Path) -> str:
    from tunesmith.eval.bootstrap import bootstrap_metric, metric_interval
    from tunesmith.eval.tasks import HEADLINE
    from tunesmith.rundir import RunDir

    lines = ["| task | candidate | probe metric [95% CI] | zero-shot | gain [paired 95%] | loss | tok/s | wall s |"]
    lines.append("|---|---|---|---:|---|---:|---:|---:|")
    for path in sorted(out.glob("select-*/select.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        for c in summary["candidates"]:
            t, g = c.get("tuned"), c.get("gain")
            mark = " **(winner)**" if c["base"] == summary["winner"] else ""
            metric = f"{c.get('metric', '')} {t['value']:.3f} [{t['low']:.3f}, {t['high']:.3f}]" if t else ""
            gain = f"{g['diff']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]" if g else ""
            zero = f"{c['zero_shot']['value']:.3f}" if t else ""
            lines.append(
                f"| {path.parent.name.removeprefix('select-')} | {c['base']}{mark} | {metric} | {zero} | {gain} | "
                f"{c['held_out_loss']:.4f} | {c['tokens_per_s'] or 0:.0f} | {c['wall_seconds']:.0f} |"
            )
    head = "task | pruning | trials | pruned | failed | wall min | winner test | hand-written test | winner − hand"
    lines += _header(f"{head} [paired 95%]", "llrrrrrrl")
    for path in sorted(out.glob("sweep-*/sweep.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        task = path.parent.name.removeprefix("sweep-").removesuffix("-unpruned")
        winner, hand_run = _tuned(path.parent / "winner"), out / f"hand-{task}"
        kind = winner["task"]["task"] if "task" in winner else None
        pruning = "no" if path.parent.name.endswith("-unpruned") else "median"
        counts = f"| {task} | {pruning} | {summary['trials_run']} | {summary['pruned']} | {summary['failed']} | "
        counts += f"{summary['seconds'] / 60:.1f} | "
        if not kind or not (hand_run / "eval" / "tuned.json").is_file():
            lines.append(counts + " |  |  |")
            continue
        labels = RunDir(path.parent / "winner").config().task.labels or None  # macro-F1 needs the label set
        refs = winner["task"]["references"]
        ours, theirs = winner["task"]["predictions"], _tuned(hand_run)["task"]["predictions"]
        for metric in HEADLINE[kind]:  # every headline metric: classification's macro-F1 as well as accuracy
            w_value, _, _ = metric_interval(kind, metric, ours, refs, labels)
            h_value, _, _ = metric_interval(kind, metric, theirs, refs, labels)
            diff = bootstrap_metric(kind, metric, theirs, ours, refs, labels)
            interval = f"{diff.diff:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
            lines.append(f"{counts}{metric} {w_value:.3f} | {h_value:.3f} | {interval} |")
    head = "task | pruner | trials | finished | pruned | failed | median s per finished / pruned trial"
    lines += _header(f"{head} | best validation | winner test", "llrrrrlrr")
    for path in sorted(out.glob("prune-*/sweep.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        task, _, pruner = path.parent.name.removeprefix("prune-").rpartition("-")
        seconds = {
            state: statistics.median(t["seconds"] for t in summary["trials"] if t["state"] == state and t["seconds"])
            if any(t["state"] == state and t["seconds"] for t in summary["trials"])
            else None
            for state in ("complete", "pruned")
        }
        shown = " / ".join(f"{v:.0f}" if v is not None else "–" for v in seconds.values())
        (name, best), test = next(iter(summary["best"]["validation"].items())), summary["test"]
        tested = test.get("task", {}).get(name, test["metrics"].get(name))
        lines.append(
            f"| {task} | {pruner} | {summary['trials_run']} | {summary['finished']} | {summary['pruned']} | "
            f"{summary['failed']} | {shown} | {name} {best:.3f} | {tested:.3f} |"
        )
    lines += _variants_table(out)
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text, encoding="utf-8")
    return text


def _variants_table(out: Path) -> list[str]:
    """One row per adapter variant that finished: the task's headline metrics, each variant minus plain LoRA (paired
    bootstrap on the same test rows), held-out loss and train time."""
    from tunesmith.eval.bootstrap import bootstrap_metric
    from tunesmith.eval.tasks import HEADLINE
    from tunesmith.rundir import RunDir

    head = "task | variant | metrics | minus plain LoRA [paired 95%] | held-out loss | train s"
    lines = _header(head, "lllllr")
    for task in TASKS:
        runs = {n: out / f"variant-{task}-{n}" for n in VARIANTS}
        runs = {n: run for n, run in runs.items() if (run / "eval" / "tuned.json").is_file()}  # the finished ones
        if "lora" not in runs:
            continue
        plain = _tuned(runs["lora"])["task"]
        kind, refs = plain["task"], plain["references"]
        labels = RunDir(runs["lora"]).config().task.labels or None
        for name, run in runs.items():
            tuned = _tuned(run)
            task_eval = tuned["task"]
            metrics = ", ".join(f"{m} {task_eval['metrics'][m]:.3f}" for m in HEADLINE[kind])
            diffs = []
            for metric in HEADLINE[kind]:
                d = bootstrap_metric(kind, metric, plain["predictions"], task_eval["predictions"], refs, labels)
                diffs.append(f"{d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
            shown = " / ".join(diffs) if name != "lora" else "–"
            loss, seconds = tuned["metrics"]["loss"], tuned.get("train_seconds") or 0
            lines.append(f"| {task} | {name} | {metrics} | {shown} | {loss:.4f} | {seconds:.0f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["select", "sweep", "pruning", "hand", "variants", "table"])
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-choose"))
    parser.add_argument("--steps", type=int, default=50, help="select: probe steps")
    parser.add_argument("--minutes", type=float, default=30, help="sweep: wall-clock budget")
    parser.add_argument("--trials", type=int, default=100, help="sweep: at most this many trials")
    parser.add_argument("--no-pruning", action="store_true", help="sweep: sweep.pruner=none")
    parser.add_argument("--threads", type=int, help="sweep, hand: train.threads (to run a sweep and its hand-written "
                        "run side by side, one core each)")  # fmt: skip
    args = parser.parse_args()
    threads = [] if args.threads is None else [f"train.threads={args.threads}"]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "table":
        print(table(args.out))
        return 0
    if args.task is None:
        parser.error(f"{args.what} needs --task")
    if args.what == "select":
        return select(args.task, args.steps, args.out)
    if args.what == "hand":
        return hand(args.task, args.out, threads)
    if args.what == "variants":
        return variants(args.task, args.out, threads)
    if args.what == "pruning":
        return pruning(args.task, args.minutes, args.trials, args.out)
    return sweep(args.task, args.minutes, args.trials, not args.no_pruning, args.out, threads)


if __name__ == "__main__":
    sys.exit(main())
