"""`tunesmith serve`: check the operator's settings, then run the app under uvicorn.

tunesmith serve --runs-dir runs/ --port 8000 [--api-key-file keys.txt] [--model /models/my-llama]
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.models.registry import check_hf_folder
from tunesmith.serve.settings import ServeSettings, read_api_keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_settings(
    runs_dir: str,
    host: str,
    port: int,
    api_key_file: str | None,
    models: list[str],
    trust_remote_code: bool,
    workers: int,
    max_upload_mb: float,
    max_rows: int,
    max_batch: int,
    max_tokens: int,
    train_ranks: int = 1,
    dtype: str = "auto",
) -> ServeSettings:
    keys = read_api_keys(Path(api_key_file)) if api_key_file else []
    if not keys and not is_loopback(host):
        raise TunesmithError(
            f"--host {host} would expose the server beyond this machine without authentication; "
            "give --api-key-file (one key per line), or keep the default 127.0.0.1"
        )
    for model in models:
        if not (Path(model).expanduser() / "config.json").is_file():
            raise TunesmithError(f"--model {model}: not an HF model directory (no config.json)")
        check_hf_folder(Path(model).expanduser())  # a corrupt config or missing weights: refused now, not per request
    return ServeSettings(
        runs_dir=Path(runs_dir), host=host, port=port, api_keys=keys, bases=models,
        trust_remote_code=trust_remote_code, workers=workers, max_upload_bytes=int(max_upload_mb * 2**20),
        max_rows=max_rows, max_batch=max_batch, default_max_tokens=max_tokens, train_ranks=train_ranks,
        dtype=dtype,
    )  # fmt: skip


def serve(settings: ServeSettings) -> None:
    import uvicorn

    from tunesmith.serve.app import create_app

    app = create_app(settings)
    auth = "API key required" if settings.api_keys else "no API key (loopback only)"
    where = f"http://{settings.host}:{settings.port}/v1"
    print(f"tunesmith serve: {where}  runs: {settings.runs_dir}  ({auth})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=20)
