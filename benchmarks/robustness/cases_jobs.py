"""Class 4 (part): hostile uploads and fine-tuning jobs. An upload whose rows would crash training is refused with
the row; a job that cannot train ends `failed` with a clear message and no server path; a job cancelled after its
training finished is not served as a model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
from common import Verdict, clean, fail
from http_tools import LEAK, Server, verdict, with_innocents

GOOD = [
    {"messages": [{"role": "user", "content": f"what is {i} plus 1?"}, {"role": "assistant", "content": str(i + 1)}]}
    for i in range(24)
]
FAST = ["eval.general=false", "eval.samples=0", "data.max_length=128", "train.max_steps=2"]


def _jsonl(bad_line: str | None = None) -> bytes:
    lines = [json.dumps(r) for r in GOOD]
    if bad_line is not None:
        lines.insert(2, bad_line)
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")


def upload(
    data: bytes,
    allowed: tuple[int, ...] = (400,),
    filename: str = "rows.jsonl",
    purpose: str = "fine-tune",
    mention: str = "",
) -> Callable[[Server], Verdict]:
    def run(server: Server) -> Verdict:
        def hostile() -> httpx.Response:
            files = {"file": (filename, data, "application/jsonl")}
            return httpx.post(f"{server.url}/v1/files", files=files, data={"purpose": purpose}, timeout=120)

        response, problems = with_innocents(server, hostile)
        outcome = verdict(response.status_code, response.content, allowed, problems, server)
        if outcome.clean and mention and response.status_code >= 400 and mention not in response.text:
            return fail(f"{response.status_code} but the message does not name {mention!r}: {response.text[:120]}")
        escaped = [p for p in server.runs.parent.parent.rglob("evil*.jsonl")]
        return fail(f"an upload was written outside the server's folder: {escaped[0].name}") if escaped else outcome

    return run


def _post_job(server: Server, **body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/fine_tuning/jobs", json=body, timeout=60)


def _file_id(server: Server, data: bytes) -> str:
    r = httpx.post(
        f"{server.url}/v1/files", files={"file": ("ok.jsonl", data)}, data={"purpose": "fine-tune"}, timeout=120
    )
    r.raise_for_status()
    return r.json()["id"]


def job(allowed: tuple[int, ...] = (400, 404, 422), **body: object) -> Callable[[Server], Verdict]:
    """A job request that must be refused at once."""

    def run(server: Server) -> Verdict:
        fields = {"model": server.models["base"], "training_file": _file_id(server, _jsonl()), **body}
        response, problems = with_innocents(server, lambda: _post_job(server, **fields))
        return verdict(response.status_code, response.content, allowed, problems, server)

    return run


def _wait(server: Server, job_id: str, until: Callable[[dict], bool], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = httpx.get(f"{server.url}/v1/fine_tuning/jobs/{job_id}", timeout=30).json()
        if until(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _events(server: Server, job_id: str) -> str:
    r = httpx.get(f"{server.url}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 1000}, timeout=30)
    return " | ".join(e["message"] for e in r.json().get("data", []))


def failing_job(data: bytes, overrides: list[str], words: tuple[str, ...]) -> Callable[[Server], Verdict]:
    """A job that must end `failed` with a clear message (naming one of `words`) and no server path anywhere."""

    def run(server: Server) -> Verdict:
        created = _post_job(
            server, model=server.models["base"], training_file=_file_id(server, data), overrides=[*FAST, *overrides]
        )
        if created.status_code == 400:
            return verdict(created.status_code, created.content, (400,), [], server)
        state = _wait(server, created.json()["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        message = json.dumps(state.get("error")) + " " + _events(server, state["id"])
        if state["status"] != "failed":
            return fail(f"job ended {state['status']!r}; want failed")
        if LEAK.search(message):
            return fail(f"the job's error or events show the server's insides: {LEAK.search(message).group(0)!r}")
        if not any(w.lower() in message.lower() for w in words):
            return fail(f"failed, but the error does not say why: {message[:140]}")
        return clean(f"failed: {(state.get('error') or {}).get('message', '')[:90]}")

    return run


def _cancelled_after_training(server: Server) -> Verdict:
    """Cancel the moment the run's final/ exists: a cancelled job's model must not be listed or served."""
    created = _post_job(
        server, model=server.models["base"], training_file=_file_id(server, _jsonl()), suffix="late", overrides=FAST
    )
    job_id = created.json()["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(server.runs.glob(f"late-*{job_id[6:14]}*/final")) or any(server.runs.glob("late*/final")):
            break
        time.sleep(0.01)
    httpx.post(f"{server.url}/v1/fine_tuning/jobs/{job_id}/cancel", timeout=60)
    state = _wait(server, job_id, lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    models = [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"]]
    listed = [m for m in models if ":late" in m]
    if state["status"] == "cancelled" and listed:
        return fail(f"job cancelled, but its model {listed[0]} is listed")
    return clean(f"job {state['status']}; listed: {listed or 'no'}")


DEEP = '{"messages": ' + "[" * 200_000 + "]" * 200_000 + "}"
JOB_CASES: dict[str, Callable[[Server], Verdict]] = {
    "upload: assistant-first chat": upload(
        _jsonl(json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]})),
        mention="3",
    ),
    "upload: lone surrogate": upload(
        _jsonl('{"messages": [{"role": "user", "content": "a\\ud800"}, {"role": "assistant", "content": "b"}]}'),
        mention="3",
    ),
    "upload: JSON nested 200,000 deep": upload(_jsonl(DEEP), mention="3"),
    "upload: 5,000-digit integer": upload(_jsonl('{"n": ' + "1" * 5000 + "}"), mention="3"),
    "upload: special token in an answer": upload(
        _jsonl(
            json.dumps(
                {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a<|im_end|>b"}]}
            )
        ),
        allowed=(200, 400),
    ),
    "upload: empty file": upload(b""),
    "upload: UTF-16": upload(_jsonl().decode().encode("utf-16")),
    "upload: binary": upload(bytes(range(256)) * 16),
    "upload: filename ../../evil.jsonl": upload(_jsonl(), allowed=(200, 400), filename="../../evil.jsonl"),
    "upload: purpose nonsense": upload(_jsonl(), purpose="nonsense"),
    "job: unknown training file": job(training_file="file-nope"),
    "job: model ../../x": job(model="../../x"),
    "job: override output.dir": job(overrides=["output.dir=/tmp/evil"]),
    "job: override model.base": job(overrides=["model.base=/etc"]),
    "job: seed 2**70": job(seed=2**70),
    "job: n_epochs 0": job(method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}),
    "job: suffix ../x": job(suffix="../x"),
    "job: cancel an unknown job": lambda s: verdict(
        (r := httpx.post(f"{s.url}/v1/fine_tuning/jobs/ftjob-nope/cancel", timeout=30)).status_code,
        r.content,
        (404,),
        [],
        s,
    ),
    "job: train.lr=1e30 ends failed": failing_job(_jsonl(), ["train.lr=1e30"], ("non-finite", "nan", "diverg", "lr")),
    "job: personal data ends failed": failing_job(
        _jsonl(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "mail jane.doe@example.com, +1 415 555 0134"},
                        {"role": "assistant", "content": "ok"},
                    ]
                }
            )
        ),
        [],
        ("pii", "personal"),
    ),
    "job: cancelled after its training finished": _cancelled_after_training,
}
