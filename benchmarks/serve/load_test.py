"""Load test of `tunesmith serve` on loopback, side by side with plain transformers generate() on the same prompts.

    python benchmarks/serve/load_test.py --requests 32 --concurrency 8 --max-tokens 64 [--dtypes auto bfloat16]

Starts the server (no job worker) on a free 127.0.0.1 port with the default model, sends N chat requests from C
concurrent clients (each sends its next request when its last one is answered; every request has a timeout and the
whole run a deadline), and counts errors, completion tokens, tokens/s and latency percentiles. Then it loads the
same model with transformers and answers the same prompts with generate(), one at a time, as a plain script would:
its latency is reported both per call and as C clients would see it queued behind each other. All answers are
greedy (temperature 0) so both sides produce the same tokens. Prompts are the user turns of the bundled
support-desk held-out set (src/tunesmith/assets/support_eval.jsonl). Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    wall_s: float
    tokens: int
    latencies: list[float]
    answers: dict[int, str] = field(default_factory=dict)  # question index -> answer text (server passes)

    def row(self) -> str:
        p50 = statistics.median(self.latencies) if self.latencies else float("nan")
        p95 = percentile(self.latencies, 95)
        tps = self.tokens / self.wall_s if self.wall_s else 0.0
        return (f"| {self.name} | {self.requests} | {self.errors} | {self.wall_s:.1f} | {self.tokens} | {tps:.1f} "
                f"| {p50:.2f} | {p95:.2f} |")  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def prompts(n: int) -> list[str]:
    text = resources.files("tunesmith").joinpath("assets/support_eval.jsonl").read_text(encoding="utf-8")
    users = [json.loads(line)["messages"][0]["content"] for line in text.splitlines() if line.strip()]
    return [users[i % len(users)] for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(url: str, model: str, questions: list[str], concurrency: int, max_tokens: int, deadline_s: float):
    """C closed-loop clients over a shared list of questions; returns latencies, tokens and errors."""
    latencies: list[float] = []
    tokens, errors, sent = 0, 0, 0
    answers: dict[int, str] = {}
    queue = list(enumerate(questions))
    stop_at = time.monotonic() + deadline_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens, errors, sent
        while queue and time.monotonic() < stop_at:
            index, question = queue.pop(0)
            sent += 1
            body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                    "temperature": 0}  # fmt: skip
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/chat/completions", json=body)
                response.raise_for_status()
                tokens += response.json()["usage"]["completion_tokens"]
                answers[index] = response.json()["choices"][0]["message"]["content"]
                latencies.append(time.perf_counter() - started)
            except (httpx.HTTPError, KeyError, ValueError) as err:
                errors += 1
                print(f"request failed: {err!r}", file=sys.stderr)

    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return sent, errors, wall, tokens, latencies, answers


def run_server(model: str, args: argparse.Namespace, questions: list[str], dtype: str) -> list[Result]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs = tempfile.mkdtemp(prefix="serve-bench-")
    command = [sys.executable, "-m", "tunesmith.cli", "serve", "--runs-dir", runs, "--port", str(port),
               "--workers", "0", "--max-batch", str(args.concurrency), "--dtype", dtype]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300  # the first load of the default model converts its GGUF (~40 s)
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        warm = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        httpx.post(f"{url}/v1/chat/completions", json=warm, timeout=600).raise_for_status()
        out = []
        for concurrency in sorted({args.concurrency} | (set() if args.skip_single else {1}), reverse=True):
            sent, errors, wall, tokens, lat, answers = asyncio.run(
                drive(url, model, questions, concurrency, args.max_tokens, args.time_limit)
            )
            label = f"tunesmith serve{'' if dtype == 'auto' else ' --dtype ' + dtype}, {concurrency} concurrent"
            out.append(Result(label, sent, errors, wall, tokens, lat, answers))
        return out
    finally:
        server.terminate()
        server.wait(timeout=60)


def run_transformers(model_name: str, args: argparse.Namespace, questions: list[str]) -> tuple[Result, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.data.templates import Renderer
    from tunesmith.models.loading import default_threads, load_tokenizer, pick_device
    from tunesmith.models.registry import resolve_base

    torch.set_num_threads(default_threads())
    device = pick_device()
    path = resolve_base(model_name).path
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    tokenizer = load_tokenizer(path)
    renderer = Renderer(tokenizer)
    stops = renderer.stop_ids()
    with torch.no_grad():
        model.generate(input_ids=torch.tensor([[tokenizer.eos_token_id]], device=device), max_new_tokens=2)
        latencies, tokens = [], 0
        started = time.perf_counter()
        for question in questions:
            if time.perf_counter() - started > args.time_limit:
                break
            ids = torch.tensor([renderer.prompt_ids([{"role": "user", "content": question}])], device=device)
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_tokens,
                                 do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            latencies.append(time.perf_counter() - t0)
            new = out[0, ids.shape[1] :].tolist()
            tokens += sum(1 for t in new if t not in stops)
        wall = time.perf_counter() - started
    return Result("transformers generate, 1 at a time", len(latencies), 0, wall, tokens, latencies), latencies


def queued(service: list[float], clients: int) -> list[float]:
    """Latencies C closed-loop clients would see from a server that answers one request at a time (FIFO)."""
    free_at, ready, out = 0.0, [0.0] * clients, []
    for i, cost in enumerate(service):
        arrive = ready[i % clients]
        start = max(arrive, free_at)
        free_at = start + cost
        out.append(free_at - arrive)
        ready[i % clients] = free_at
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per pass; no new request after it")
    parser.add_argument("--dtypes", nargs="+", default=["auto"], help="serve --dtype values, one server each")
    parser.add_argument("--skip-single", action="store_true", help="no pass with one client at a time")
    args = parser.parse_args()
    questions = prompts(args.requests)
    served = [row for dtype in args.dtypes for row in run_server(args.model, args, questions, dtype)]
    plain, service = run_transformers(args.model, args, questions)
    as_queued = Result(f"transformers generate, {args.concurrency} clients queued", plain.requests, 0, plain.wall_s,
                       plain.tokens, queued(service, args.concurrency))  # fmt: skip
    print(f"\n{args.requests} requests, max_tokens {args.max_tokens}, greedy, model {args.model}, "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    print("| setup | requests | errors | wall s | completion tokens | tokens/s | p50 latency s | p95 latency s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in [*served, plain, as_queued]:
        print(result.row())
    first = served[0]
    for result in served[1:]:
        same = sum(first.answers.get(i) == text for i, text in result.answers.items())
        print(f"\n{result.name}: {same} of {len(result.answers)} answers identical to {first.name}'s")
    return 1 if any(r.errors for r in served) else 0


if __name__ == "__main__":
    sys.exit(main())
