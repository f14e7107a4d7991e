"""Start the job worker processes with the server, start again any that dies, stop them with it.

A worker notices a server that died without stopping it (it watches its parent's pid), and its training child dies
with it, so nothing keeps training behind a restarted server's back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from tunesmith.serve.settings import ServeSettings

RESTART_DELAY_S = 1.0


class Supervisor:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.workers: list[subprocess.Popen | None] = [None] * settings.workers
        self.restarts = 0
        self._task: asyncio.Task | None = None

    def _spawn(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "tunesmith.serve.worker", "--runs-dir", str(self.settings.runs_dir),
                   "--parent-pid", str(os.getpid())]  # fmt: skip
        if self.settings.trust_remote_code:
            command.append("--trust-remote-code")
        if self.settings.train_ranks > 1:
            command += ["--train-ranks", str(self.settings.train_ranks)]
        log = open(self.settings.state_dir / "worker.log", "ab")  # noqa: SIM115 - the child owns it from here
        try:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def start(self) -> None:
        if not self.workers:
            return
        self.workers = [self._spawn() for _ in self.workers]
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RESTART_DELAY_S)
            for i, proc in enumerate(self.workers):
                if proc is not None and proc.poll() is not None:
                    self.restarts += 1
                    self.workers[i] = self._spawn()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: each worker stops its training (the job stays `running`, to resume on the next start)."""
        if self._task is not None:
            self._task.cancel()
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            if proc is None:
                continue
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
