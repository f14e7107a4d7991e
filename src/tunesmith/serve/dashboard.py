"""The dashboard at / of `tunesmith serve`: runs, a run (live curves), compare, data, new job, playground. One page
and its script and style, all in the package (no CDN: it works offline); the page talks to the same API as any
client (/v1/...) plus the read-only routes below.

    GET  /                                  the page (a login page first when the server has API keys)
    GET  /login   POST /login   POST /logout    the key, kept in an HttpOnly, SameSite=Strict cookie
    GET  /dashboard/assets/{name}           dashboard.js, dashboard.css
    GET  /dashboard/api/runs                every run folder and job: status, base, method, data, headline, forgetting
    GET  /dashboard/api/runs/{run}          one run's config, metrics.jsonl records, eval records, documents
    GET  /dashboard/api/runs/{run}/stream   metrics.jsonl as server-sent events while the run trains
    GET  /dashboard/api/compare?run=a&run=b  the runs' records and their config differences
    GET  /dashboard/api/studies   GET /dashboard/studies/{name}/{select|sweep}   select and sweep folders
    GET  /dashboard/api/config-help         the config's help texts for the New job form
    POST /dashboard/api/data/check          an uploaded file's row errors and audit, before any training
    GET  /dashboard/runs/{run}/{document}   report, card, audit, config
    GET  /dashboard/runs/{run}/final.zip    final/ as a zip

Authentication is the API's: the Guard (app.py) accepts the cookie as it accepts a bearer key.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from tunesmith.serve import runs_view
from tunesmith.serve.errors import ApiError
from tunesmith.serve.paths import UnsafePath, run_path
from tunesmith.serve.state import ServerState

router = APIRouter(include_in_schema=False)
COOKIE = "tunesmith_key"
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
STREAM_POLL_S = 0.5


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _asset(name: str) -> str:
    return resources.files("tunesmith.serve").joinpath("assets", name).read_text(encoding="utf-8")


def valid_key(given: str | bytes, keys: list[str]) -> bool:
    """compare_digest against every key: no early exit that would time which key prefix matched."""
    token = given if isinstance(given, bytes) else given.encode()
    return any([hmac.compare_digest(token, key.encode()) for key in keys])


@router.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(_asset("dashboard.html"), headers={"cache-control": "no-store"})


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_asset("login.html").replace("{error}", ""))


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "") -> Response:
    keys = _state(request).settings.api_keys
    if keys and not valid_key(key.strip(), keys):
        return HTMLResponse(_asset("login.html").replace("{error}", "That key is not one of this server's."), 401)
    response = RedirectResponse("/", status_code=303)
    if keys:
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/dashboard/assets/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, f"no dashboard asset {name!r}", "name", "not_found")
    return Response(_asset(name), media_type=ASSETS[name], headers={"cache-control": "no-cache"})


def _run(request: Request, name: str) -> Path:
    try:
        path = run_path(_state(request).settings.runs_dir, name)
    except UnsafePath:
        raise ApiError(404, f"no run {name!r}", "run", "not_found") from None
    if path not in runs_view.run_folders(path.parent):
        raise ApiError(404, f"no run {name!r} in this server's runs directory", "run", "not_found")
    return path


def _jobs_by_run(state: ServerState) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = state.store.list_jobs(after, 100)
        for job in page.items:
            if job.run_name:
                jobs.setdefault(job.run_name, {"id": job.id, "status": job.status, "model": job.model})
        if not page.has_more or not page.items:
            return jobs
        after = page.items[-1].id


@router.get("/dashboard/api/runs")
async def runs(request: Request) -> dict[str, Any]:
    state = _state(request)

    def collect() -> list[dict[str, Any]]:
        jobs = _jobs_by_run(state)
        out = []
        for folder in runs_view.run_folders(state.settings.runs_dir):
            item = runs_view.summary(folder)
            job = jobs.pop(folder.name, None)
            if job:
                item |= {"job": job, "status": job["status"] if job["status"] != "succeeded" else item["status"]}
            out.append(item)
        for run_name, job in jobs.items():  # a job whose run folder does not exist yet (validating, queued)
            out.append({"name": run_name, "status": job["status"], "base": job["model"], "job": job, "data": []})
        return out

    return {"runs": await run_in_threadpool(collect)}


@router.get("/dashboard/api/studies")
async def studies(request: Request) -> dict[str, Any]:
    return {"studies": await run_in_threadpool(runs_view.studies, _state(request).settings.runs_dir)}


@router.get("/dashboard/studies/{name}/{kind}")
async def study_page(name: str, kind: str, request: Request) -> Response:
    """A select or sweep folder's own page (select.html, sweep.html)."""
    if kind not in ("select", "sweep"):
        raise ApiError(404, f"no study page {kind!r} (select or sweep)", "kind", "not_found")
    try:
        folder = run_path(_state(request).settings.runs_dir, name)
    except UnsafePath:
        raise ApiError(404, f"no study {name!r}", "name", "not_found") from None
    page = folder / f"{kind}.html"
    if not page.is_file():
        raise ApiError(404, f"{name!r} has no {kind}.html", "name", "not_found")
    return HTMLResponse(await run_in_threadpool(page.read_text, encoding="utf-8"))


@router.get("/dashboard/api/runs/{name}")
async def run_detail(name: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    path = _run(request, name)

    def collect() -> dict[str, Any]:
        job = _jobs_by_run(state).get(name)
        return runs_view.detail(path) | ({"job": job} if job else {})

    return await run_in_threadpool(collect)


@router.get("/dashboard/api/runs/{name}/stream")
async def run_stream(name: str, request: Request, offset: int = Query(0, ge=0)) -> StreamingResponse:
    """metrics.jsonl from byte `offset` on, one event per record (`id` is the byte offset after it, so a reconnect
    continues where it left off), then a `status` event when the run is no longer training."""
    path = _run(request, name)
    metrics = path / "metrics.jsonl"

    async def events():
        position = offset
        pending = b""
        idle = 0
        while True:
            if await request.is_disconnected():
                return
            try:
                with open(metrics, "rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
            except OSError:
                chunk = b""
            if chunk:
                position += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                done = position - len(pending)
                for line in lines:
                    if line.strip():
                        yield f"id: {done}\nevent: metric\ndata: {line.decode('utf-8', 'replace')}\n\n"
            running = await run_in_threadpool(runs_view.is_running, path)
            if not running and not chunk:
                idle += 1
                if idle >= 2:  # nothing new twice after training ended: the record is complete
                    status = await run_in_threadpool(runs_view.status, path)
                    yield f"event: status\ndata: {json.dumps({'status': status})}\n\n"
                    return
            else:
                idle = 0
            yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})


HELP_KEYS = ("train.max_steps", "adapter.r", "adapter.alpha")


@router.get("/dashboard/api/config-help")
async def config_help() -> dict[str, str]:
    """Help texts for the New job form: the config's own for the settings it passes as overrides, the job API's for
    OpenAI's hyperparameters."""
    from tunesmith.config import Config
    from tunesmith.serve.schemas import Hyperparameters

    out = {}
    for key in HELP_KEYS:
        section, name = key.split(".")
        model = Config.model_fields[section].annotation
        out[key] = model.model_fields[name].description or ""
    for name, info in Hyperparameters.model_fields.items():
        out[f"hyperparameters.{name}"] = info.description or ""
    return out


@router.get("/dashboard/api/compare")
async def compare(request: Request, run: Annotated[list[str], Query()]) -> dict[str, Any]:
    paths = [_run(request, name) for name in dict.fromkeys(run)]
    if len(paths) < 2:
        raise ApiError(400, "compare needs two or more runs (?run=a&run=b)", "run")

    def collect() -> dict[str, Any]:
        details = [runs_view.detail(p) for p in paths]
        return {"runs": details, "config_diff": runs_view.config_diff(paths)}

    return await run_in_threadpool(collect)


@router.get("/dashboard/runs/{name}/final.zip")
async def final_zip(name: str, request: Request) -> FileResponse:
    final = _run(request, name) / "final"
    if not final.is_dir():
        raise ApiError(404, f"run {name!r} has no final/ model (it has not finished)", "run", "not_found")

    def pack() -> Path:
        handle = tempfile.NamedTemporaryFile(prefix="tunesmith-final-", suffix=".zip", delete=False)  # noqa: SIM115
        with handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for item in sorted(final.rglob("*")):
                if item.is_file() and not item.is_symlink():
                    archive.write(item, f"{name}/final/{item.relative_to(final)}")
        return Path(handle.name)

    packed = await run_in_threadpool(pack)
    return FileResponse(
        packed,
        media_type="application/zip",
        filename=f"{name}-final.zip",
        background=BackgroundTask(packed.unlink, missing_ok=True),
    )


@router.get("/dashboard/runs/{name}/{document}")
async def run_document(name: str, document: str, request: Request) -> Response:
    if document not in runs_view.DOCUMENTS:
        raise ApiError(404, f"no document {document!r} (one of {', '.join(runs_view.DOCUMENTS)})", "document")
    file, media = runs_view.DOCUMENTS[document]
    path = _run(request, name) / file
    if not path.is_file():
        raise ApiError(404, f"run {name!r} has no {file}", "document", "not_found")
    return Response(await run_in_threadpool(path.read_bytes), media_type=media)


@router.post("/dashboard/api/data/check")
async def data_check(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    """Row errors (FILE:LINE: field: reason) and the audit of an uploaded file; nothing is stored."""
    from tunesmith.serve.data_view import check_and_audit

    state = _state(request)
    limit = state.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the file is over this server's upload limit of {limit:,} bytes", "file")
    name = Path((file.filename or "upload.jsonl").replace("\\", "/")).name[:255] or "upload.jsonl"
    return await run_in_threadpool(check_and_audit, data, name, state)
