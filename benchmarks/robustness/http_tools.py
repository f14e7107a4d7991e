"""Tools of the HTTP cases: one real `tunesmith serve` on the tiny model, innocent requests sent beside each hostile
one, raw-socket requests (false Content-Length, chunked uploads), and the checks on an error body.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import ENV, Fixtures, Verdict, clean, fail

# What a response must never show: a traceback, or a path on the server.
LEAK = re.compile(r"Traceback|File \"|site-packages|(?<![\w.:/~-])/(?:tmp|work|root|home|usr|var|opt)/")
INNOCENT_CHAT = {"messages": [{"role": "user", "content": "what is 2 plus 3?"}], "max_tokens": 12, "temperature": 0}


@dataclass
class Server:
    fx: Fixtures
    runs: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    models: dict[str, str] = field(default_factory=dict)  # base, lora, head -> model id

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.runs.mkdir(parents=True, exist_ok=True)
        for name, run in (("lora", self.fx.lora_run), ("head", self.fx.head_run)):
            if not (self.runs / name).exists():
                shutil.copytree(run, self.runs / name)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = [sys.executable, "-m", "tunesmith.cli", "serve", "--port", str(self.port), "--runs-dir",
                str(self.runs), "--model", str(self.fx.model), "--workers", "1", "--max-batch", "8",
                "--max-upload-mb", "1"]  # fmt: skip
        log = open(self.runs.parent / "server.log", "ab")  # noqa: SIM115 - the server process writes to it
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 900  # a busy 2-core machine imports slowly
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"the server did not come up; see {self.runs.parent / 'server.log'}")
        ids = [m["id"] for m in httpx.get(f"{self.url}/v1/models", timeout=30).json()["data"]]
        lora = next(i for i in ids if i.startswith("ft:") and i.endswith(":lora"))
        self.models = {
            "base": lora.split(":")[1],  # the tiny model, not the registered default a base listing also holds
            "lora": lora,
            "head": next(i for i in ids if i.startswith("ft:") and i.endswith(":head")),
        }
        for kind in ("chat", "lora", "classify"):  # load every model once, so no case pays for the first load
            problem = innocent(self, kind)
            if problem:
                raise RuntimeError(f"the server does not answer ordinary requests: {problem}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def innocent(server: Server, kind: str) -> str | None:
    """One ordinary request; None when it got a proper answer, else what went wrong."""
    try:
        if kind == "classify":
            body = {"model": server.models["head"], "input": ["reset my password", "hello there"]}
            r = httpx.post(f"{server.url}/v1/classifications", json=body, timeout=600)
            ok = r.status_code == 200 and len(r.json().get("data", [])) == 2
        else:
            body = {**INNOCENT_CHAT, "model": server.models["base" if kind == "chat" else "lora"]}
            r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=600)
            ok = r.status_code == 200 and isinstance(r.json()["choices"][0]["message"]["content"], str)
    except (httpx.HTTPError, ValueError, KeyError) as err:
        return f"innocent {kind} request: {type(err).__name__}"
    return None if ok else f"innocent {kind} request got {r.status_code}: {r.text[:100]}"


def error_shape(status: int, body: bytes, allowed: tuple[int, ...]) -> str | None:
    """None when the answer is one of `allowed` and, for an error, OpenAI's error object with nothing leaked."""
    text = body.decode("utf-8", errors="replace")
    if LEAK.search(text):
        return f"{status} shows the server's insides: {LEAK.search(text).group(0)!r} in {text[:120]!r}"
    if status not in allowed:
        return f"status {status} (want {'/'.join(map(str, allowed))}): {text[:140]}"
    if status >= 400:
        try:
            error = json.loads(text)["error"]
            assert isinstance(error["message"], str) and error["message"] and "type" in error
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"{status} without OpenAI's error object: {text[:120]!r}"
    return None


def with_innocents(server: Server, hostile, kinds: tuple[str, ...] = ("chat", "lora", "chat")) -> tuple:
    """Send the innocent requests and, a moment later (so they share a batch), the hostile one. Returns the
    hostile's result and the innocents' problems."""
    with ThreadPoolExecutor(max_workers=len(kinds) + 1) as pool:
        innocents = [pool.submit(innocent, server, kind) for kind in kinds]
        time.sleep(0.05)
        result = hostile()
        problems = [p for p in (f.result() for f in innocents) if p]
    return result, problems


def verdict(status: int, body: bytes, allowed: tuple[int, ...], problems: list[str], server: Server) -> Verdict:
    if not server.alive():
        return fail("the server died")
    wrong = error_shape(status, body, allowed)
    if wrong:
        return fail(wrong + (f"; and {problems[0]}" if problems else ""))
    if problems:
        return fail(f"hostile got {status}, but {len(problems)} innocent request(s) failed: {problems[0]}")
    return clean(f"{status}: {body.decode('utf-8', errors='replace')[:90]}")


def raw_request(port: int, head: bytes, body_parts: list[bytes], wait_s: float) -> tuple[int | None, bytes, float]:
    """Send bytes as they are (a false Content-Length, chunks); returns (status or None, body, seconds)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered (413) and closed while we were still sending
                break
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and _complete(data):
                    break
        except (TimeoutError, OSError):
            pass
    seconds = time.monotonic() - start
    if not data.startswith(b"HTTP/"):
        return None, data, seconds
    head_end = data.find(b"\r\n\r\n")
    return int(data.split(b" ", 2)[1]), data[head_end + 4 :], seconds


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
    return match is None or len(body) >= int(match.group(1))


_lock = threading.Lock()
_server: Server | None = None


def shared_server(fx: Fixtures) -> Server:
    global _server
    with _lock:
        if _server is None:
            _server = Server(fx, fx.root / "serve" / "runs")
            _server.start()
        return _server


def stop_shared_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None
