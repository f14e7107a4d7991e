"""The server under hostile requests: every bad parameter is a 400 in OpenAI's error shape before it reaches a
batch, one request's failure never fails its batch neighbours, a request with more answers than --max-batch is
served in parts that leave room for others, tokenizing does not hold up the event loop, no error body shows a
traceback or a server path, a job cancelled after its training is not served, and bodies that break their limits
(too large without Content-Length, or shorter than their Content-Length) are answered, not waited on."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from tiny_runs import write_chat_data

import tunesmith.serve.batcher as batcher_module
from tunesmith.serve.app import create_app
from tunesmith.serve.batcher import Batcher, Generation
from tunesmith.serve.catalog import Catalog, UnknownModel
from tunesmith.serve.decode import Sampling, Sequence
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.store import JobRecord, Store
from tunesmith.serve.worker import Worker

CHAT = [{"role": "user", "content": "what is 2 plus 3?"}]
SURROGATE = "\ud800"


@pytest.fixture(scope="module")
def settings(tiny_model_dir, tmp_path_factory) -> ServeSettings:
    runs = tmp_path_factory.mktemp("hostile") / "runs"
    return ServeSettings(runs_dir=runs, bases=[str(tiny_model_dir)], workers=0, max_batch=4, batch_window_s=0.2,
                         max_upload_bytes=20_000, default_max_tokens=4)  # fmt: skip


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def batches(client, monkeypatch) -> list[list[Sequence]]:
    """The sequences of every batch the model thread decodes from here on."""
    seen: list[list[Sequence]] = []
    real = batcher_module.decode

    def recording(model, tokenizer, sequences, *args):
        seen.append(list(sequences))
        return real(model, tokenizer, sequences, *args)

    monkeypatch.setattr(batcher_module, "decode", recording)
    return seen


def assert_clean_error(response, status: int, runs_dir: Path | None = None) -> dict:
    """An OpenAI error object with the expected status, and nothing of the server's insides in it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    if runs_dir is not None:
        assert str(runs_dir) not in response.text and str(runs_dir.parent) not in response.text
    return body["error"]


# --- every parameter is checked at the door --------------------------------------------------------------------

BAD = [
    ("chat", {"seed": 2**70}, "seed"),
    ("chat", {"seed": -(2**64)}, "seed"),
    ("chat", {"temperature": 2.5}, "temperature"),
    ("chat", {"top_p": 0}, "top_p"),
    ("chat", {"n": 17}, "n"),
    ("chat", {"n": 0}, "n"),
    ("chat", {"max_tokens": -1}, "max_tokens"),
    ("chat", {"max_tokens": 10**12}, "max_tokens"),
    ("chat", {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("chat", {"stop": "x" * 257}, "stop"),
    ("chat", {"logprobs": True}, "logprobs"),
    ("chat", {"messages": [{"role": "user", "content": f"hi {SURROGATE}"}]}, "messages.0.content"),
    (
        "chat",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]},
        "messages.0.content.0.text",
    ),
    ("chat", {"user": SURROGATE}, "user"),
    ("completions", {"prompt": ["fine", f"bad {SURROGATE}"]}, "prompt.1"),
    ("completions", {"stop": SURROGATE}, "stop"),
    ("classifications", {"input": ["fine", SURROGATE]}, "input.1"),
    ("jobs", {"suffix": SURROGATE}, "suffix"),
    ("jobs", {"metadata": {"k": SURROGATE}}, "metadata.k"),
    ("jobs", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
]
ROUTES = {
    "chat": ("/v1/chat/completions", {"model": "tiny-llama", "messages": CHAT, "max_tokens": 2}),
    "completions": ("/v1/completions", {"model": "tiny-llama", "prompt": "hello", "max_tokens": 2}),
    "classifications": ("/v1/classifications", {"model": "ft:tiny-llama:head", "input": "hello"}),
    "jobs": ("/v1/fine_tuning/jobs", {"model": "tiny-llama", "training_file": "file-000000000000000000000000"}),
}


@pytest.mark.parametrize(("route", "change", "param"), BAD, ids=[f"{r}-{p}" for r, _, p in BAD])
def test_a_bad_parameter_is_a_400_naming_it(client, settings, route, change, param):
    path, body = ROUTES[route]
    # json.dumps keeps a lone surrogate as the escape "\ud800", as a hostile client sends it
    response = client.post(path, content=json.dumps({**body, **change}), headers={"content-type": "application/json"})
    error = assert_clean_error(response, 400, settings.runs_dir)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_non_finite_numbers_are_refused(client):
    body = '{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert assert_clean_error(response, 400)["param"] == "temperature"


def test_a_hostile_request_fails_alone_while_its_neighbours_answer(client):
    """A seed torch cannot take and a lone surrogate once raised inside the shared batch and failed every request
    decoded with them; now they are refused at the door and the innocent requests arriving with them all answer."""
    path, base = ROUTES["chat"]
    innocent = [{**base, "temperature": 1.0, "seed": i, "messages": [{"role": "user", "content": f"hello {i}"}]}
                for i in range(6)]  # fmt: skip
    hostile = [{**base, "seed": 2**70}, {**base, "messages": [{"role": "user", "content": SURROGATE}]}]

    def post(body: dict):
        return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})

    with ThreadPoolExecutor(len(innocent) + len(hostile)) as pool:
        answers = list(pool.map(post, innocent[:3] + hostile + innocent[3:]))
    assert [r.status_code for r in answers] == [200, 200, 200, 400, 400, 200, 200, 200]
    assert all(r.json()["choices"][0]["message"]["role"] == "assistant" for r in answers if r.status_code == 200)


# --- one failure, one request --------------------------------------------------------------------------------


class FakeProfile:
    weights, adapter, stop_ids = "tiny", None, set()

    class tokenizer:  # stands in for a tokenizer object
        pad_token_id = 0


class NoModel:
    device = None

    def activate(self, profile):
        return nullcontext(None)


def fake_decode(poison: int, seen: list[list[Sequence]], hold: threading.Event | None = None):
    """A decode that writes one token per answer, and fails the whole batch when a prompt holds `poison`."""

    def run(model, tokenizer, sequences, *args):
        seen.append(list(sequences))
        if hold is not None and len(seen) == 1:
            hold.wait(10)
        if any(poison in s.prompt_ids for s in sequences):
            raise RuntimeError("boom at /srv/secret/model.py")
        for s in sequences:
            s.tokens, s.text, s.finish_reason = [1], "ok", "length"

    return run


def generation(prompt: int, n: int = 1) -> Generation:
    return Generation(FakeProfile(), [Sequence([prompt], Sampling(max_tokens=1)) for _ in range(n)])  # type: ignore[arg-type]


def test_a_failed_batch_is_run_again_request_by_request(monkeypatch):
    seen: list[list[Sequence]] = []
    monkeypatch.setattr(batcher_module, "decode", fake_decode(666, seen))
    batcher = Batcher(NoModel(), max_batch=8, window_s=0.05)  # type: ignore[arg-type]
    works = [generation(1), generation(666), generation(2), generation(3)]
    for work in works:
        batcher.submit(work)  # queued before the thread starts: they share one batch
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            works[1].done.result(timeout=30)
        for work in (works[0], works[2], works[3]):
            assert work.done.result(timeout=30) is None and work.sequences[0].text == "ok"
    finally:
        batcher.stop()
    assert len(seen[0]) == 4 and [len(b) for b in seen[1:]] == [1, 1, 1, 1]  # together, then each alone


def test_a_row_that_fails_ends_its_own_request_only(tiny_model_dir):
    """A client whose stream callback breaks (or any per-row fault) fails that request; its neighbours decode on."""
    from transformers import AutoModelForCausalLM

    from tunesmith.models.loading import load_tokenizer
    from tunesmith.serve.decode import decode

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = load_tokenizer(tiny_model_dir)

    def broken(text: str) -> None:
        raise ConnectionError("client went away badly")

    prompt = tokenizer("hello there")["input_ids"]
    rows = [Sequence(prompt, Sampling(max_tokens=4, temperature=0)) for _ in range(3)]
    rows[1].emit = broken
    rows.append(Sequence(prompt, Sampling(max_tokens=4, temperature=1.0, seed=2**70)))  # past the schema's guard
    decode(model, tokenizer, rows, set(), tokenizer.pad_token_id, torch.device("cpu"))
    assert isinstance(rows[1].error, ConnectionError) and rows[3].error is not None
    for row in (rows[0], rows[2]):
        assert row.error is None and row.finish_reason == "length" and len(row.tokens) == 4


# --- --max-batch holds for n x prompts, and small requests are not stuck behind big ones -------------------


def test_a_big_request_is_split_and_shares_each_batch_with_a_small_one(monkeypatch):
    seen: list[list[Sequence]] = []
    hold = threading.Event()
    monkeypatch.setattr(batcher_module, "decode", fake_decode(-1, seen, hold))
    batcher = Batcher(NoModel(), max_batch=4, window_s=0.0)  # type: ignore[arg-type]
    batcher.start()
    try:
        big = generation(1, n=64)
        batcher.submit(big)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        small = generation(2)
        batcher.submit(small)  # arrives while the big request's first batch is being decoded
        hold.set()
        small.done.result(timeout=30)
        big.done.result(timeout=30)
    finally:
        batcher.stop()
    assert all(len(b) <= 4 for b in seen) and sum(len(b) for b in seen) == 65
    assert small.sequences[0] in seen[1]  # the very next batch, not after the 15 other parts of the big request
    assert all(s.text == "ok" for s in big.sequences)


def test_n_times_prompts_beyond_max_batch_answer_in_batches_of_max_batch(client, batches):
    body = {"model": "tiny-llama", "prompt": [f"count {i}" for i in range(5)], "n": 3, "max_tokens": 2, "seed": 1}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert [c["index"] for c in response.json()["choices"]] == list(range(15))
    assert sum(len(b) for b in batches) == 15 and max(len(b) for b in batches) <= 4


# --- the event loop stays free while a prompt is tokenized ----------------------------------------------------


def test_tokenizing_a_prompt_does_not_hold_up_health(client, monkeypatch):
    state = client.app.state.server
    profile = state.engines.profile(state.catalog.get("tiny-llama"))
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    real = profile.renderer.prompt_ids

    def slow_prompt_ids(messages):
        entered.set()
        release.wait(20)  # stands for a prompt of megabytes
        finished.set()
        return real(messages)

    monkeypatch.setattr(profile.renderer, "prompt_ids", slow_prompt_ids)
    body = {"model": "tiny-llama", "messages": CHAT, "max_tokens": 1}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/v1/chat/completions", json=body)
        assert entered.wait(20)
        assert client.get("/health").status_code == 200
        assert not finished.is_set()  # /health answered while the prompt was still being tokenized
        release.set()
        assert pending.result(timeout=60).status_code == 200


# --- errors show no insides ----------------------------------------------------------------------------------


def test_framework_errors_are_openai_shaped_and_unexpected_ones_say_nothing(client, settings, monkeypatch):
    assert "Invalid URL" in assert_clean_error(client.get("/v1/nowhere"), 404)["message"]
    response = client.get("/v1/chat/completions")
    assert_clean_error(response, 405)
    assert "POST" in response.headers["allow"]
    bad_json = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert_clean_error(bad_json, 400)
    assert_clean_error(client.get("/v1/files", params={"limit": "many"}), 400)

    def broken() -> list:
        raise RuntimeError(f"cannot read {settings.runs_dir}/secret.yaml")

    monkeypatch.setattr(client.app.state.server.catalog, "all", broken)
    error = assert_clean_error(client.get("/v1/models"), 500, settings.runs_dir)
    assert error["type"] == "server_error" and "secret" not in error["message"]


def test_job_errors_name_no_server_path(settings, tmp_path):
    """A refused (PII) or diverged training run ends the job failed with its error line, paths cut to the run's
    own name or the file id; a traceback is cut to its last line."""
    settings.prepare()
    store = Store(settings.db_path)
    worker = Worker(settings)
    run_dir = settings.runs_dir / "pii-run"
    upload = settings.files_dir / "file-0123456789abcdef01234567"
    logs = {
        "refused": f"error: the data audit found blocking problems; nothing was trained:\n- pii: 3 rows hold personal "
        f"data ({upload}:4)\n(details in {run_dir / 'audit.json'}; `tunesmith data audit` writes the same as HTML)",
        "diverged": "error: training diverged at step 3: the loss is nan; lower train.lr (the last good checkpoint "
        f"is {run_dir}/checkpoints/step-2)",
        "crashed": 'Traceback (most recent call last):\n  File "/usr/lib/python3/site.py", line 1, in <module>\n'
        f"RuntimeError: cannot open {run_dir}/final/model.safetensors",
    }
    for name, text in logs.items():
        job = JobRecord(id=f"ftjob-{name:0<24}"[:30], created_at=0, model="tiny-llama", base="tiny-llama",
                        base_id="tiny-llama", training_file=upload.name, validation_file=None, hyperparameters={},
                        suffix=None, seed=1, status="running", run_name="pii-run")  # fmt: skip
        store.add_job(job)
        log_path = tmp_path / f"{name}.log"
        log_path.write_text(f"$ tunesmith train job.yaml\n{text}\n")
        worker._finish(job, 1 if name != "crashed" else 2, run_dir, log_path, None)  # type: ignore[arg-type]
        failed = store.get_job(job.id)
        assert failed is not None and failed.status == "failed" and failed.error["code"] == "training_failed"
        events = [e.message for e in store.list_events(job.id, None, 10).items]
        for text_out in [failed.error["message"], *events]:
            assert str(settings.runs_dir) not in text_out and "/tmp" not in text_out and "Traceback" not in text_out
    refused = store.get_job(f"ftjob-{'refused':0<24}"[:30])
    assert refused is not None
    assert (
        "pii-run/audit.json" in refused.error["message"]
        and "file-0123456789abcdef01234567:4" in (refused.error["message"])
    )


def test_a_job_cancelled_after_its_training_is_neither_listed_nor_served(tmp_path):
    runs = tmp_path / "runs"
    run = runs / "late-1a2b3c4d"
    (run / "final").mkdir(parents=True)
    (run / "eval").mkdir()
    (run / "config.yaml").write_text("model: {base: tiny-llama}\n")
    (run / "eval" / "tuned.json").write_text("{}")
    (runs / ".serve").mkdir()
    store = Store(runs / ".serve" / "serve.sqlite3")
    catalog = Catalog(runs, [], store.unserved_runs)
    job = JobRecord(id="ftjob-" + "a" * 24, created_at=0, model="tiny-llama", base="tiny-llama", base_id="tiny-llama",
                    training_file="file-" + "0" * 24, validation_file=None, hyperparameters={}, suffix="late", seed=1,
                    status="cancelled", run_name=run.name)  # fmt: skip
    store.add_job(job)
    assert [e.id for e in catalog.runs()] == []
    with pytest.raises(UnknownModel):
        catalog.get(f"ft:tiny-llama:{run.name}")
    store.update_job(job.id, status="succeeded")
    assert [e.id for e in catalog.runs()] == [f"ft:tiny-llama:{run.name}"]
    assert catalog.get(f"ft:tiny-llama:{run.name}").run_dir == run


# --- bodies that break their limits are answered -------------------------------------------------------------


def test_oversized_bodies_without_content_length_get_413_while_streaming(client, tmp_path):
    row = write_chat_data(tmp_path / "rows.jsonl", n=1).read_bytes()
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(2000):  # far past the 20 KB upload limit; the server stops reading long before the end
            sent += len(row)
            yield row

    boundary = "hostile"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--{boundary}\r\n'
            'Content-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n').encode()  # fmt: skip

    def multipart():
        yield head
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/v1/files", content=multipart(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert "content-length" not in response.request.headers
    assert "limit" in assert_clean_error(response, 413)["message"]
    response = client.post("/v1/chat/completions", content=(b"x" * 2**20 for _ in range(8)),
                           headers={"content-type": "application/json"})  # fmt: skip
    assert_clean_error(response, 413)


def test_a_false_content_length_times_out_instead_of_hanging(tmp_path):
    import uvicorn

    settings = ServeSettings(runs_dir=tmp_path / "runs", workers=0, body_timeout_s=0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"model\": ")  # fmt: skip
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                piece = conn.recv(4096)  # a hang would end here with socket.timeout after 10 s
                if not piece:
                    break
                reply += piece
        assert reply.startswith(b"HTTP/1.1 408"), reply
        error = json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
        assert "Content-Length" in error["message"] and error["type"] == "invalid_request_error"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
