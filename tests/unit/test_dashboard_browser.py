"""The dashboard in a real browser: Chromium from the system's packages driven by Playwright, against `tunesmith
serve` in a subprocess with an API key and the tiny Llama. Log in, upload a file with a bad row and see it named,
launch a job and watch its curve grow until it succeeds, compare two runs, chat in the playground. A screenshot of
each page goes to test-artifacts/dashboard/ (TUNESMITH_ARTIFACTS overrides the folder).

Skipped, saying why, where Chromium or Playwright is not installed (`make test` installs both)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from served import Server
from tiny_runs import write_chat_data

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (make test installs Debian's chromium)")

KEY = "dashboard-test-key-0123"
FAST = "eval.general=false\neval.samples=0\ndata.replay.fraction=0\ndata.max_length=128"
ARTIFACTS = Path(os.environ.get("TUNESMITH_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")) / "dashboard"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("browser") / "runs", tiny_model_dir, api_key=KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def launch(page, data: Path, steps: int, lr_multiplier: str, suffix: str) -> None:
    page.goto(page.url.split("#")[0] + "#/new")
    page.wait_for_selector("#job-form")
    page.select_option("#job-model", "tiny-llama")
    page.set_input_files("#job-file", str(data))
    page.fill("#train-max_steps", str(steps))
    page.fill("#hp-learning_rate_multiplier", lr_multiplier)
    page.fill("#job-suffix", suffix)
    page.fill("#job-extra", FAST)
    page.click("#job-launch")


def finished(page) -> None:
    """Wait for the watched job to end, and say how when it did not succeed."""
    page.wait_for_selector("#job-watch .status.succeeded, #job-watch .status.failed, #job-watch .status.cancelled",
                           timeout=240_000)  # fmt: skip
    assert page.locator("#job-watch .status.succeeded").count() == 1, page.inner_text("#job-watch")


def test_the_dashboard_end_to_end(server, page, tmp_path):
    # Log in: the page asks for the key first and keeps it in a cookie.
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    page.fill("#key", "wrong")
    page.click("#login")
    assert "not one of this server's" in page.inner_text("#error")
    page.fill("#key", KEY)
    page.click("#login")
    page.wait_for_selector("h1:has-text('Runs')")
    shot(page, "1-runs-empty")

    # Data: a file with a bad row is named row by row, before anything trains.
    good = write_chat_data(tmp_path / "arith.jsonl", n=24)
    bad = tmp_path / "chats.jsonl"
    rows = good.read_text().splitlines()
    bad.write_text("\n".join([rows[0], rows[1], json.dumps({"messages": [{"role": "user", "content": "hi"}]})]) + "\n")
    page.click("a[data-page=data]")
    page.set_input_files("#data-file", str(bad))
    page.click("#data-form button")
    page.wait_for_selector("#row-errors")
    assert "chats.jsonl:3" in page.inner_text("#row-errors")
    assert "1 with errors" in page.inner_text("#data-summary")
    shot(page, "2-data")

    # New job: launch on the tiny model, watch its loss curve grow on the run page, to success.
    launch(page, good, 6, "25", "fast")
    page.wait_for_selector("#job-watch .status")
    shot(page, "3-new-job")
    finished(page)
    page.click("#job-run")
    page.wait_for_selector("#loss-chart svg")
    path = page.get_attribute("#loss-chart path[data-series='train loss']", "d")
    assert path.count("L") == 5  # six steps: one move, five lines
    shot(page, "4-run")

    # A second job with another learning rate, then both compared: curves overlaid, the config difference named.
    launch(page, good, 3, "5", "slow")
    finished(page)
    page.goto(server.url + "/#/runs")
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs tbody tr").count() == 2
    page.locator(".pick").nth(0).check()
    page.locator(".pick").nth(1).check()
    page.click("#compare-selected")
    page.wait_for_selector("#config-diff")
    diff = page.inner_text("#config-diff")
    assert "train.lr" in diff and "0.005" in diff and "0.001" in diff
    assert page.locator("path[data-series]").count() >= 4  # two runs x (train, held-out)
    shot(page, "5-compare")

    # Playground: the base and a tuned model answer the same prompt side by side, streamed.
    page.click("a[data-page=playground]")
    page.wait_for_selector("#pg-form")
    page.select_option("#pg-left", "tiny-llama")
    page.fill("#pg-prompt", "what is 2 plus 3?")
    page.click("#pg-send")
    page.wait_for_selector("#pg-left-answer[data-done=true]")
    page.wait_for_selector("#pg-right-answer[data-done=true]")
    assert page.inner_text("#pg-left-name") == "tiny-llama" and page.inner_text("#pg-right-name").startswith("ft:")
    shot(page, "6-playground")


def test_the_run_page_streams_a_curve_while_it_grows(server, page, tmp_path):
    """Open a run while its job trains: points arrive over server-sent events, without reloading; then cancel it."""
    good = write_chat_data(tmp_path / "grow.jsonl", n=48)
    page.goto(server.url + "/")
    if page.url.endswith("/login"):  # run on its own, without the first test's login
        page.fill("#key", KEY)
        page.click("#login")
        page.wait_for_selector("h1:has-text('Runs')")
    launch(page, good, 300, "20", "grow")
    page.wait_for_function("() => document.querySelector('#job-watch .status')?.textContent === 'running'")
    run = None
    for _ in range(1200):  # the run folder appears once training starts, its first step after the base's evaluation
        runs = page.evaluate("fetch('/dashboard/api/runs').then(r => r.json())")["runs"]
        run = next((r["name"] for r in runs if r["name"].startswith("grow-") and r.get("step")), None)
        if run:
            break
        page.wait_for_timeout(200)
    assert run, "the job's run never showed a step"
    page.goto(f"{server.url}/#/run/{run}")
    page.wait_for_selector("#loss-chart svg")
    count = "() => (document.querySelector(\"#loss-chart path[data-series='train loss']\")?.getAttribute('d') || '')"
    first = page.evaluate(f"({count})().split('L').length")
    page.wait_for_function(f"() => ({count})().split('L').length > {first}", timeout=180_000)
    shot(page, "7-run-live")
    page.click("#run-cancel")  # and the job stops
    page.wait_for_selector("#run-job-status .status.cancelled")
    jobs = page.evaluate("fetch('/v1/fine_tuning/jobs').then(r => r.json())")["data"]
    assert [j["status"] for j in jobs if j["fine_tuned_model"] is None and j["status"] != "succeeded"] == ["cancelled"]
