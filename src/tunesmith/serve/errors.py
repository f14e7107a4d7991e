"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.

Every answer the server gives on failure goes through `error_body`, FastAPI's and Starlette's own errors (404, 405,
422, 500) included, and no message shows the server's insides: absolute paths are cut to what the client can know
(a run's name, a file id), and an unexpected exception is answered with a one-line notice while its traceback goes
to the server's log only.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          408: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
          500: "server_error"}  # fmt: skip
# An absolute path of two or more parts (not a URL, not the API's own /v1/ routes, not a relative a/b).
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?!v1/)(?:[^\s/'\"`:,;()<>\[\]]+/)+[^\s/'\"`:,;()<>\[\]]*")


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def public(text: str, runs_dir: Path | None = None) -> str:
    """`text` without server paths: a path in the runs directory becomes relative to it (an upload, its file id),
    any other absolute path its last part."""
    if runs_dir is not None:
        for root in (runs_dir / ".serve" / "files", runs_dir / ".serve", runs_dir):
            text = text.replace(f"{root}/", "").replace(str(root), ".")
    return _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None, runs_dir: Path | None = None
) -> dict:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": public(message, runs_dir), "type": kind, "param": param, "code": code}}


def _runs_dir(request: Request) -> Path | None:
    server = getattr(request.app.state, "server", None)
    return server.settings.runs_dir if server is not None else None


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, request: Request | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    runs_dir = _runs_dir(request) if request is not None else None
    return JSONResponse(error_body(status, message, param, code, runs_dir), status_code=status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.param, err.code, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = (first.get("ctx") or {}).get("param") or ".".join(str(p) for p in first["loc"] if p != "body") or None
        lines = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors[:10])
        return error_response(400, lines.lstrip(": ") or "invalid request", param, "invalid_request", request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSONResponse:
        message = str(err.detail)
        if err.status_code == 404 and message == "Not Found":
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(err.status_code, message, request=request, headers=err.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer; the client learns only that it was the server's fault.
        return error_response(500, "the server failed on this request; its log has the details", None,
                              "internal_error", request)  # fmt: skip
