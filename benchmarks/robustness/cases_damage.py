"""Class 3 (part): damaged, copied and moved run folders, an audit refusal, a full disk, and two trainers at once.
A run stopped by kill -9 after its step-4 checkpoint is damaged in one way, then continued as a user would; it must
finish with the weights of an uninterrupted run, or say clearly (exit 2) what is wrong.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import ENV, Fixtures, Verdict, clean, cli, fail, judge, last_line, lost, skip, snapshot, write_yaml
from fault_tools import at_file, compare_final, fault_config, finish, interrupt, leftovers, reference


def _stopped_run(fx: Fixtures, work: Path) -> tuple[Path, Path]:
    config = write_yaml(work / "c.yaml", fault_config(fx, work / "run"))
    proc = interrupt(config, work, at_file("checkpoints/step-4"), signal.SIGKILL)
    if not proc.extra["fired"]:
        raise RuntimeError(f"the run ended before its step-4 checkpoint (exit {proc.rc}: {last_line(proc.err)})")
    return config, work / "run"


def _damaged(damage: Callable[[Path], None], may_refuse: bool = False) -> Callable[[Fixtures, Path], Verdict]:
    def run(fx: Fixtures, work: Path) -> Verdict:
        ref, _ = reference(fx)
        config, out = _stopped_run(fx, work)
        damage(out)
        problem = finish(config, work)
        if problem is not None:
            if may_refuse and "refused" in problem.why and "Traceback" not in problem.why:
                return clean(f"refused clearly: {problem.why}")
            return problem
        return compare_final(ref / "final", out / "final") or leftovers(out) or clean("finished with equal weights")

    return run


def _cut_metrics(out: Path) -> None:
    path = out / "metrics.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])  # the last line loses its end, as on a full disk


def _garbage_metrics(out: Path) -> None:
    with open(out / "metrics.jsonl", "ab") as fh:
        fh.write(b"\x00\x00\x00{not json")


def _newest_checkpoint(out: Path) -> Path:
    return max((p for p in (out / "checkpoints").glob("step-*")), key=lambda p: int(p.name.split("-")[1]))


def _corrupt_weights(out: Path) -> None:
    path = _newest_checkpoint(out) / "trainable.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def _no_position(out: Path) -> None:
    (_newest_checkpoint(out) / "position.json").unlink()


def _moved(copy: bool) -> Callable[[Fixtures, Path], Verdict]:
    """A stopped run copied (or moved) to another folder resumes there."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        ref, _ = reference(fx)
        _, out = _stopped_run(fx, work)
        elsewhere = work / "elsewhere" / "run"
        elsewhere.parent.mkdir()
        shutil.copytree(out, elsewhere) if copy else shutil.move(out, elsewhere)
        config = write_yaml(work / "c2.yaml", fault_config(fx, elsewhere))
        problem = finish(config, work)
        return problem or compare_final(ref / "final", elsewhere / "final") or clean("resumed where it was put")

    return run


def _pii_data(fx: Fixtures, work: Path) -> Path:
    lines = fx.chat.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["messages"][0]["content"] += " mail me at jane.doe@example.com or call +1 415 555 0134"
    (work / "pii.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n", encoding="utf-8")
    return work / "pii.jsonl"


def _after_audit_refusal(then_resume: bool) -> Callable[[Fixtures, Path], Verdict]:
    """Training refused by the audit (personal data); the user allows it and starts again (or resumes)."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        cfg = fault_config(fx, work / "run")
        cfg["data"]["train"] = [{"path": str(_pii_data(fx, work))}]
        cfg["train"]["max_steps"] = 2
        refused = cli("train", write_yaml(work / "c.yaml", cfg), cwd=work)
        first = judge(refused, (2,))
        if not first.clean:
            return fail(f"audit refusal: {first.why}")
        cfg["audit"] = {"allow": ["pii"]}
        config = write_yaml(work / "c.yaml", cfg)
        if then_resume:
            proc = cli("train", config, "--resume", cwd=work)
            if proc.rc == 2 and "without --resume" in proc.err:
                return judge(cli("train", config, cwd=work), (0,))
            return judge(proc, (0,))
        return judge(cli("train", config, cwd=work), (0,))

    return run


def _full_disk(fx: Fixtures, work: Path) -> Verdict:
    """A run whose folder fills up: one line saying "No space left on device", no staging folders left."""
    disk = work / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        return skip(f"cannot mount a small tmpfs here ({last_line(mounted.stderr.decode()) or 'needs root'})")
    try:
        cfg = fault_config(fx, disk / "run")
        cfg["adapter"]["method"] = "full"  # a full checkpoint (weights + optimizer) does not fit in 600 KB
        proc = cli("train", write_yaml(work / "c.yaml", cfg), cwd=work)
        verdict = judge(proc, (1, 2), ["No space left on device"])
        left = [p.name for p in (disk / "run").rglob(".*") if "staging" in p.name or p.name.startswith(".step-")]
        return fail(f"{verdict.why}; left {left}") if verdict.clean and left else verdict
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _resume_finished(fx: Fixtures, work: Path) -> Verdict:
    """--resume of a run that already finished: nothing is lost or retrained into something else."""
    run = work / "run"
    shutil.copytree(reference(fx)[0], run)
    before = snapshot(run / "final")
    proc = cli("train", write_yaml(work / "c.yaml", fault_config(fx, run)), "--resume", cwd=work)
    gone = lost(before, run / "final")
    return fail(f"final/ changed: {gone[:3]}") if gone and proc.rc != 0 else judge(proc, (0, 2))


def _resume_changed(fx: Fixtures, work: Path) -> Verdict:
    """--resume with a different learning rate: refused, naming the key."""
    config, _ = _stopped_run(fx, work)
    cfg = fault_config(fx, work / "run")
    cfg["train"]["lr"] = 0.1
    return judge(cli("train", write_yaml(config, cfg), "--resume", cwd=work), (2,), ["lr"])


def _two_trainers(fx: Fixtures, work: Path) -> Verdict:
    """A second `train --resume` into a run that is still training: refused (exit 2), and the first still
    finishes with the uninterrupted weights."""
    ref, _ = reference(fx)
    config = write_yaml(work / "c.yaml", fault_config(fx, work / "run"))
    argv = [sys.executable, "-m", "tunesmith.cli", "train", str(config)]
    first = subprocess.Popen(argv, cwd=work, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while first.poll() is None and not (work / "run" / "checkpoints" / "step-2").exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if first.poll() is not None:
            return fail(f"the first trainer ended (exit {first.returncode}) before a second could start")
        second = cli("train", config, "--resume", cwd=work)
    finally:
        _, err = first.communicate(timeout=600)
    if first.returncode != 0:
        return fail(f"second trainer: exit {second.rc}; the first then failed: {last_line(err)}")
    if second.rc == 0:
        return fail("a second trainer ran in the same run folder at the same time")
    return (
        judge(second, (2,))
        if compare_final(ref / "final", work / "run" / "final") is None
        else fail("the second trainer was refused, but the first one's weights differ from an uninterrupted run")
    )


DAMAGE_CASES: dict[str, Callable[[Fixtures, Path], Verdict]] = {
    "metrics.jsonl last line truncated": _damaged(_cut_metrics),
    "metrics.jsonl ends in garbage": _damaged(_garbage_metrics),
    "manifest.json deleted": _damaged(lambda out: (out / "manifest.json").unlink()),
    "config.yaml deleted": _damaged(lambda out: (out / "config.yaml").unlink(), may_refuse=True),
    "newest checkpoint weights corrupt": _damaged(_corrupt_weights, may_refuse=True),
    "newest checkpoint without position.json": _damaged(_no_position),
    "checkpoints/ deleted": _damaged(lambda out: shutil.rmtree(out / "checkpoints")),
    "run folder copied, resumed there": _moved(copy=True),
    "run folder moved, resumed there": _moved(copy=False),
    "after an audit refusal: fresh start": _after_audit_refusal(then_resume=False),
    "after an audit refusal: --resume": _after_audit_refusal(then_resume=True),
    "full disk": _full_disk,
    "--resume of a finished run": _resume_finished,
    "--resume with a changed lr": _resume_changed,
    "a second trainer in a running run folder": _two_trainers,
}
