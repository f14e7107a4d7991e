"""The FastAPI app: routes, API-key check, request-size limits, OpenAI-shaped errors, and the lifespan that opens
the store, starts the model thread and the job workers, and stops them again.

    uvicorn-free use in tests: TestClient(create_app(ServeSettings(runs_dir=tmp, workers=0)))
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from http.cookies import CookieError, SimpleCookie

from fastapi import FastAPI

from tunesmith.serve import dashboard, routes_inference, routes_jobs
from tunesmith.serve.batcher import Batcher
from tunesmith.serve.catalog import Catalog
from tunesmith.serve.engines import Engines
from tunesmith.serve.errors import error_body, install_handlers
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.state import ServerState
from tunesmith.serve.store import Store
from tunesmith.serve.supervisor import Supervisor

OPEN_PATHS = ("/health", "/login", "/dashboard/assets/dashboard.css")
PAGES = ("/", "/dashboard/runs/")  # a browser without the key is sent to the login page instead of a JSON 401


class BodyRefused(Exception):
    """The request body broke a limit while the app was reading it."""


async def _send_error(send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


def _cookie(headers: dict[bytes, bytes], name: str) -> bytes:
    try:
        jar = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
    except CookieError:
        return b""
    return jar[name].value.encode() if name in jar else b""


async def _redirect(send, location: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class Guard:
    """ASGI middleware in front of every route: the bearer key (unless the path is open), the body size, counted
    as it arrives so a chunked upload without Content-Length is cut off too, and the wait for each piece of the
    body, so a client whose Content-Length promises more than it sends is answered instead of waited on forever.

    A broken limit raises inside the app's own read of the body, and FastAPI turns errors there into its generic
    400 "error parsing the body"; so the Guard drops whatever the app answers after that and sends its own
    413 or 408."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings
        self.keys = settings.api_keys

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        """A bearer key, or the dashboard's cookie (set by POST /login)."""
        given = headers.get(b"authorization", b"")
        token = given[7:].strip() if given.lower().startswith(b"bearer ") else _cookie(headers, dashboard.COOKIE)
        if not token:
            return False
        return dashboard.valid_key(token, self.keys)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.keys and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            path = scope["path"]
            if scope["method"] == "GET" and (path == "/" or path.startswith(PAGES[1])):
                return await _redirect(send, "/login")
            message = "missing or wrong API key: send Authorization: Bearer <key>"
            return await _send_error(send, 401, message, [(b"www-authenticate", b"Bearer")])
        limit = self.settings.max_body_bytes
        if scope["path"].rstrip("/") == "/v1/files" and scope["method"] == "POST":
            limit = self.settings.max_upload_bytes + 64 * 1024  # the multipart envelope around the file
        too_large = (413, f"request body over this server's limit of {limit:,} bytes")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _send_error(send, *too_large)
        timeout = self.settings.body_timeout_s
        seen, body_done, started = 0, False, False
        refused: tuple[int, str] | None = None

        async def guarded_receive():
            nonlocal seen, body_done, refused
            if refused is not None:
                raise BodyRefused
            if body_done:
                return await receive()  # e.g. a streaming response listening for the client to leave: no limit
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                refused = (408, f"the request body stopped arriving for {timeout:g} s (does Content-Length match it?)")
                raise BodyRefused from None
            if message["type"] != "http.request":
                body_done = True
                return message
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = too_large
                raise BodyRefused
            body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message):
            nonlocal started
            if refused is not None:
                return  # the app's answer to a body it could not read; the Guard's goes out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await _send_error(send, *refused)


def create_app(settings: ServeSettings) -> FastAPI:
    settings.prepare()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engines = Engines(settings.trust_remote_code, dtype=settings.dtype)
        batcher = Batcher(engines, settings.max_batch, settings.batch_window_s)
        store = Store(settings.db_path)
        catalog = Catalog(settings.runs_dir, settings.bases, store.unserved_runs)
        app.state.server = ServerState(settings, store, catalog, engines, batcher)
        supervisor = Supervisor(settings)
        app.state.supervisor = supervisor
        batcher.start()
        supervisor.start()
        try:
            yield
        finally:
            supervisor.stop()
            batcher.stop()

    app = FastAPI(
        title="tunesmith serve",
        version="1",
        description="OpenAI-compatible inference for base models and tuned runs, plus files and fine-tuning jobs "
        "that train with tunesmith. Tuned models are addressed as `ft:<base>:<run-name>`; classification-head runs "
        "answer at POST /v1/classifications, reward-model runs score answers at POST /v1/rewards.",
        lifespan=lifespan,
    )
    install_handlers(app)
    app.include_router(routes_inference.router)
    app.include_router(routes_jobs.router)
    app.include_router(dashboard.router)

    @app.get("/health", summary="Liveness (needs no API key)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(Guard, settings=settings)
    return app
