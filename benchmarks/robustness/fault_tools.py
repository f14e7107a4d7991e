"""Tools of the fault cases: the uninterrupted reference run, triggers that fire at a time, a step or the moment a
path appears, a trainer that is signalled when one fires, continuing a run as a user would, and comparing weights.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from common import ENV, Fixtures, Proc, Verdict, cli, fail, judge, last_line, tiny_config, wait_or_hang, write_yaml

Trigger = Callable[[Path, float], bool]  # (run folder, seconds since start) -> fire now?


def at_time(seconds: float) -> Trigger:
    return lambda out, elapsed: elapsed >= seconds


def at_file(pattern: str) -> Trigger:
    return lambda out, elapsed: any(out.glob(pattern))


def at_step(step: int) -> Trigger:
    """Fires once metrics.jsonl logs training step `step`."""
    needle = f'"step": {step},'

    def fire(out: Path, elapsed: float) -> bool:
        try:
            return needle in (out / "metrics.jsonl").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False

    return fire


_reference_lock = threading.Lock()


def fault_config(fx: Fixtures, out: Path) -> dict:
    """Eight steps with checkpoints every two, held-out evals, and a final eval with generated samples."""
    cfg = tiny_config(fx, fx.chat, out, max_steps=8, save_every=2, eval_every=3, keep_checkpoints=2)
    cfg["eval"].update({"samples": 1, "max_new_tokens": 4})
    return cfg


def reference(fx: Fixtures) -> tuple[Path, float]:
    """The uninterrupted run (made once) and how long it took, to place time-based kills."""
    out = fx.root / "fixtures" / "runs" / "faults-reference"
    stamp = out.parent / "faults-reference.seconds"
    with _reference_lock:
        if not (out / "final").is_dir() or not stamp.is_file():
            shutil.rmtree(out, ignore_errors=True)
            proc = cli("train", write_yaml(out.parent / "faults.yaml", fault_config(fx, out)), cwd=out.parent)
            if proc.rc != 0:
                raise RuntimeError(f"the uninterrupted reference run failed: {last_line(proc.err)}")
            stamp.write_text(f"{proc.seconds:.2f}")
    return out, float(stamp.read_text())


def interrupt(config: Path, cwd: Path, trigger: Trigger, sig: signal.Signals, resume: bool = False) -> Proc:
    """Start `tunesmith train`, send `sig` to it the moment `trigger` fires, and wait for it to end."""
    argv = [sys.executable, "-m", "tunesmith.cli", "train", str(config), *(["--resume"] if resume else [])]
    out_dir = Path(_output_dir(config))
    with open(cwd / "trainer.out", "w+") as out, open(cwd / "trainer.err", "w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        fired = False
        while proc.poll() is None and time.monotonic() - start < 600:
            if trigger(out_dir, time.monotonic() - start):
                os.killpg(proc.pid, sig)  # its own session: Ctrl-C reaches the whole foreground group too
                fired = True
                break
            time.sleep(0.002)
        rc = None if wait_or_hang(proc) else proc.returncode
        if rc is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return Proc(argv[3:], rc, out.read(), err.read(), time.monotonic() - start, {"fired": fired})


def _output_dir(config: Path) -> str:
    return yaml.safe_load(config.read_text(encoding="utf-8"))["output"]["dir"]


def finish(config: Path, cwd: Path, attempts: int = 4) -> Verdict | None:
    """Continue as a user would: --resume, or a fresh start where the CLI says nothing was started. None when the
    run finished cleanly, else why not."""
    resume = True
    for _ in range(attempts):
        proc = cli("train", config, *(["--resume"] if resume else []), cwd=cwd)
        verdict = judge(proc, (0, 2))
        if not verdict.clean:
            return fail(f"{'--resume' if resume else 'fresh start'}: {verdict.why}")
        if proc.rc == 0:
            return None
        message = proc.err.lower()
        if resume and "without --resume" in message:
            resume = False
        elif not resume and "--resume" in message:
            resume = True
        else:
            return fail(f"{'--resume' if resume else 'fresh start'} refused: {last_line(proc.err)}")
    return fail(f"did not finish after {attempts} attempts")


def compare_final(expected: Path, got: Path) -> Verdict | None:
    """None when every trainable tensor of `got` equals the uninterrupted run's (to 1e-6), else why not."""
    import torch
    from safetensors.torch import load_file

    files = sorted(p.name for p in expected.glob("*.safetensors"))
    for name in files:
        if not (got / name).is_file():
            return fail(f"finished, but final/{name} is missing")
        want, have = load_file(expected / name), load_file(got / name)
        if want.keys() != have.keys():
            return fail(f"final/{name} holds other tensors than the uninterrupted run's")
        for key, tensor in want.items():
            if not torch.allclose(tensor.float(), have[key].float(), rtol=0, atol=1e-6):
                diff = (tensor.float() - have[key].float()).abs().max().item()
                return fail(f"resumed weights differ from the uninterrupted run: {key} by {diff:.2e}")
    return None if files else fail(f"the reference has no weights in {expected}")


def leftovers(out: Path) -> Verdict | None:
    """Staging folders left behind after the run finished."""
    left = [p.name for p in [*out.glob(".*staging*"), *out.glob("checkpoints/.step-*"), *out.glob(".final-*")]]
    return fail(f"finished, but left {', '.join(sorted(set(left)))}") if left else None
