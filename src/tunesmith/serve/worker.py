"""The job worker: validates new jobs, then runs them one at a time through `tunesmith train`.

    python -m tunesmith.serve.worker --runs-dir runs/ [--parent-pid PID] [--trust-remote-code]

`tunesmith serve` starts it (and starts it again if it dies). Each job runs in a `tunesmith train` subprocess, so
it gets the recipe's checkpoints, metrics.jsonl, evaluation and exact resume; this process turns metrics.jsonl
and new checkpoints into job events while it waits, and stops the training when the job is cancelled.

A job holds an exclusive lock file while its training runs; the training process inherits it and dies with the
worker (PR_SET_PDEATHSIG on Linux), so after a crash of the server or the worker the lock is free, the job is
still `running` in the database, and the next worker resumes it with `tunesmith train --resume`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunesmith.rundir import RunDir
from tunesmith.serve.errors import public
from tunesmith.serve.jobs import JobError, job_config
from tunesmith.serve.paths import run_path, upload_path
from tunesmith.serve.progress import Progress, failure_message, write_results
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.store import JobRecord, Store
from tunesmith.training.checkpoint import list_checkpoints

POLL_S = 0.5
_stopping = False


def _stop(signum: int, frame: object) -> None:
    global _stopping
    _stopping = True


def _die_with_parent() -> None:
    """Runs in the training child before exec: SIGKILL it when this worker dies, however the worker dies."""
    # Off Linux this does nothing: the job lock still keeps a second trainer off the run until this one exits.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Worker:
    def __init__(self, settings: ServeSettings, parent_pid: int | None = None):
        self.settings = settings
        self.store = Store(settings.db_path)
        self.parent_pid = parent_pid

    def parent_gone(self) -> bool:
        return _stopping or (self.parent_pid is not None and os.getppid() != self.parent_pid)

    def _fail(self, job_id: str, only_from: str, code: str, message: str, param: str | None, event: str) -> None:
        """End a job as failed; what the client reads (error, event) names no server path."""
        message = public(message, self.settings.runs_dir)
        error = {"code": code, "message": message, "param": param}
        if self.store.update_job(
            job_id, only_from=(only_from,), status="failed", error=error, finished_at=int(time.time())
        ):
            self.store.add_event(job_id, f"{event}: {message}", level="error")

    # --- validating_files -> queued --------------------------------------------------------------------------

    def validate_pending(self) -> None:
        for job in self.store.jobs_with_status("validating_files"):
            self.store.add_event(job.id, f"Validating training file: {job.training_file}")
            try:
                self._validate(job)
            except JobError as err:
                self._fail(job.id, "validating_files", err.code, str(err), err.param, "Validation failed")
                continue
            except Exception as err:  # one job that cannot be prepared must not stop the worker
                message = f"the job could not be prepared ({type(err).__name__}: {err})"
                self._fail(job.id, "validating_files", "invalid_request", message, None, "Validation failed")
                continue
            if self.store.update_job(job.id, only_from=("validating_files",), status="queued"):
                self.store.add_event(job.id, "Files validated, moving job to queued state")

    def _validate(self, job: JobRecord) -> None:
        files = {"training_file": job.training_file, "validation_file": job.validation_file}
        paths: dict[str, Path | None] = {"validation_file": None}
        rows = 0
        for param, file_id in files.items():
            if file_id is None:
                continue
            record = self.store.get_file(file_id)
            path = upload_path(self.settings.files_dir, file_id)
            if record is None or not path.is_file():
                raise JobError(f"{param} {file_id} no longer exists", param, "invalid_training_file")
            paths[param] = path
            rows = record.rows if param == "training_file" else rows
        run_dir = run_path(self.settings.runs_dir, job.run_name)
        train_file = paths["training_file"]
        assert train_file is not None
        settings = self.settings
        cfg, hyper = job_config(
            job, train_file, paths["validation_file"], rows, run_dir, settings.trust_remote_code, settings.train_ranks
        )
        (self.settings.jobs_dir / f"{job.id}.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        self.store.update_job(job.id, hyperparameters=hyper.as_json())

    # --- claiming --------------------------------------------------------------------------------------------

    def claim(self) -> tuple[JobRecord, int] | None:
        """The next job to run and its held lock: interrupted jobs (still `running`) first, then queued ones."""
        for job in self.store.jobs_with_status("running") + self.store.jobs_with_status("queued"):
            fd = os.open(self.settings.jobs_dir / f"{job.id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live worker (or its dying trainer) has it
                continue
            fresh = self.store.get_job(job.id)
            if fresh is not None and fresh.status in ("running", "queued"):
                return fresh, fd
            os.close(fd)
        return None

    # --- running ---------------------------------------------------------------------------------------------

    def run(self, job: JobRecord, lock_fd: int) -> None:
        settings = self.settings
        run_dir = run_path(settings.runs_dir, job.run_name)
        resume = RunDir(run_dir).config_file.is_file()
        if job.status == "running":
            found = list_checkpoints(RunDir(run_dir).checkpoints) if resume else []
            step = int(found[-1].name.split("-")[1]) if found else 0
            note = f"from checkpoint step {step}" if found else "from the start (no checkpoint was saved yet)"
            self.store.add_event(job.id, f"Resuming training {note} after the server or worker stopped")
        elif self.store.update_job(job.id, only_from=("queued",), status="running"):
            self.store.add_event(job.id, "Fine-tuning job started")
        else:
            return  # cancelled in between
        command = [sys.executable, "-m", "tunesmith.cli", "train", str(settings.jobs_dir / f"{job.id}.yaml")]
        command += ["--resume"] if resume else ["output.overwrite=true"]
        if settings.train_ranks > 1:  # data-parallel on this machine (training/launch.py)
            command += ["--ranks", str(settings.train_ranks)]
        log_path = settings.jobs_dir / f"{job.id}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            trainer = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                pass_fds=(lock_fd,), preexec_fn=_die_with_parent, start_new_session=True,
            )  # fmt: skip
        progress = Progress(self.store, job.id, run_dir)
        while True:
            progress.poll()
            rc = trainer.poll()
            if rc is not None:
                break
            current = self.store.get_job(job.id)
            if current is None or current.status == "cancelled":
                self._kill(trainer)
                step = progress.last_step()
                self.store.add_event(job.id, f"Training stopped at step {step}; the run folder keeps its checkpoints")
                return
            if self.parent_gone():
                self._kill(trainer)  # the job stays `running`: the next worker resumes it
                return
            self.validate_pending()
            time.sleep(POLL_S)
        progress.poll()
        self._finish(job, rc, run_dir, log_path, progress)

    @staticmethod
    def _kill(trainer: subprocess.Popen) -> None:
        # Checkpoints are written aside and renamed into place, so killing at any moment leaves a usable one.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()

    def _finish(self, job: JobRecord, rc: int, run_dir: Path, log_path: Path, progress: Progress) -> None:
        now = int(time.time())
        if rc == 0 and RunDir(run_dir).final.is_dir():
            model = f"ft:{job.base_id}:{job.run_name}"
            result = write_results(self.store, self.settings.files_dir, job.id, run_dir)
            done = self.store.update_job(
                job.id, only_from=("running",), status="succeeded", fine_tuned_model=model, finished_at=now,
                trained_tokens=progress.trained_tokens(), result_files=[result] if result else [],
            )  # fmt: skip
            if done:
                self.store.add_event(job.id, f"New fine-tuned model created: {model}")
                self.store.add_event(job.id, "The job has successfully completed")
            return
        self._fail(job.id, "running", "training_failed", failure_message(log_path, rc), None, "Training failed")

    def loop(self) -> None:
        while not self.parent_gone():
            self.validate_pending()
            claimed = self.claim()
            if claimed is None:
                time.sleep(POLL_S)
                continue
            job, fd = claimed
            try:
                self.run(job, fd)
            finally:
                os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunesmith.serve.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--train-ranks", type=int, default=1, help="processes each job trains on (torchrun)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings = ServeSettings(args.runs_dir, trust_remote_code=args.trust_remote_code, train_ranks=args.train_ranks)
    settings.prepare()
    Worker(settings, args.parent_pid).loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
