"""What every hostile case shares: the case and verdict types, running the real CLI, and judging what came back.

A case is clean when the user gets a clear message (no "Traceback", no last-resort "internal error"), the exit code
or HTTP status that the issue asks for, nothing is lost, and no innocent request is harmed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TRACEBACK = "Traceback (most recent call last)"
# The last-resort handler's line: reaching it means a known bad input was not recognised as the user's to fix.
INTERNAL = re.compile(r"internal error|crash log|details in .*crash", re.IGNORECASE)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "NO_COLOR": "1", "COLUMNS": "200"}


@dataclass(frozen=True)
class Verdict:
    clean: bool
    why: str
    skipped: bool = False  # could not be reproduced here (the reason says why); not counted


def clean(why: str = "ok") -> Verdict:
    return Verdict(True, why)


def fail(why: str) -> Verdict:
    return Verdict(False, why)


def skip(why: str) -> Verdict:
    return Verdict(True, why, skipped=True)


@dataclass
class Fixtures:
    """What cases build on, made once per harness run (see setup.py)."""

    root: Path  # scratch folder of this harness run
    model: Path  # the tiny on-disk Llama
    chat: Path  # good chat rows (the innocent training data)
    toy: Path  # good classification rows (tweet, class)
    lora_run: Path  # a finished LoRA run of the tiny model
    head_run: Path  # a finished classification-head run of the tiny model


@dataclass(frozen=True)
class Case:
    klass: str  # data | config | faults | http
    name: str
    run: Callable[[Path], Verdict]  # called with a fresh, empty work folder
    group: str = ""  # cases of one non-empty group run one after another (they share a server)


@dataclass
class Proc:
    args: list[str]
    rc: int | None  # None: timed out
    out: str
    err: str
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (Linux /proc), to tell a hang from a slow run on a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_or_hang(proc: subprocess.Popen, stall_s: float = 60, cap_s: float = 1800) -> bool:
    """Wait for `proc`; True if it hung: alive with no CPU used for `stall_s` (blocked on a FIFO, a socket, a
    lock), or still running after `cap_s`. Wall time alone is no measure here: on a busy 2-core machine a plain
    import can take minutes."""
    start = last_change = time.monotonic()
    used = -1.0
    while proc.poll() is None:
        now = time.monotonic()
        current = cpu_seconds(proc.pid)
        if current != used:
            used, last_change = current, now
        if now - last_change > stall_s or now - start > cap_s:
            return True
        time.sleep(0.5)
    return False


def cli(
    *args: str | Path, cwd: Path, timeout: float = 1800, env: dict | None = None, prefix: list[str] | None = None
) -> Proc:
    """Run `tunesmith ARGS` as a user would (a fresh process, stdin closed); a hang is stopped and reported."""
    argv = [*(prefix or []), sys.executable, "-m", "tunesmith.cli", *map(str, args)]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+", errors="replace") as out, tempfile.TemporaryFile("w+", errors="replace") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env={**ENV, **(env or {})}, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)  # fmt: skip
        hung = wait_or_hang(proc, cap_s=timeout)
        if hung:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return Proc(list(map(str, args)), None if hung else proc.returncode, out.read(), err.read(),
                    time.monotonic() - start)  # fmt: skip


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def judge(
    proc: Proc,
    codes: Iterable[int],
    mentions: Iterable[str | re.Pattern] = (),
) -> Verdict:
    """Clean when the exit code is one of `codes`, no traceback or last-resort line was printed, a failing exit
    says why on stderr (or, for row errors, stdout), and each of `mentions` (text or regex) appears in the output."""
    codes = tuple(codes)
    if proc.rc is None:
        return fail(f"hung: stopped after {proc.seconds:.0f}s ({last_line(proc.err) or 'no output'})")
    if TRACEBACK in proc.text:
        return fail(f"traceback, exit {proc.rc}: {last_line(proc.err) or last_line(proc.out)}")
    if INTERNAL.search(proc.err):
        return fail(f"last-resort handler, exit {proc.rc}: {last_line(proc.err)}")
    if proc.rc not in codes:
        return fail(f"exit {proc.rc} (want {'/'.join(map(str, codes))}): {last_line(proc.err) or last_line(proc.out)}")
    if proc.rc != 0 and not (proc.err.strip() or proc.out.strip()):
        return fail(f"exit {proc.rc} with no message")
    for want in mentions:
        found = want.search(proc.text) if isinstance(want, re.Pattern) else want in proc.text
        if not found:
            shown = want.pattern if isinstance(want, re.Pattern) else want
            return fail(f"exit {proc.rc} but the message does not name {shown!r}: {last_line(proc.err)}")
    return clean(f"exit {proc.rc}: {last_line(proc.err) or last_line(proc.out)}")


def user_error(proc: Proc, *mentions: str | re.Pattern) -> Verdict:
    """A problem the user must fix: one clear line, exit 2."""
    return judge(proc, (2,), mentions)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def tiny_config(fx: Fixtures, data: Path | str, out: Path, **train: object) -> dict:
    """A few-second run of the tiny model (fp32 so resumed runs compare exactly; no general-ability probes)."""
    return {
        "model": {"base": str(fx.model), "dtype": "float32"},
        "data": {"train": [{"path": str(data)}], "max_length": 128},
        "adapter": {"method": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 2, "batch_size": 8, "micro_batch_size": 4, "lr": 5e-3, "seed": 3, "threads": 1,
                  **train},
        "eval": {"samples": 0, "general": False, "max_new_tokens": 4},
        "output": {"dir": str(out)},
    }  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show afterwards that nothing was lost or changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lost(before: dict[str, bytes], folder: Path) -> list[str]:
    after = snapshot(folder) if folder.is_dir() else {}
    return [name for name, data in before.items() if after.get(name) != data]
