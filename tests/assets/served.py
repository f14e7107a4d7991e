"""`tunesmith serve` in a subprocess on a free loopback port, started, killed and stopped like an operator would."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


class Server:
    """`tunesmith serve` on a free loopback port, started and killed like an operator would."""

    def __init__(self, runs_dir: Path, model_dir: Path, api_key: str | None = None, options: tuple[str, ...] = ()):
        self.runs_dir, self.model_dir, self.api_key, self.options = runs_dir, model_dir, api_key, options
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @functools.cached_property
    def client(self):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "unused", max_retries=0)

    def start(self) -> None:
        command = [sys.executable, "-m", "tunesmith.cli", "serve", "--runs-dir", str(self.runs_dir), "--port",
                   str(self.port), "--model", str(self.model_dir), *self.options]  # fmt: skip
        if self.api_key:
            keys = self.runs_dir.parent / "keys.txt"
            keys.write_text(self.api_key + "\n", encoding="utf-8")
            command += ["--api-key-file", str(keys)]
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.runs_dir.parent / "server.log", "ab")  # noqa: SIM115 - the server process writes to it
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        log.close()
        deadline = time.time() + 240  # a loaded CI machine imports torch slowly
        while time.time() < deadline and self.proc.poll() is None:  # a server that exits has said why in its log
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the server did not come up:\n" + (self.runs_dir.parent / "server.log").read_text())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
