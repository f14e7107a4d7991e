"""The real server (`tunesmith serve` in a subprocess) driven by the official openai package: upload a file, run a
fine-tuning job on the tiny model to success, chat with the result (streaming and not), cancel a job, and kill the
server with SIGKILL mid-job, start it again, and see the job resume from its checkpoint and finish."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from served import Server
from tiny_runs import write_chat_data

openai = pytest.importorskip("openai")

# No replay: the untrained tiny model answers the general prompts with nothing.
FAST = ["eval.general=false", "eval.samples=0", "data.max_length=128", "data.replay.fraction=0"]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    server = Server(root / "runs", tiny_model_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def training_file(server, tmp_path_factory) -> str:
    data = write_chat_data(tmp_path_factory.mktemp("data") / "arith.jsonl", n=24)
    with open(data, "rb") as fh:
        uploaded = server.client.files.create(file=fh, purpose="fine-tune")
    assert uploaded.status == "processed" and uploaded.filename == "arith.jsonl"
    return uploaded.id


def wait_for(server: Server, job_id: str, done, timeout_s: float = 120):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        job = server.client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} stuck in {job.status}")


def messages(server: Server, job_id: str) -> list[str]:
    return [e.message for e in server.client.fine_tuning.jobs.list_events(job_id, limit=1000).data][::-1]


@pytest.mark.slow  # a server and a trainer process: minutes on 2 cores
def test_a_job_trains_to_success_and_its_model_chats_at_once(server, training_file):
    client = server.client
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training_file, suffix="arith", seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}},
        extra_body={"overrides": [*FAST, "train.max_steps=3"]},
    )  # fmt: skip
    assert job.status == "validating_files" and job.seed == 3
    seen = set()
    job = wait_for(server, job.id, lambda j: seen.add(j.status) or j.status in ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    assert seen <= {"validating_files", "queued", "running", "succeeded"}
    assert job.fine_tuned_model == f"ft:tiny-llama:arith-{job.id[6:14]}"
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 8 and job.trained_tokens > 0
    log = messages(server, job.id)
    order = ["Created fine-tuning job", "Validating training file", "Files validated", "Fine-tuning job started",
             "Step 1: training loss", "Checkpoint created at step 3", "New fine-tuned model created",
             "The job has successfully completed"]  # fmt: skip
    positions = [next(i for i, m in enumerate(log) if m.startswith(prefix)) for prefix in order]
    assert positions == sorted(positions), log
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    assert any("train_loss" in e.data for e in metrics) and any("valid_loss" in e.data for e in metrics)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints[0].step_number == 3  # newest first
    last = checkpoints[0].metrics
    assert last.train_loss is not None and last.valid_loss is not None and last.valid_mean_token_accuracy is not None
    csv = client.files.content(job.result_files[0]).text
    assert csv.splitlines()[0].startswith("step,train_loss") and len(csv.splitlines()) == 4

    model = job.fine_tuned_model
    assert model in {m.id for m in client.models.list().data}
    ask = [{"role": "user", "content": "what is 2 plus 3?"}]
    answer = client.chat.completions.create(model=model, messages=ask, max_tokens=6, temperature=0)
    assert answer.usage.prompt_tokens > 0 and answer.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model=model, messages=ask, max_tokens=6, temperature=0, stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == answer.choices[0].message.content
    page = client.fine_tuning.jobs.list(limit=1)
    assert page.data[0].id == job.id


@pytest.mark.slow
def test_a_diverging_job_fails_with_the_trainers_reason_and_no_server_path(server, training_file):
    client = server.client
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training_file, suffix="diverge",
        extra_body={"overrides": [*FAST, "train.max_steps=4", "train.weight_decay=1e30"]},
    )  # fmt: skip
    job = wait_for(server, job.id, lambda j: j.status in ("succeeded", "failed", "cancelled"), timeout_s=300)
    assert job.status == "failed" and job.fine_tuned_model is None
    assert "weight_decay" in job.error.message, job.error.message  # what to change, as the trainer said it
    for text in [job.error.message, *messages(server, job.id)]:
        assert str(server.runs_dir) not in text and "Traceback" not in text
    assert f"ft:tiny-llama:diverge-{job.id[6:14]}" not in {m.id for m in client.models.list().data}


@pytest.mark.slow  # a server, a trainer process and a restart
def test_cancel_stops_a_running_job(server, training_file):
    client = server.client
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training_file, extra_body={"overrides": [*FAST, "train.max_steps=100000"]}
    )
    wait_for(server, job.id, lambda j: j.status == "running")
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    deadline = time.time() + 30
    while time.time() < deadline and not any(m.startswith("Training stopped") for m in messages(server, job.id)):
        time.sleep(0.3)
    assert any(m.startswith("Training stopped") for m in messages(server, job.id))
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


@pytest.mark.slow  # a server, a trainer process and a restart
def test_killed_server_resumes_the_job_from_its_checkpoint(server, training_file):
    client = server.client
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training_file, suffix="durable",
        extra_body={"overrides": [*FAST, "train.max_steps=20", "train.save_every=3", "train.eval_every=0"]},
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not any(m.startswith("Checkpoint created") for m in messages(server, job.id)):
        time.sleep(0.2)
    before = messages(server, job.id)
    assert any(m.startswith("Checkpoint created") for m in before)
    server.kill()  # SIGKILL: no shutdown code runs; the worker and its training follow it down

    server.start()
    job = wait_for(server, job.id, lambda j: j.status in ("succeeded", "failed", "cancelled"), timeout_s=150)
    assert job.status == "succeeded", job.error
    after = messages(server, job.id)
    assert after[: len(before)] == before  # nothing logged before the kill was lost
    assert any(m.startswith("Resuming training from checkpoint step") for m in after), after
    assert server.client.files.retrieve(training_file).status == "processed"
    reply = client.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=3)  # fmt: skip
    assert reply.choices[0].message.role == "assistant"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc")
def test_a_killed_worker_is_restarted_and_resumes_the_job(server, training_file):
    client = server.client
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training_file,
        extra_body={"overrides": [*FAST, "train.max_steps=20", "train.save_every=3", "train.eval_every=0"]},
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not any(m.startswith("Checkpoint created") for m in messages(server, job.id)):
        time.sleep(0.2)
    assert server.proc is not None
    (worker,) = _children(server.proc.pid)
    os.kill(worker, signal.SIGKILL)  # the server lives on; its supervisor starts a new worker
    job = wait_for(server, job.id, lambda j: j.status in ("succeeded", "failed", "cancelled"), timeout_s=150)
    assert job.status == "succeeded", job.error
    assert any(m.startswith("Resuming training from checkpoint step") for m in messages(server, job.id))
    assert worker not in _children(server.proc.pid)


@pytest.mark.slow
def test_a_dpo_job_trains_on_openai_preference_rows_and_a_chat_file_is_refused(server, training_file, tmp_path):
    from test_preference import openai_rows

    client = server.client
    with open(openai_rows(tmp_path / "prefs.jsonl", n=16), "rb") as fh:
        prefs = client.files.create(file=fh, purpose="fine-tune")
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 4}}}
    with pytest.raises(openai.BadRequestError, match="holds chat rows; method dpo trains on preference rows"):
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file, method=dpo)
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=prefs.id, method=dpo, suffix="prefs",
        extra_body={"overrides": [*FAST, "train.max_steps=2"]},
    )  # fmt: skip
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    job = wait_for(server, job.id, lambda j: j.status in ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    run = server.runs_dir / f"prefs-{job.id[6:14]}"
    saved = (run / "config.yaml").read_text(encoding="utf-8")
    assert "type: dpo" in saved and "beta: 0.2" in saved
    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "what is 2 plus 3?"}], max_tokens=4
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
