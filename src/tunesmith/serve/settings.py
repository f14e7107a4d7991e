"""What the operator chose on `tunesmith serve`'s command line, and where the server keeps its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import TunesmithError

STATE_DIR = ".serve"  # inside the runs directory; a dot name so it is never listed as a run


@dataclass
class ServeSettings:
    runs_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)  # empty: no authentication (loopback only, see command.py)
    bases: list[str] = field(default_factory=list)  # extra base models: registry names or HF model directories
    trust_remote_code: bool = False
    max_upload_bytes: int = 64 * 2**20
    max_rows: int = 100_000
    max_body_bytes: int = 4 * 2**20  # every request but a file upload
    body_timeout_s: float = 30.0  # longest wait for the next piece of a request body (a false Content-Length)
    workers: int = 1  # job worker processes; each runs one job at a time
    train_ranks: int = 1  # processes each job trains on (torchrun, data-parallel: training/distributed.py)
    max_batch: int = 8  # requests decoded together
    batch_window_s: float = 0.01  # how long the first request of a batch waits for company
    default_max_tokens: int = 256
    dtype: str = "auto"  # the generating models' weights: auto | float32 | bfloat16 (models/loading.pick_dtype)

    @property
    def state_dir(self) -> Path:
        return self.runs_dir / STATE_DIR

    @property
    def db_path(self) -> Path:
        return self.state_dir / "serve.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.state_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    def prepare(self) -> None:
        self.runs_dir = self.runs_dir.resolve()
        for folder in (self.state_dir, self.files_dir, self.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)


def read_api_keys(path: Path) -> list[str]:
    """One key per line; blank lines and `#` comments are skipped. An empty file is refused, not read as 'open'."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TunesmithError(f"--api-key-file {path}: cannot read it: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise TunesmithError(f"--api-key-file {path}: not UTF-8 text (byte {err.start}); one key per line") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise TunesmithError(f"--api-key-file {path}: holds no key (one key per line)")
    short = [k for k in keys if len(k) < 16]
    if short:
        raise TunesmithError(f"--api-key-file {path}: keys must be at least 16 characters long")
    return keys
