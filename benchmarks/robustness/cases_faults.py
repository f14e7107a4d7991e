"""Class 3, interruptions and faults: a real `tunesmith train` killed (SIGKILL, or SIGINT like Ctrl-C) at many
points — by time, by step, and the moment a given file or staging folder appears — then continued with --resume
(or a fresh start where the CLI says so) until it finishes; the final weights must equal an uninterrupted run's.
Also damaged run folders (truncated metrics, deleted manifest, corrupt checkpoint), copied and moved runs, an audit
refusal, and a full disk.

    python benchmarks/robustness/run.py --only faults
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from cases_damage import DAMAGE_CASES
from common import Case, Fixtures, Verdict, clean, fail, judge, write_yaml
from fault_tools import (
    Trigger,
    at_file,
    at_step,
    at_time,
    compare_final,
    fault_config,
    finish,
    interrupt,
    leftovers,
    reference,
)


def killed_then_resumed(trigger_name: str, trigger: Callable[[float], Trigger], sig: signal.Signals) -> Callable:
    def run(fx: Fixtures, work: Path) -> Verdict:
        ref, seconds = reference(fx)
        config = write_yaml(work / "c.yaml", fault_config(fx, work / "run"))
        proc = interrupt(config, work, trigger(seconds), sig)
        if not proc.extra["fired"]:
            return judge(proc, (0,)) if proc.rc != 0 else clean(f"finished before {trigger_name}; nothing to resume")
        if sig == signal.SIGINT:
            stopped = judge(proc, (130, 0))  # 0: the run ended before the signal landed
            if not stopped.clean:
                return fail(f"Ctrl-C: {stopped.why}")
        problem = finish(config, work)
        if problem is not None:
            return problem
        return (
            compare_final(ref / "final", work / "run" / "final")
            or leftovers(work / "run")
            or clean(f"resumed to equal weights ({'exit ' + str(proc.rc)} at {trigger_name})")
        )

    return run


TIME_POINTS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95)
FILE_POINTS = {
    "config.yaml written": "config.yaml",
    "manifest.json written": "manifest.json",
    "audit.json written": "audit.json",
    "eval/base.json written": "eval/base.json",
    "a checkpoint staging folder": "checkpoints/.step-*",
    "checkpoints/step-2 renamed in": "checkpoints/step-2",
    "checkpoints/step-6 renamed in": "checkpoints/step-6",
    "final/ staging": ".final-staging",
    "final/ renamed in": "final/adapter_model.safetensors",
    "eval/tuned.json written": "eval/tuned.json",
    "MODEL_CARD.md written": "MODEL_CARD.md",
}
STEP_POINTS = (1, 3, 5, 7)
SIGINT_AT = {"a checkpoint staging folder", "final/ staging", "checkpoints/step-2 renamed in", "config.yaml written"}


def cases(fx: Fixtures) -> list[Case]:
    table: dict[str, Callable[[Fixtures, Path], Verdict]] = {}
    for fraction in TIME_POINTS:
        name = f"{fraction:.0%} of the run's time"
        table[f"kill -9 at {name}"] = killed_then_resumed(name, lambda s, f=fraction: at_time(f * s), signal.SIGKILL)
    for step in STEP_POINTS:
        name = f"step {step} logged"
        table[f"kill -9 at {name}"] = killed_then_resumed(name, lambda s, n=step: at_step(n), signal.SIGKILL)
    for name, pattern in FILE_POINTS.items():
        table[f"kill -9 at {name}"] = killed_then_resumed(name, lambda s, p=pattern: at_file(p), signal.SIGKILL)
        if name in SIGINT_AT:
            table[f"SIGINT at {name}"] = killed_then_resumed(name, lambda s, p=pattern: at_file(p), signal.SIGINT)
    for fraction in (0.3, 0.6, 0.9):
        name = f"{fraction:.0%} of the run's time"
        table[f"SIGINT at {name}"] = killed_then_resumed(name, lambda s, f=fraction: at_time(f * s), signal.SIGINT)
    table.update(DAMAGE_CASES)
    return [Case("faults", name, lambda work, run=run: run(fx, work)) for name, run in table.items()]
