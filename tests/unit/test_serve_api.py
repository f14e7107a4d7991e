"""The server's routes in-process (FastAPI's TestClient, no job worker): models and LoRA adapters sharing one base,
chat, completions and streaming, classifications, API keys, upload checks and limits, ids that try to leave the
runs directory, and the jobs API's bookkeeping. The real server with the openai package: test_serve_jobs.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file
from test_classify import head_config, write_toy
from tiny_runs import tiny_config, write_chat_data, write_pair_data

from tunesmith.config import build_config
from tunesmith.recipes.train import run_training
from tunesmith.serve.app import create_app
from tunesmith.serve.paths import UnsafePath, inside, run_path, upload_path
from tunesmith.serve.settings import ServeSettings

quiet = {"log": lambda *_: None}
CHAT = [{"role": "user", "content": "what is 2 plus 3?"}]


def _lively_adapter(final: Path, seed: int) -> None:
    """Give a trained adapter large random B matrices, so that each run answers visibly unlike its base."""
    path = final / "adapter_model.safetensors"
    weights = load_file(path)
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in weights.items():
        if "lora_B" in name:
            weights[name] = torch.randn(tensor.shape, generator=generator) * 0.5
    save_file(weights, path)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> Path:
    """A runs directory with two LoRA chat runs of the tiny base, one classification-head run and a reward model."""
    root = tmp_path_factory.mktemp("serve")
    runs_dir = root / "runs"
    data = write_chat_data(root / "train.jsonl", n=24)
    for i, name in enumerate(("alpha", "beta")):
        cfg = tiny_config(tiny_model_dir, data, runs_dir / name, max_steps=1)
        cfg["eval"]["general"] = False
        run_training(build_config(cfg), **quiet)
        _lively_adapter(runs_dir / name / "final", i)
    head = head_config(tiny_model_dir, write_toy(root / "toy.jsonl", n=32), runs_dir / "moderation", max_steps=1)
    head["eval"]["general"] = False
    run_training(build_config(head), **quiet)
    pairs = tiny_config(tiny_model_dir, write_pair_data(root / "pairs.jsonl", n=16), runs_dir / "judge", max_steps=2)
    pairs["method"] = {"type": "reward_model"}
    run_training(build_config(pairs), **quiet)
    return runs_dir


@pytest.fixture(scope="module")
def client(runs, tiny_model_dir):
    settings = ServeSettings(
        runs_dir=runs, bases=[str(tiny_model_dir)], workers=0, max_upload_bytes=20_000, max_rows=50
    )
    with TestClient(create_app(settings)) as c:
        yield c


def chat(client: TestClient, model: str, **extra) -> dict:
    body = {"model": model, "messages": CHAT, "max_tokens": 8, "temperature": 0, **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- models ----------------------------------------------------------------------------------------------------


def test_models_lists_the_bases_and_every_finished_run(client):
    ids = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert {"tiny-llama", "ft:tiny-llama:alpha", "ft:tiny-llama:beta", "ft:tiny-llama:moderation"} <= set(ids)
    assert ids["ft:tiny-llama:moderation"]["task"] == "classification"
    assert client.get("/v1/models/ft:tiny-llama:alpha").json()["owned_by"] == "user"
    assert client.get("/v1/models/ft:other-base:alpha").status_code == 404


def test_lora_runs_share_one_loaded_base_and_answer_as_peft_alone_would(client, runs, tiny_model_dir):
    from peft import AutoPeftModelForCausalLM

    from tunesmith.data.templates import Renderer
    from tunesmith.models.loading import load_tokenizer

    answers = {
        m: chat(client, m)["choices"][0]["message"]["content"]
        for m in ("ft:tiny-llama:alpha", "ft:tiny-llama:beta", "tiny-llama")
    }
    engines = client.app.state.server.engines
    assert len(engines._loaded) == 1  # one base in memory ...
    (loaded,) = engines._loaded.values()
    assert len(loaded.adapters) == 2  # ... carrying both runs
    assert len(set(answers.values())) == 3  # and each model answers as itself
    tokenizer = load_tokenizer(runs / "alpha" / "final")
    renderer = Renderer(tokenizer)
    for name in ("alpha", "beta"):
        model = AutoPeftModelForCausalLM.from_pretrained(runs / name / "final").eval()
        prompt = renderer.prompt_ids(CHAT)
        out = model.generate(
            input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=renderer.stop_ids()
        )
        assert answers[f"ft:tiny-llama:{name}"] == tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True)


def test_serve_dtype_bfloat16_loads_bf16_weights_and_answers_as_peft_in_bf16(runs, tiny_model_dir):
    """`serve --dtype bfloat16`: the base is held in bf16 (the adapter on it as peft keeps it), and a greedy answer is
    the one peft's own generate() gives in bf16."""
    from peft import AutoPeftModelForCausalLM

    from tunesmith.data.templates import Renderer
    from tunesmith.models.loading import load_tokenizer

    settings = ServeSettings(runs_dir=runs, bases=[str(tiny_model_dir)], workers=0, dtype="bfloat16")
    with TestClient(create_app(settings)) as c:
        answer = chat(c, "ft:tiny-llama:alpha", max_tokens=12)["choices"][0]["message"]["content"]
        (loaded,) = c.app.state.server.engines._loaded.values()
        base_dtypes = {p.dtype for n, p in loaded.model.named_parameters() if "lora_" not in n}
    assert base_dtypes == {torch.bfloat16}
    tokenizer = load_tokenizer(runs / "alpha" / "final")
    renderer = Renderer(tokenizer)
    model = AutoPeftModelForCausalLM.from_pretrained(runs / "alpha" / "final", dtype=torch.bfloat16).eval()
    prompt = renderer.prompt_ids(CHAT)
    out = model.generate(
        input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=renderer.stop_ids()
    )
    assert answer == tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True)


def test_chat_stream_sends_the_same_answer_in_openai_chunks(client):
    whole = chat(client, "ft:tiny-llama:alpha")
    body = {"model": "ft:tiny-llama:alpha", "messages": CHAT, "max_tokens": 8, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == [whole["choices"][0]["finish_reason"]]
    assert chunks[-1]["usage"] == whole["usage"] and chunks[-1]["choices"] == []


def test_completions_n_seed_stop_and_usage(client):
    body = {"model": "tiny-llama", "prompt": ["The quick brown", "Hello there"], "max_tokens": 6, "n": 2,
            "temperature": 1.0, "seed": 11}  # fmt: skip
    first = client.post("/v1/completions", json=body).json()
    again = client.post("/v1/completions", json=body).json()
    assert [c["index"] for c in first["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]  # seeded: repeatable
    usage = first["usage"]
    assert (
        usage["completion_tokens"] <= 4 * 6
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    greedy = client.post("/v1/completions", json={"model": "ft:tiny-llama:beta", "prompt": "The", "max_tokens": 8,
                                                  "temperature": 0}).json()["choices"][0]  # fmt: skip
    if len(greedy["text"]) > 3:
        stop = greedy["text"][2:4]
        cut = client.post("/v1/completions", json={"model": "ft:tiny-llama:beta", "prompt": "The", "max_tokens": 8,
                                                   "temperature": 0, "stop": stop}).json()["choices"][0]  # fmt: skip
        assert cut["text"] == greedy["text"][: greedy["text"].index(stop)] and cut["finish_reason"] == "stop"


def test_request_errors_are_openai_shaped_4xx(client):
    r = client.post("/v1/chat/completions", json={"model": "nope", "messages": CHAT})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = client.post("/v1/chat/completions", json={"model": "tiny-llama", "messages": CHAT, "max_tokens": 10**6})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = client.post("/v1/chat/completions", json={"model": "tiny-llama", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/chat/completions", json={"model": "ft:tiny-llama:moderation", "messages": CHAT})
    assert r.status_code == 400 and "/v1/classifications" in r.json()["error"]["message"]


def test_classifications_answer_with_labels_and_probabilities(client, runs):
    from tunesmith.eval.predict import load_head

    texts = ["reset the password page", "hello thanks you"]
    r = client.post("/v1/classifications", json={"model": "ft:tiny-llama:moderation", "input": texts})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    expected = load_head(runs / "moderation").predict(texts)
    assert [d["label"] for d in data] == [p.label for p in expected]
    for d, p in zip(data, expected, strict=True):
        assert d["probability"] == pytest.approx(p.probability, abs=1e-5)
        assert set(d["probabilities"]) == {"account", "friendly"}
    assert r.json()["usage"]["prompt_tokens"] > 0
    r = client.post("/v1/classifications", json={"model": "ft:tiny-llama:alpha", "input": "x"})
    assert r.status_code == 400


def test_rewards_score_answers_as_the_run_does_and_other_runs_are_sent_elsewhere(client, runs):
    from tunesmith.eval.reward import load_reward_model

    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, *CHAT]
    items = [
        {"prompt": "what is 2 plus 3?", "answer": "the answer is 5."},
        {"prompt": "what is 2 plus 3?", "answer": "it is 9, i think."},
        {"prompt": conversation, "answer": "the answer is 5."},
    ]
    r = client.post("/v1/rewards", json={"model": "ft:tiny-llama:judge", "input": items})
    assert r.status_code == 200, r.text
    scorer = load_reward_model(runs / "judge")
    expected = scorer.score([i["prompt"] for i in items], [i["answer"] for i in items])
    assert [d["score"] for d in r.json()["data"]] == pytest.approx(expected, abs=1e-5)
    assert [d["index"] for d in r.json()["data"]] == [0, 1, 2] and r.json()["usage"]["prompt_tokens"] > 0
    assert {"id": "ft:tiny-llama:judge", "task": "reward"}.items() <= next(
        m for m in client.get("/v1/models").json()["data"] if m["id"] == "ft:tiny-llama:judge"
    ).items()
    for model, route in (
        ("ft:tiny-llama:alpha", "/v1/chat/completions"),
        ("ft:tiny-llama:moderation", "/v1/classifications"),
    ):
        r = client.post("/v1/rewards", json={"model": model, "input": items[:1]})
        assert r.status_code == 400 and route in r.json()["error"]["message"]
    r = client.post("/v1/classifications", json={"model": "ft:tiny-llama:judge", "input": "x"})
    assert r.status_code == 400 and "/v1/rewards" in r.json()["error"]["message"]
    bad = {"prompt": [{"role": "assistant", "content": "hi"}], "answer": "x"}
    r = client.post("/v1/rewards", json={"model": "ft:tiny-llama:judge", "input": [bad]})
    assert r.status_code == 400 and "end with the user's message" in r.json()["error"]["message"]


def test_openapi_schema_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "reward-model run" in paths["/v1/rewards"]["post"]["description"]
    for route in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/classifications", "/v1/files",
                  "/v1/files/{file_id}", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job_id}/cancel",
                  "/v1/fine_tuning/jobs/{job_id}/events", "/v1/fine_tuning/jobs/{job_id}/checkpoints"):  # fmt: skip
        assert route in paths, route


# --- security --------------------------------------------------------------------------------------------------


def test_api_key_guards_every_route_but_health(runs, tmp_path):
    key = "k" * 32
    settings = ServeSettings(runs_dir=tmp_path / "runs", api_keys=[key], workers=0)
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        for method, path in (("get", "/v1/models"), ("get", "/openapi.json"), ("get", "/v1/fine_tuning/jobs"),
                             ("post", "/v1/chat/completions"), ("get", "/docs")):  # fmt: skip
            assert getattr(c, method)(path).status_code == 401, path
            assert getattr(c, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


def test_serve_refuses_a_public_host_without_keys_and_short_keys(tmp_path):
    from tunesmith.errors import TunesmithError
    from tunesmith.serve.command import build_settings

    args = dict(runs_dir=str(tmp_path), port=1, models=[], trust_remote_code=False, workers=0, max_upload_mb=1,
                max_rows=10, max_batch=1, max_tokens=1)  # fmt: skip
    with pytest.raises(TunesmithError, match="api-key-file"):
        build_settings(host="0.0.0.0", api_key_file=None, **args)
    short = tmp_path / "keys.txt"
    short.write_text("abc\n")
    with pytest.raises(TunesmithError, match="16 characters"):
        build_settings(host="127.0.0.1", api_key_file=str(short), **args)
    binary = tmp_path / "keys.bin"
    binary.write_bytes(b"0123456789abcdef\xff\xfe\n")  # not UTF-8: one clear line, not a traceback
    with pytest.raises(TunesmithError, match="not UTF-8 text"):
        build_settings(host="127.0.0.1", api_key_file=str(binary), **args)
    assert build_settings(host="127.0.0.1", api_key_file=None, **args).host == "127.0.0.1"


def upload(client: TestClient, content: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"):
    return client.post("/v1/files", files={"file": (name, content, "application/jsonl")}, data={"purpose": purpose})


def test_uploads_are_checked_row_by_row_and_limited(client, tmp_path):
    good = write_chat_data(tmp_path / "good.jsonl", n=4).read_bytes()
    r = upload(client, good)
    assert r.status_code == 200 and r.json()["status"] == "processed"
    bad = good + b'{"messages": [{"role": "user", "content": "no answer"}]}\n{not json\n'
    r = upload(client, bad)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "train.jsonl:5: messages" in message and "train.jsonl:6:" in message
    assert upload(client, b'{"text": "plain text"}\n').status_code == 400  # not a fine-tuning format
    assert upload(client, good, purpose="assistants").status_code == 400
    r = upload(client, b"\n".join([good.splitlines()[0]] * 51) + b"\n")
    assert r.status_code == 400 and "at most 50" in r.json()["error"]["message"]
    r = upload(client, good * 200)  # ~200 KB, over the 20 KB limit
    assert r.status_code == 413
    r = client.post("/v1/chat/completions", content=b"x" * (5 * 2**20), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_ids_and_names_never_reach_outside_the_runs_directory(client, runs, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd").write_text("root")
    for path in ("/v1/files/..%2F..%2Fsecret%2Fpasswd", "/v1/files/../../etc/passwd", "/v1/files/file-..",
                 "/v1/files/file-0123456789abcdef01234567%2F..", "/v1/files/.serve.sqlite3/content",
                 "/v1/fine_tuning/jobs/..%2F..%2Fserve.sqlite3", "/v1/fine_tuning/jobs/ftjob-../events"):  # fmt: skip
        assert client.get(path).status_code == 404, path
    assert client.delete("/v1/files/..%2Fserve.sqlite3").status_code == 404
    for model in ("ft:tiny-llama:../alpha", "ft:tiny-llama:..", "ft:tiny-llama:/etc", "ft:tiny-llama:.serve",
                  f"ft:tiny-llama:{outside}", "../runs/alpha", str(runs / "alpha")):  # fmt: skip
        r = client.post("/v1/chat/completions", json={"model": model, "messages": CHAT})
        assert r.status_code == 404, model
    # a symlink planted in the runs directory that leads to a run elsewhere is neither listed nor served
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(runs / "alpha", elsewhere)
    (runs / "linked").symlink_to(elsewhere)
    try:
        assert "ft:tiny-llama:linked" not in {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert (
            client.post("/v1/chat/completions", json={"model": "ft:tiny-llama:linked", "messages": CHAT}).status_code
            == 404
        )
    finally:
        (runs / "linked").unlink()
    # an upload's own name is kept as a label only; the stored file is named by its id inside the files folder
    r = upload(client, write_chat_data(tmp_path / "x.jsonl", n=3).read_bytes(), name="../../escape.jsonl")
    assert r.status_code == 200 and r.json()["filename"] == "escape.jsonl"
    assert not (runs.parent / "escape.jsonl").exists() and not (runs / "escape.jsonl").exists()
    r = client.post(
        "/v1/fine_tuning/jobs", json={"model": "tiny-llama", "training_file": r.json()["id"], "suffix": "../x"}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "suffix"


def test_path_helpers_refuse_escapes(tmp_path):
    for name in ("..", ".", "a/b", "../x", "", "a\x00b", "/etc"):
        with pytest.raises(UnsafePath):
            inside(tmp_path, name)
    (tmp_path / "out").symlink_to("/")
    with pytest.raises(UnsafePath):
        inside(tmp_path, "out")
    for bad in ("file-../../x", "file-0123", "FILE-0123456789abcdef01234567"):
        with pytest.raises(UnsafePath):
            upload_path(tmp_path, bad)
    with pytest.raises(UnsafePath):
        run_path(tmp_path, "a..b")
    assert upload_path(tmp_path, "file-0123456789abcdef01234567").parent == tmp_path.resolve()


def test_pickle_weights_are_refused(client, runs):
    run = runs / "pickled"
    shutil.copytree(runs / "beta", run)
    (run / "final" / "adapter_model.safetensors").rename(run / "final" / "adapter_model.bin")
    try:
        r = client.post("/v1/chat/completions", json={"model": "ft:tiny-llama:pickled", "messages": CHAT})
        assert r.status_code == 400 and "safetensors" in r.json()["error"]["message"]
    finally:
        shutil.rmtree(run)


# --- jobs bookkeeping (no worker here: jobs stay where the route put them) -------------------------------------


def test_job_requests_are_checked_paged_and_cancelled(client, tmp_path):
    file_id = upload(client, write_chat_data(tmp_path / "t.jsonl", n=8).read_bytes()).json()["id"]

    def post(**body):
        return client.post("/v1/fine_tuning/jobs", json={"training_file": file_id, "model": "tiny-llama", **body})

    assert post(model="gpt-4o").json()["error"]["param"] == "model"
    assert post(training_file="file-000000000000000000000000").json()["error"]["param"] == "training_file"
    assert post(overrides=["output.dir=/tmp/x"]).status_code == 400
    assert post(overrides=["model.base=/etc"]).status_code == 400
    assert post(overrides=["train.lr=1"]).status_code == 400  # set through learning_rate_multiplier
    assert post(method={"type": "dpo"}).status_code == 400
    assert post(hyperparameters={"n_epochs": 0}).status_code == 400
    ids = []
    for i in range(3):
        job = post(
            suffix=f"s{i}", seed=5, method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
        )
        assert job.status_code == 200, job.text
        assert job.json()["status"] == "validating_files" and job.json()["hyperparameters"]["n_epochs"] == 2
        ids.append(job.json()["id"])
    page = client.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = client.get("/v1/fine_tuning/jobs", params={"limit": 2, "after": page["data"][-1]["id"]}).json()
    assert rest["data"][0]["id"] == ids[0]
    assert client.delete(f"/v1/files/{file_id}").status_code == 409  # unfinished jobs train on it
    cancelled = client.post(f"/v1/fine_tuning/jobs/{ids[0]}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.post(f"/v1/fine_tuning/jobs/{ids[0]}/cancel").status_code == 400
    events = client.get(f"/v1/fine_tuning/jobs/{ids[0]}/events").json()["data"]
    assert [e["message"] for e in events][:2] == ["Job cancelled", f"Created fine-tuning job: {ids[0]}"]
    for job_id in ids[1:]:
        client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
    assert client.get(f"/v1/files/{file_id}").status_code == 404
