"""Class 4, HTTP: hostile requests to a real `tunesmith serve` on the tiny model, each sent while innocent chat
requests run beside it. Clean: the hostile one gets the right 4xx with OpenAI's error object (no traceback, no
server path), every innocent one succeeds, and the server stays up and responsive.

    python benchmarks/robustness/run.py --only http
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cases_jobs import JOB_CASES
from common import Case, Fixtures, Verdict, clean, fail
from http_tools import Server, raw_request, shared_server, stop_shared_server, verdict, with_innocents

BAD = (400, 422)  # a request the client must fix; FastAPI's own validation answers 422
CHAT = '{"model": "{base}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4%s}'


def send(
    method: str, path: str, body: str | bytes | None = None, allowed: tuple[int, ...] = BAD,
    headers: dict[str, str] | None = None, kinds: tuple[str, ...] = ("chat", "lora", "chat"),
) -> Callable[[Server], Verdict]:  # fmt: skip
    """A hostile request; {base}, {lora} and {head} in the body or path become the served model ids."""

    def run(server: Server) -> Verdict:
        names = {"{base}": server.models["base"], "{lora}": server.models["lora"], "{head}": server.models["head"]}
        url, content = path, body
        for key, value in names.items():
            url = url.replace(key, value)
            if isinstance(content, str):
                content = content.replace(key, value)
        content = content.encode("utf-8", errors="surrogatepass") if isinstance(content, str) else content
        sent = {"content-type": "application/json", **(headers or {})} if content is not None else headers

        def hostile() -> httpx.Response:
            return httpx.request(method, server.url + url, content=content, headers=sent, timeout=120)

        try:
            response, problems = with_innocents(server, hostile, kinds)
        except httpx.HTTPError as err:
            return fail(f"no answer to the hostile request: {type(err).__name__}: {err}")
        return verdict(response.status_code, response.content, allowed, problems, server)

    return run


def chat(extra: str, allowed: tuple[int, ...] = BAD) -> Callable[[Server], Verdict]:
    return send("POST", "/v1/chat/completions", CHAT % extra, allowed)


def _health_during_big_prompt(server: Server) -> Verdict:
    """A 3.6 MB prompt is tokenized off the event loop: /health still answers at once."""
    body = json.dumps({"model": server.models["base"], "prompt": "the quick brown fox " * 180_000, "max_tokens": 2})
    slowest = 0.0

    def hostile() -> httpx.Response:
        nonlocal slowest
        import threading

        result: dict = {}
        worker = threading.Thread(
            target=lambda: result.setdefault(
                "r",
                httpx.post(
                    server.url + "/v1/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=300,
                ),
            )
        )
        worker.start()
        while worker.is_alive():
            start = time.monotonic()
            httpx.get(server.url + "/health", timeout=60)
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.05)
        worker.join()
        return result["r"]

    response, problems = with_innocents(server, hostile)
    outcome = verdict(response.status_code, response.content, (200, 400, 413), problems, server)
    if outcome.clean and slowest > 1.0:
        return fail(f"/health took {slowest:.1f}s while a 3.6 MB prompt was handled")
    return outcome if not outcome.clean else clean(f"{response.status_code}; /health at most {slowest:.2f}s")


def _wide_request(server: Server) -> Verdict:
    """64 prompts x n=16: refused, or decoded in --max-batch pieces so a small request is not stuck behind it."""
    body = json.dumps({"model": server.models["base"], "prompt": ["count: 1 2 3"] * 64, "n": 16, "max_tokens": 24})

    def hostile() -> httpx.Response:
        return httpx.post(server.url + "/v1/completions", content=body, headers={"content-type": "application/json"},
                          timeout=600)  # fmt: skip

    start = time.monotonic()
    alone = httpx.post(server.url + "/v1/chat/completions", json={"model": server.models["base"], "messages": [
        {"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}, timeout=120)  # fmt: skip
    baseline = time.monotonic() - start
    small_latency: list[float] = []

    def small() -> None:
        time.sleep(0.3)
        t = time.monotonic()
        httpx.post(server.url + "/v1/chat/completions", json={"model": server.models["base"], "messages": [
            {"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}, timeout=300)  # fmt: skip
        small_latency.append(time.monotonic() - t)

    import threading

    waiter = threading.Thread(target=small)
    waiter.start()
    response, problems = with_innocents(server, hostile, ("chat",))
    waiter.join()
    outcome = verdict(response.status_code, response.content, (200, 400), problems, server)
    waited = small_latency[0] if small_latency else float("inf")
    if outcome.clean and alone.status_code == 200 and waited > max(10.0, 10 * baseline):
        return fail(f"a 4-token request waited {waited:.1f}s behind 1,024 sequences (alone: {baseline:.1f}s)")
    return outcome if not outcome.clean else clean(f"{response.status_code}; a small request waited {waited:.1f}s")


def _false_length(server: Server) -> Verdict:
    """Content-Length claims 100 bytes, 10 are sent: the server gives up on it instead of waiting forever."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")  # fmt: skip
    (status, body, seconds), problems = with_innocents(
        server, lambda: raw_request(server.port, head, [b'{"model":'], 120)
    )
    if status is None and seconds >= 119:
        return fail("the server still waits for the promised bytes after 120s")
    if status is None:
        return clean(f"connection closed after {seconds:.0f}s") if not problems else fail(problems[0])
    return verdict(status, body, (400, 408, 413), problems, server)


def _chunked_upload(server: Server) -> Verdict:
    """2 MB sent chunked (no Content-Length) to a server whose upload limit is 1 MB: 413 while streaming."""
    boundary = b"XyZ"
    head = (b"POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n")  # fmt: skip
    start = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--' + boundary
             + b'\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n')  # fmt: skip
    row = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    payload = start + (row + "\n").encode() * (2 * 2**20 // len(row)) + b"\r\n--" + boundary + b"--\r\n"
    parts = [b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536])
             for i in range(0, len(payload), 65536)] + [b"0\r\n\r\n"]  # fmt: skip
    (status, body, _), problems = with_innocents(server, lambda: raw_request(server.port, head, parts, 120))
    if status is None:
        return fail("no answer to a 2 MB chunked upload")
    return verdict(status, body, (413,), problems, server)


SURROGATE = "\\ud800"
HTTP_CASES: dict[str, Callable[[Server], Verdict]] = {
    "seed 2**70": chat(f', "seed": {2**70}'),
    "seed 2**64": chat(f', "seed": {2**64}'),
    "seed -1": chat(', "seed": -1', allowed=(200, 400, 422)),
    "seed 1.5": chat(', "seed": 1.5'),
    "seed as a string": chat(', "seed": "abc"'),
    "seed 5,000 digits": chat(', "seed": ' + "9" * 5000),
    "max_tokens -1": chat(', "max_tokens": -1'),
    "max_tokens 2**70": chat(f', "max_tokens": {2**70}'),
    "max_tokens 10**9": chat(', "max_tokens": 1000000000', allowed=(200, 400, 422)),
    "max_tokens 0": chat(', "max_tokens": 0', allowed=(200, 400, 422)),
    "temperature -1": chat(', "temperature": -1'),
    "temperature NaN": chat(', "temperature": NaN'),
    "temperature 1e308": chat(', "temperature": 1e308'),
    "top_p 0": chat(', "top_p": 0'),
    "top_p Infinity": chat(', "top_p": Infinity'),
    "n 0": chat(', "n": 0'),
    "n 1000": chat(', "n": 1000'),
    "5 stop strings": chat(', "stop": ["a", "b", "c", "d", "e"]'),
    "empty stop string": chat(', "stop": [""]'),
    "logprobs true": chat(', "logprobs": true'),
    "tools given": chat(', "tools": [{"type": "function", "function": {"name": "f"}}]'),
    "lone surrogate in chat content": send(
        "POST", "/v1/chat/completions", CHAT.replace('"hi"', f'"h{SURROGATE}i"') % ""
    ),
    "lone surrogate in completions prompt": send(
        "POST", "/v1/completions", f'{{"model": "{{base}}", "prompt": "a{SURROGATE}b", "max_tokens": 3}}'
    ),
    "lone surrogate in classifications": send(
        "POST",
        "/v1/classifications",
        f'{{"model": "{{head}}", "input": ["ok", "x{SURROGATE}"]}}',
        kinds=("classify", "classify", "chat"),
    ),
    "lone surrogate in the model id": send(
        "POST", "/v1/chat/completions", CHAT.replace('"{base}"', f'"m{SURROGATE}"') % "", allowed=(400, 404, 422)
    ),
    "lone surrogate in stop": chat(f', "stop": ["{SURROGATE}"]'),
    "classifications of 257 texts": send(
        "POST", "/v1/classifications", json.dumps({"model": "{head}", "input": ["hi"] * 257})
    ),
    "classifications with no texts": send("POST", "/v1/classifications", json.dumps({"model": "{head}", "input": []})),
    "classifications on a chat model": send(
        "POST", "/v1/classifications", json.dumps({"model": "{lora}", "input": "hi"})
    ),
    "no messages": send("POST", "/v1/chat/completions", json.dumps({"model": "{base}", "messages": []})),
    "messages is a string": send("POST", "/v1/chat/completions", json.dumps({"model": "{base}", "messages": "hi"})),
    "unknown role": send("POST", "/v1/chat/completions", CHAT.replace('"user"', '"robot"') % ""),
    "image content part": send(
        "POST",
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "{base}",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ],
            }
        ),
    ),
    "stream with seed 2**70": chat(f', "stream": true, "seed": {2**70}'),
    "unknown model": send("POST", "/v1/chat/completions", CHAT.replace("{base}", "gpt-9") % "", allowed=(404,)),
    "model id ../../etc/passwd": send(
        "POST", "/v1/chat/completions", CHAT.replace("{base}", "../../etc/passwd") % "", allowed=(400, 404)
    ),
    "model id ft:base:../../x": send(
        "POST", "/v1/chat/completions", CHAT.replace("{base}", "ft:{base}:../../x") % "", allowed=(400, 404)
    ),
    "model id ft:base:.serve": send(
        "POST", "/v1/chat/completions", CHAT.replace("{base}", "ft:{base}:.serve") % "", allowed=(400, 404)
    ),
    "GET /v1/models/..%2F..%2Fetc%2Fpasswd": send("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", allowed=(400, 404)),
    "GET /v1/files/../serve.sqlite3": send("GET", "/v1/files/..%2Fserve.sqlite3/content", allowed=(400, 404)),
    "GET an unknown file id": send("GET", "/v1/files/file-nope", allowed=(404,)),
    "DELETE /v1/files/..%2F..": send("DELETE", "/v1/files/..%2F..", allowed=(400, 404)),
    "unknown route": send("GET", "/v1/nope", allowed=(404,)),
    "wrong method": send("DELETE", "/v1/chat/completions", allowed=(405,)),
    "bad JSON": send("POST", "/v1/chat/completions", '{"model": '),
    "body is not JSON": send("POST", "/v1/chat/completions", "hello"),
    "body is a JSON array": send("POST", "/v1/chat/completions", "[1, 2]"),
    "empty body": send("POST", "/v1/chat/completions", ""),
    "JSON nested 100,000 deep": send(
        "POST", "/v1/chat/completions", "[" * 100_000 + "]" * 100_000, allowed=(400, 413, 422)
    ),
    "form body to a JSON route": send(
        "POST",
        "/v1/chat/completions",
        "a=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
        allowed=(400, 415, 422),
    ),
    "5 MB JSON body": send(
        "POST", "/v1/chat/completions", CHAT.replace('"hi"', '"' + "x" * 5 * 2**20 + '"') % "", allowed=(413,)
    ),
    "3.6 MB prompt while /health is polled": _health_during_big_prompt,
    "64 prompts x n=16 beyond --max-batch": _wide_request,
    "false Content-Length": _false_length,
    "oversized chunked upload": _chunked_upload,
}


def cases(fx: Fixtures) -> list[Case]:
    table = {**HTTP_CASES, **JOB_CASES}

    def bind(run: Callable[[Server], Verdict]) -> Callable[[Path], Verdict]:
        return lambda work: run(shared_server(fx))

    return [Case("http", name, bind(run), group="http") for name, run in table.items()]


def teardown() -> None:
    stop_shared_server()
