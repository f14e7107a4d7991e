"""Turn a training run's metrics.jsonl and checkpoint folders into job events, checkpoints and a results file.

Which steps were already reported is kept in the job's row (logged_step, logged_eval_step), so a restarted worker
neither repeats nor loses an event; a resumed run cuts metrics.jsonl back to its checkpoint and writes those steps
again, which are then skipped.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tunesmith.rundir import RunDir
from tunesmith.serve.paths import new_id, upload_path
from tunesmith.serve.store import FileRecord, Store
from tunesmith.training.checkpoint import list_checkpoints

RESULTS_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = RunDir(run_dir).metrics_file
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written right now
    return out


def metrics_at(records: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """OpenAI's checkpoint metrics for one step; held-out evaluations here always cover the whole held-out set."""
    train = next((r for r in records if r.get("step") == step and "split" not in r), {})
    valid = next((r for r in records if r.get("step") == step and r.get("split") == "eval"), {})
    return {
        "step": step,
        "train_loss": train.get("loss"),
        "train_mean_token_accuracy": train.get("token_accuracy"),
        "valid_loss": valid.get("loss"),
        "valid_mean_token_accuracy": valid.get("token_accuracy"),
        "full_valid_loss": valid.get("loss"),
        "full_valid_mean_token_accuracy": valid.get("token_accuracy"),
    }


class Progress:
    def __init__(self, store: Store, job_id: str, run_dir: Path):
        self.store, self.job_id, self.run_dir = store, job_id, run_dir
        self.records: list[dict[str, Any]] = []

    def poll(self) -> None:
        job = self.store.get_job(self.job_id)
        if job is None:
            return
        self.records = read_metrics(self.run_dir)
        logged, logged_eval = job.logged_step, job.logged_eval_step
        for r in self.records:
            step = int(r.get("step", 0))
            if r.get("split") == "eval" and step > logged_eval:
                who = "Base model" if step == 0 else f"Step {step}"
                self.store.add_event(
                    self.job_id,
                    f"{who}: validation loss={r['loss']:.4f}, token accuracy={r.get('token_accuracy', 0):.4f}",
                    kind="metrics",
                    data={"step": step, "valid_loss": r["loss"], "valid_mean_token_accuracy": r.get("token_accuracy")},
                )
                logged_eval = step
            elif "split" not in r and step > logged:
                self.store.add_event(
                    self.job_id,
                    f"Step {step}: training loss={r['loss']:.4f}",
                    kind="metrics",
                    data={"step": step, "train_loss": r["loss"], "train_mean_token_accuracy": r.get("token_accuracy")},
                )
                logged = step
        if (logged, logged_eval) != (job.logged_step, job.logged_eval_step):
            self.store.update_job(self.job_id, logged_step=logged, logged_eval_step=logged_eval)
        for folder in list_checkpoints(RunDir(self.run_dir).checkpoints):
            step = int(folder.name.split("-")[1])
            if self.store.put_checkpoint(self.job_id, step, metrics_at(self.records, step)):
                self.store.add_event(self.job_id, f"Checkpoint created at step {step}")

    def last_step(self) -> int:
        return max((int(r.get("step", 0)) for r in self.records if "split" not in r), default=0)

    def trained_tokens(self) -> int:
        return sum(int(r.get("tokens", 0)) for r in self.records if "split" not in r)


def write_results(store: Store, files_dir: Path, job_id: str, run_dir: Path) -> str | None:
    """A `fine-tune-results` file (CSV, one row per step) like OpenAI's, readable at /v1/files/{id}/content."""
    records = read_metrics(run_dir)
    steps = sorted({int(r["step"]) for r in records if "split" not in r})
    if not steps:
        return None
    lines = [",".join(RESULTS_COLUMNS)]
    for step in steps:
        m = metrics_at(records, step)
        row = [step, m["train_loss"], m["train_mean_token_accuracy"], m["valid_loss"], m["valid_mean_token_accuracy"]]
        lines.append(",".join("" if v is None else str(v) for v in row))
    file_id = new_id("file")
    path = upload_path(files_dir, file_id)
    data = ("\n".join(lines) + "\n").encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    store.add_file(FileRecord(file_id, "step_metrics.csv", "fine-tune-results", len(data), int(time.time())))
    return file_id


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failure_message(log_path: Path, rc: int) -> str:
    """The trainer's own error line (the CLI prints user errors as `error: ...`), else the end of its output, with
    a traceback cut to its last line (the exception): the client reads this, the whole log stays on the server."""
    try:
        text = _ANSI.sub("", log_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        text = ""
    run = text.rsplit("\n$ ", 1)[-1]
    lines = [line.split("\r")[-1].strip() for line in run.splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            return "\n".join(lines[i:])[:2000]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return f"tunesmith train failed with status {rc}: {lines[-1]}"[:2000]
    tail = "\n".join(lines[-6:])
    return f"tunesmith train exited with status {rc}: {tail}"[:2000]
