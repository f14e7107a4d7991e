"""Files and fine-tuning jobs, with OpenAI's semantics.

    POST /v1/files (purpose fine-tune)          GET/DELETE /v1/files/{id}      GET /v1/files/{id}/content
    POST /v1/fine_tuning/jobs                   GET /v1/fine_tuning/jobs?after=&limit=
    GET  /v1/fine_tuning/jobs/{id}              POST /v1/fine_tuning/jobs/{id}/cancel
    GET  /v1/fine_tuning/jobs/{id}/events       GET /v1/fine_tuning/jobs/{id}/checkpoints

A job goes validating_files -> queued -> running -> succeeded | failed | cancelled; the worker process moves it
(worker.py). Ids are checked against their exact pattern before anything touches the disk (paths.py).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tunesmith.config import Kind
from tunesmith.serve.catalog import UnknownModel
from tunesmith.serve.errors import ApiError
from tunesmith.serve.jobs import JobError, check_overrides, job_json
from tunesmith.serve.paths import SUFFIX, is_file_id, is_job_id, new_id, run_path, upload_path
from tunesmith.serve.schemas import JobCreate
from tunesmith.serve.state import ServerState
from tunesmith.serve.store import TERMINAL, FileRecord, JobRecord, Page
from tunesmith.serve.uploads import UploadRejected, check_upload, fsync_file, upload_renderer

router = APIRouter(prefix="/v1")
CHUNK = 1 << 20


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _page(page: Page, render) -> dict[str, Any]:
    data = [render(item) for item in page.items]
    return {"object": "list", "data": data, "has_more": page.has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}  # fmt: skip


# --- files -----------------------------------------------------------------------------------------------------


def file_json(record: FileRecord) -> dict[str, Any]:
    return {"object": "file", "id": record.id, "bytes": record.bytes, "created_at": record.created_at,
            "filename": record.filename, "purpose": record.purpose, "status": record.status,
            "status_details": record.status_details, "expires_at": None}  # fmt: skip


def _file(state: ServerState, file_id: str) -> FileRecord:
    record = state.store.get_file(file_id) if is_file_id(file_id) else None
    if record is None:
        raise ApiError(404, f"No such File object: {file_id}", "id", "file_not_found")
    return record


async def _receive(upload: UploadFile, target: Path, limit: int) -> int:
    size = 0
    with open(target, "wb") as out:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the file is over this server's upload limit of {limit:,} bytes", "file")
            out.write(chunk)
    return size


@router.post("/files", summary="Upload a JSONL fine-tuning file (checked row by row)")
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, File(description="JSONL: chat or prompt/completion rows")],
    purpose: Annotated[str, Form(description="fine-tune")],
) -> dict[str, Any]:
    state = _state(request)
    if purpose != "fine-tune":
        raise ApiError(400, f"purpose {purpose!r}: this server stores fine-tune files only", "purpose")
    filename = os.path.basename((file.filename or "upload.jsonl").replace("\\", "/"))[:255] or "upload.jsonl"
    file_id = new_id("file")
    target = upload_path(state.settings.files_dir, file_id)
    staging = target.with_name(f".{file_id}.part")
    try:
        size = await _receive(file, staging, state.settings.max_upload_bytes)
        renderer = await run_in_threadpool(upload_renderer, state.catalog, state.engines)
        checked = await run_in_threadpool(check_upload, staging, filename, state.settings.max_rows, renderer)
        await run_in_threadpool(fsync_file, staging)
        staging.replace(target)
    except UploadRejected as err:
        raise ApiError(400, str(err), "file", "invalid_file") from None
    finally:
        staging.unlink(missing_ok=True)
    record = FileRecord(
        file_id, filename, purpose, size, int(time.time()), "processed", None, checked.rows, checked.kind
    )
    state.store.add_file(record)
    return file_json(record)


@router.get("/files", summary="Uploaded files, newest first")
async def list_files(
    request: Request, purpose: str | None = None, after: str | None = None, limit: int = Query(100, ge=1, le=10000)
) -> dict[str, Any]:
    return _page(_state(request).store.list_files(purpose, after, limit), file_json)


@router.get("/files/{file_id}", summary="One file")
async def get_file(file_id: str, request: Request) -> dict[str, Any]:
    return file_json(_file(_state(request), file_id))


@router.get("/files/{file_id}/content", summary="A file's bytes")
async def file_content(file_id: str, request: Request) -> Response:
    state = _state(request)
    record = _file(state, file_id)
    data = await run_in_threadpool(upload_path(state.settings.files_dir, record.id).read_bytes)
    media = "text/csv" if record.filename.endswith(".csv") else "application/jsonl"
    return Response(data, media_type=media)


@router.delete("/files/{file_id}", summary="Delete a file (not while an unfinished job uses it)")
async def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    record = _file(state, file_id)
    users = state.store.jobs_using(record.id)
    if users:
        raise ApiError(409, f"{file_id} is used by unfinished job(s) {', '.join(users)}; cancel them first", "id")
    state.store.delete_file(record.id)
    upload_path(state.settings.files_dir, record.id).unlink(missing_ok=True)
    return {"object": "file", "id": record.id, "deleted": True}


# --- jobs ------------------------------------------------------------------------------------------------------


def _job(state: ServerState, job_id: str) -> JobRecord:
    job = state.store.get_job(job_id) if is_job_id(job_id) else None
    if job is None:
        raise ApiError(404, f"No such fine-tuning job: {job_id}", "fine_tuning_job_id", "job_not_found")
    return job


def _training_file(state: ServerState, file_id: str | None, param: str) -> FileRecord | None:
    if file_id is None:
        return None
    record = state.store.get_file(file_id) if is_file_id(file_id) else None
    if record is None:
        raise ApiError(400, f"{param} {file_id!r} does not exist", param, "invalid_training_file")
    if record.purpose != "fine-tune":
        raise ApiError(400, f"{param} {file_id} has purpose {record.purpose!r}, not 'fine-tune'", param)
    return record


@router.post("/fine_tuning/jobs", summary="Create a fine-tuning job", description=JobCreate.__doc__)
async def create_job(body: JobCreate, request: Request) -> dict[str, Any]:
    state = _state(request)
    try:
        entry = state.catalog.get(body.model)
        check_overrides(body.overrides)
    except UnknownModel as err:
        raise ApiError(400, str(err), "model", "model_not_found") from None
    except JobError as err:
        raise ApiError(400, str(err), err.param) from None
    if not entry.generative:
        raise ApiError(400, f"{entry.id} is a classification run; jobs train chat and completion models", "model")
    for param in ("training_file", "validation_file"):
        record = _training_file(state, getattr(body, param), param)
        preference = record is not None and record.kind == Kind.preference.value
        if record is not None and preference != (body.method_type == "dpo"):
            needs = "preference rows" if body.method_type == "dpo" else "chat or prompt/completion rows"
            raise ApiError(
                400, f"{param} {record.id} holds {record.kind} rows; method {body.method_type} trains on {needs}", param
            )
    if body.suffix is not None and not SUFFIX.match(body.suffix):
        raise ApiError(400, "suffix takes up to 64 letters, digits, '-' and '_', starting with a letter or digit",
                       "suffix")  # fmt: skip
    job_id = new_id("ftjob")
    run_name = f"{body.suffix}-{job_id[6:14]}" if body.suffix else f"ft-{job_id[6:18]}"
    if run_path(state.settings.runs_dir, run_name).exists():
        raise ApiError(409, f"a run named {run_name} already exists; choose another suffix", "suffix")
    hyper = body.resolved_hyperparameters().model_dump()
    job = JobRecord(
        id=job_id, created_at=int(time.time()), model=body.model, base=entry.source, base_id=entry.base_id,
        training_file=body.training_file, validation_file=body.validation_file, hyperparameters=hyper,
        suffix=body.suffix, seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        status="validating_files", run_name=run_name, overrides=body.overrides, metadata=body.metadata,
        method=body.method_type,
    )  # fmt: skip
    state.store.add_job(job)
    state.store.add_event(job_id, f"Created fine-tuning job: {job_id}")
    return job_json(job)


@router.get("/fine_tuning/jobs", summary="Fine-tuning jobs, newest first")
async def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    return _page(_state(request).store.list_jobs(after, limit), job_json)


@router.get("/fine_tuning/jobs/{job_id}", summary="One fine-tuning job")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    return job_json(_job(_state(request), job_id))


@router.post("/fine_tuning/jobs/{job_id}/cancel", summary="Cancel a job (its training is stopped)")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    job = _job(state, job_id)
    live = ("validating_files", "queued", "running")
    if job.status in TERMINAL or not state.store.update_job(
        job.id, only_from=live, status="cancelled", finished_at=int(time.time())
    ):
        current = _job(state, job_id).status
        raise ApiError(400, f"Job {job_id} has already {current}; it cannot be cancelled", "fine_tuning_job_id")
    state.store.add_event(job.id, "Job cancelled")
    return job_json(_job(state, job_id))


def event_json(event) -> dict[str, Any]:
    return {"object": "fine_tuning.job.event", "id": event.id, "created_at": event.created_at, "level": event.level,
            "message": event.message, "type": event.type, "data": event.data}  # fmt: skip


@router.get("/fine_tuning/jobs/{job_id}/events", summary="A job's events, newest first")
async def list_events(
    job_id: str, request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=1000)
) -> dict[str, Any]:
    state = _state(request)
    job = _job(state, job_id)
    return _page(state.store.list_events(job.id, after, limit), event_json)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints", summary="A job's checkpoints with their metrics, newest first")
async def list_checkpoints(
    job_id: str, request: Request, after: str | None = None, limit: int = Query(10, ge=1, le=100)
) -> dict[str, Any]:
    state = _state(request)
    job = _job(state, job_id)
    model = f"ft:{job.base_id}:{job.run_name}"

    def render(c) -> dict[str, Any]:
        return {"object": "fine_tuning.job.checkpoint", "id": c.id, "created_at": c.created_at,
                "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{c.step}", "fine_tuning_job_id": job.id,
                "metrics": c.metrics, "step_number": c.step}  # fmt: skip

    return _page(state.store.list_checkpoints(job.id, after, limit), render)
