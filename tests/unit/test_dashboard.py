"""The dashboard of `tunesmith serve` in-process (FastAPI's TestClient): the page and its assets, the runs table's
records, one run's record and its live metrics stream, compare with the config diff, documents and final/ as a zip,
the Data page's row errors and audit, and the login with its cookie. Real runs of the tiny Llama."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.recipes.train import run_training
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings

quiet = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> Path:
    """Two finished LoRA runs that differ in learning rate, and a third whose final/ is gone (a stopped run)."""
    root = tmp_path_factory.mktemp("dash")
    runs_dir = root / "runs"
    data = write_chat_data(root / "train.jsonl", n=24)
    for name, lr in (("slow", 1e-3), ("fast", 5e-2), ("broken", 1e-2)):
        cfg = tiny_config(tiny_model_dir, data, runs_dir / name, max_steps=3, lr=lr)
        run_training(build_config(cfg), **quiet)
    shutil.rmtree(runs_dir / "broken" / "final")
    (runs_dir / "notes").mkdir()  # a folder tunesmith did not make: not a run
    return runs_dir


@pytest.fixture(scope="module")
def client(runs, tiny_model_dir):
    with TestClient(create_app(ServeSettings(runs_dir=runs, bases=[str(tiny_model_dir)], workers=0))) as c:
        yield c


def test_the_page_and_its_assets_come_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/dashboard/assets/dashboard.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere: it works offline
    script = client.get("/dashboard/assets/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text and "https://" not in script.text
    assert client.get("/dashboard/assets/../app.py").status_code == 404


def test_the_runs_table_has_every_run_with_its_headline(client):
    rows = {r["name"]: r for r in client.get("/dashboard/api/runs").json()["runs"]}
    assert set(rows) == {"slow", "fast", "broken"}
    assert rows["fast"]["status"] == "succeeded" and rows["broken"]["status"] == "stopped"
    fast = rows["fast"]
    assert fast["method"] == "sft" and fast["adapter"] == "lora" and fast["data"][0].endswith("train.jsonl")
    tuned = json.loads((Path(client.app.state.server.settings.runs_dir) / "fast/eval/tuned.json").read_text())
    base = json.loads((Path(client.app.state.server.settings.runs_dir) / "fast/eval/base.json").read_text())
    assert fast["headline"]["metric"] == "held-out loss"
    assert fast["headline"]["value"] == pytest.approx(tuned["metrics"]["loss"])
    assert fast["headline"]["gain"] == pytest.approx(base["metrics"]["loss"] - tuned["metrics"]["loss"])
    assert fast["step"] == 3 and fast["max_steps"] == 3 and fast["train_seconds"] > 0


def test_a_run_record_and_its_metrics_stream(client, runs):
    detail = client.get("/dashboard/api/runs/fast").json()
    lines = (runs / "fast" / "metrics.jsonl").read_text().splitlines()
    assert (
        len(detail["metrics"]) == len(lines) and detail["metrics_bytes"] == (runs / "fast/metrics.jsonl").stat().st_size
    )
    assert {"report", "card", "config"} <= set(detail["documents"]) and detail["final"]
    assert detail["config"]["train"]["lr"] == 5e-2 and {"base", "tuned"} <= set(detail["eval"])
    # A finished run's stream replays metrics.jsonl from the offset given, then says the run's status and ends.
    with client.stream("GET", "/dashboard/api/runs/fast/stream?offset=0") as response:
        text = "".join(response.iter_text())
    events = [e for e in text.split("\n\n") if e.startswith("id: ")]
    assert [json.loads(e.split("data: ", 1)[1]) for e in events] == [json.loads(line) for line in lines]
    assert 'event: status\ndata: {"status": "succeeded"}' in text
    offset = len(lines[0].encode()) + 1
    with client.stream("GET", f"/dashboard/api/runs/fast/stream?offset={offset}") as response:
        rest = [e for e in "".join(response.iter_text()).split("\n\n") if e.startswith("id: ")]
    assert len(rest) == len(lines) - 1


def test_compare_overlays_runs_and_names_their_config_differences(client):
    data = client.get("/dashboard/api/compare?run=slow&run=fast").json()
    assert [r["name"] for r in data["runs"]] == ["slow", "fast"]
    diff = {d["key"]: d["values"] for d in data["config_diff"]}
    assert diff["train.lr"] == [1e-3, 5e-2] and diff["output.dir"][0].endswith("slow")
    assert "train.max_steps" not in diff  # the same in both
    assert client.get("/dashboard/api/compare?run=slow").status_code == 400


def test_documents_and_final_download(client, runs):
    report = client.get("/dashboard/runs/fast/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    card = client.get("/dashboard/runs/fast/card")
    assert card.text == (runs / "fast" / "MODEL_CARD.md").read_text()
    archive = zipfile.ZipFile(io.BytesIO(client.get("/dashboard/runs/fast/final.zip").content))
    names = set(archive.namelist())
    assert "fast/final/adapter_config.json" in names
    assert archive.read("fast/final/adapter_config.json") == (runs / "fast/final/adapter_config.json").read_bytes()
    assert client.get("/dashboard/runs/broken/final.zip").status_code == 404
    for bad in ("/dashboard/runs/fast/secrets", "/dashboard/runs/notes/config", "/dashboard/api/runs/..%2Fslow"):
        response = client.get(bad)
        assert response.status_code == 404 and "error" in response.json(), bad


def test_the_data_page_names_each_bad_row_and_audits_the_rest(client):
    rows = [
        {"messages": [{"role": "user", "content": "what is 2 plus 2?"}, {"role": "assistant", "content": "4"}]},
        {
            "messages": [
                {"role": "user", "content": "my email is jane.doe@example.com"},
                {"role": "assistant", "content": "ok"},
            ]
        },
        {"messages": [{"role": "user", "content": "hi"}]},  # no assistant turn
        {"messages": [{"role": "user", "content": "what is 2 plus 2?"}, {"role": "assistant", "content": "4"}]},
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows) + "{not json\n"
    result = client.post("/dashboard/api/data/check", files={"file": ("chats.jsonl", text.encode())}).json()
    assert result["rows"] == 5 and result["valid"] == 3 and result["error_count"] == 2
    assert [e["where"] for e in result["errors"]] == ["chats.jsonl:3", "chats.jsonl:5"]
    assert all(e["field"] and e["reason"] for e in result["errors"])
    audit = result["audit"]
    assert audit["privacy"]["rows"] == 1 and "EMAIL" in audit["privacy"]["per_kind"]
    assert audit["duplicates"]["train"]["exact_rows"] == 1 and audit["files"][0]["path"] == "chats.jsonl"
    assert not list(Path(client.app.state.server.settings.files_dir).iterdir())  # nothing kept


def test_the_new_job_form_shows_the_configs_help(client):
    help = client.get("/dashboard/api/config-help").json()
    assert help["adapter.r"] == "LoRA rank." and help["train.max_steps"].startswith("Optimizer steps")
    assert "default LoRA learning rate" in help["hyperparameters.learning_rate_multiplier"]


def test_with_api_keys_the_dashboard_asks_for_one_and_keeps_it_in_a_strict_cookie(runs, tiny_model_dir):
    settings = ServeSettings(runs_dir=runs, bases=[str(tiny_model_dir)], workers=0, api_keys=["s3cret"])
    with TestClient(create_app(settings)) as client:
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert client.get("/dashboard/api/runs").status_code == 401
        assert (
            client.get("/login").status_code == 200 and client.get("/dashboard/assets/dashboard.css").status_code == 200
        )
        wrong = client.post("/login", data={"key": "guess"}, follow_redirects=False)
        assert (
            wrong.status_code == 401 and "not one of this server's" in wrong.text and "set-cookie" not in wrong.headers
        )
        right = client.post("/login", data={"key": "s3cret"}, follow_redirects=False)
        cookie = right.headers["set-cookie"]
        assert right.status_code == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert client.get("/dashboard/api/runs").status_code == 200  # the cookie jar sends it
        assert client.get("/v1/models").status_code == 200  # the page's API calls go through with it too
        client.post("/logout", follow_redirects=False)
        client.cookies.clear()
        assert client.get("/dashboard/api/runs").status_code == 401


def test_selections_and_sweeps_are_listed_with_their_pages(client, runs):
    study = runs / "pick-base"
    study.mkdir(exist_ok=True)
    (study / "select.json").write_text(json.dumps({"candidates": [{"base": "a"}, {"base": "b"}], "winner": "b",
                                                   "reason": "best accuracy"}))  # fmt: skip
    (study / "select.html").write_text("<html>the select table</html>")
    listed = client.get("/dashboard/api/studies").json()["studies"]
    assert listed == [{"name": "pick-base", "kind": "select", "chosen": "winner b of a, b: best accuracy"}]
    assert client.get("/dashboard/studies/pick-base/select").text == "<html>the select table</html>"
    assert client.get("/dashboard/studies/pick-base/sweep").status_code == 404
    assert client.get("/dashboard/studies/..%2Fetc/select").status_code == 404
