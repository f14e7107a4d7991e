"""The run directory: resolved config, manifest (hashes, versions, seed, git sha), eval results.

Everything a run did is written under `output.dir`, so the run can be audited and reproduced from it. A folder
becomes a run when tunesmith writes its marker file `.tunesmith-run` into it, and a run has *started* once its
identity (config.yaml, then manifest.json, each written atomically) is complete. Only a marked folder is ever
cleared, and only of the entries a run writes (RUN_ENTRIES); a run that never started is simply started again.

`RunDir` owns a run folder's layout: every consumer of a finished run (generate, eval, predict, serve, a run that
continues from it) finds its files and its typed config there, and loads "the model as the run trained it" with
models/trained.py's load_run(RunDir). This module sits below models/ and data/: it imports only config and errors.

    run = RunDir(Path("runs/sst2"))
    run.final, run.eval_dir, run.checkpoints       # paths
    run.config(), run.method, run.manifest()       # the resolved config (older saved keys upgraded), "sft", ...
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

from tunesmith.config import Config, load_saved_config, upgrade_saved
from tunesmith.errors import TunesmithError

PACKAGES = ("tunesmith", "torch", "transformers", "peft", "safetensors", "tokenizers", "gguf", "pydantic")


class RunDirError(TunesmithError):
    """The run directory cannot be used as asked (exists without --resume, or resume without a run)."""


class RunWriteError(TunesmithError):
    """Writing the run failed for a reason the user can fix: a full disk, a read-only or forbidden folder."""


MARKER = ".tunesmith-run"
FINAL = "final"  # the finished model: an adapter over its base, or a full model, each with its tokenizer
# Everything a run writes at its top level: what overwrite (or restarting a run that never started) removes.
# Anything else a user put into a run folder stays.
RUN_ENTRIES = (
    "manifest.json",  # first: a stop while clearing leaves a run that has not started, which restarts cleanly
    "config.yaml",
    "audit.json",
    "metrics.jsonl",
    "checkpoints",
    FINAL,
    ".final-staging",
    ".final-aside",
    "initial-adapter",
    "eval",
    "base",
    "MODEL_CARD.md",
    "report.html",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_sha256(folder: Path) -> str:
    """Hash of the tokenizer files a model directory holds (vocabulary, merges, special tokens)."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.name.startswith(("tokenizer", "special_tokens"))):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


class BaseSource(Protocol):
    """Where a run's base model came from: models/registry.ResolvedBase."""

    name: str
    path: Path
    origin: Path


def build_manifest(cfg: Config, base: BaseSource, data_files: list[Path], tokenizer, argv: list[str]) -> dict:
    origin = base.origin
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": argv,
        "seed": cfg.train.seed,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "base_model": {
            "name": base.name,
            "path": str(base.path),
            "origin": str(origin),
            "origin_sha256": file_sha256(origin) if origin.is_file() else None,
        },
        "tokenizer_sha256": tokenizer_sha256(base.path) if base.path.is_dir() else None,
        "chat_template_sha256": text_sha256(tokenizer.chat_template) if tokenizer.chat_template else None,
        "data": [{"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size} for p in data_files],
    }


def write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: a stop or a full disk leaves the previous content (or no file), never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the run folder's layout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDir:
    """A run folder: where each thing a run writes lives, and readers for what it holds. Making one reads no file."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        """The run a path names: the run folder, or the final/ folder inside one."""
        path = Path(path)
        return cls(path.parent) if path.name == FINAL and not (path / FINAL).is_dir() else cls(path)

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def audit_file(self) -> Path:
        return self.path / "audit.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / FINAL

    @property
    def final_staging(self) -> Path:
        return self.path / ".final-staging"

    @property
    def initial_adapter(self) -> Path:
        """A pissa/olora adapter as initialised, before training: what final/'s adapter is converted against."""
        return self.path / "initial-adapter"

    @property
    def final_aside(self) -> Path:
        return self.path / ".final-aside"

    @property
    def base(self) -> Path:
        """The weights a new adapter or head is saved against when the run continued from another run."""
        return self.path / "base"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def eval_file(self, name: str) -> Path:
        """eval/<name>.json: `base` and `tuned` (written by train), `eval` (by `tunesmith eval`)."""
        return self.eval_dir / f"{name}.json"

    @property
    def model_card(self) -> Path:
        return self.path / "MODEL_CARD.md"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def is_run(self) -> bool:
        """A finished run: final/ beside the config.yaml it was trained with."""
        return self.final.is_dir() and self.config_file.is_file()

    @property
    def model_dir(self) -> Path:
        """The folder holding the finished model: final/, or this folder itself when it is a model on its own (a
        final/ folder copied out of its run)."""
        return self.final if self.final.is_dir() else self.path

    def config(self) -> Config:
        """The run's resolved config, as config.yaml saved it (keys older versions wrote are upgraded)."""
        return load_saved_config(self.config_file)

    @property
    def method(self) -> str:
        """The type of the training method that made the run (`method.type`: sft, classifier, ...)."""
        return self.config().method.type

    def manifest(self) -> dict:
        return read_json(self.manifest_file)

    def metrics(self) -> list[dict]:
        """metrics.jsonl's records in order: train steps, evaluations, and the final evaluation."""
        lines = self.metrics_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def eval_record(self, name: str) -> dict:
        return read_json(self.eval_file(name))


# Settings that may change between a run and its resume: they steer bookkeeping, never the numbers. train.threads is
# not one of them: the thread count decides how matmuls split their sums, so it changes gradient bits and a resume
# with other threads would not end where the uninterrupted run does.
RESUMABLE_CHANGES = {
    "train.save_every",
    "train.eval_every",
    "train.log_every",
    "train.keep_checkpoints",
    "train.report_to",
    "train.mlflow_uri",
}
# Where the run lives and how it was created are not part of its identity: a copied or moved run resumes.
RUN_LOCATION = {"output.dir", "output.overwrite"}


def flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    """Nested keys joined with dots: {"train": {"lr": 1}} -> {"train.lr": 1}."""
    flat: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_changes(saved: dict, current: Config) -> list[str]:
    """Keys whose value differs from the saved run config, except those a resume may change. The saved config is
    read as the current schema reads it (upgrade_saved, then every default filled in), so a key added since the run
    was saved, whose default keeps what the run did, is no change."""
    with contextlib.suppress(ValueError):  # a file the schema refuses is compared as written: differences named
        saved = Config.model_validate(upgrade_saved(saved)).model_dump(mode="json")
    old, new = flatten(saved), flatten(current.model_dump(mode="json"))
    keys = sorted(set(old) | set(new))
    # The sweep section only tells `tunesmith sweep` what to search; a run never reads it.
    changed = [k for k in keys if old.get(k) != new.get(k) and not k.startswith("sweep.")]
    return [k for k in changed if k not in RESUMABLE_CHANGES and k not in RUN_LOCATION]


# --- the run folder's lifecycle -------------------------------------------------------------------------------


def _legacy_run(out: Path) -> bool:
    """A run written before the marker existed: config.yaml plus a manifest that only tunesmith writes."""
    try:
        manifest = read_json(out / "manifest.json")
    except (OSError, ValueError):
        return False
    packages = manifest.get("packages", {}) if isinstance(manifest, dict) else {}
    return (out / "config.yaml").is_file() and isinstance(packages, dict) and "tunesmith" in packages


def run_state(out: Path) -> str:
    """`empty` (absent or an empty folder), `started`, `unstarted` (marked, identity incomplete), `foreign` (a folder
    tunesmith did not mark) or `file`."""
    if not out.exists():
        return "empty"
    if not out.is_dir():
        return "file"
    if (out / MARKER).is_file():
        return "started" if (out / "manifest.json").is_file() else "unstarted"
    if _legacy_run(out):
        return "started"
    return "foreign" if any(out.iterdir()) else "empty"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(out: Path, resume: bool, overwrite: bool, protect: list[Path]) -> str:
    """Everything about `output.dir` that can be refused before the model and data are even loaded; returns
    run_state(out). `protect` lists files a run must never delete (the config, the data, the base model)."""
    state = run_state(out)
    if state == "file":
        raise RunDirError(f"output.dir {out} is a file, not a folder; choose a folder for the run")
    if not os.access(_nearest_existing(out), os.W_OK):
        raise RunDirError(f"output.dir {out} is not writable (read-only or permission denied); choose another folder")
    if state == "foreign":
        what = "--resume: " if resume else ""
        raise RunDirError(
            f"{what}output.dir {out} is not empty and is not a tunesmith run (no {MARKER}); nothing in it is "
            "touched: choose another output.dir, or empty it yourself"
        )
    if state == "started" and not resume and not overwrite:
        raise RunDirError(
            f"{out} already holds a run; use --resume to continue it, output.overwrite=true to replace it, "
            "or another output.dir"
        )
    if state == "unstarted" or (state == "started" and not resume):
        _check_replaceable(out, protect)
    return state


def _check_replaceable(out: Path, protect: list[Path]) -> None:
    """Never clear the working directory, a folder above it, or a folder holding the config, data or model."""
    folder, cwd = out.resolve(), Path.cwd().resolve()
    if cwd.is_relative_to(folder):
        raise RunDirError(f"output.dir {out} is the working directory or holds it; refusing to replace it")
    for path in protect:
        if path.resolve().is_relative_to(folder):
            raise RunDirError(f"output.dir {out} holds {path}, which this run reads; refusing to replace it")


def clear_run(out: Path) -> None:
    """Remove what a run wrote (RUN_ENTRIES and their temporary files), and nothing else; the marker stays."""
    for name in RUN_ENTRIES:
        for entry in (out / name, out / f"{name}.tmp"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()


def lock_path(out: Path) -> Path:
    """The file a training process holds (flock) while it trains into `out`."""
    return out.parent / f".{out.name}.tunesmith-lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold `out` for this process while it trains: a second `train` or `--resume` into the same folder is refused
    at once instead of writing checkpoints under a running run. The lock is an flock on a small file beside the
    folder (inside, it would make a fresh folder look used); the kernel releases it however the process ends."""
    lock = lock_path(out)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - held open for the whole run
    except OSError:
        yield  # a folder we cannot write beside: check_output and the run's own writes say why
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{out} is in use: another tunesmith process is training into it now; wait for it to end or stop it "
                "(then --resume continues it)"
            ) from None
        yield
    finally:
        handle.close()


def claim(out: Path) -> None:
    """Make `out` a run folder: create it and write the marker that lets a later overwrite replace it."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        write_json(out / MARKER, {"tunesmith": package_versions()["tunesmith"], "created": time.strftime("%FT%T%z")})


# Disk problems a user fixes (free space, permissions), as torch, safetensors and plain Python report them.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _write_problem(err: BaseException) -> tuple[str, str | None] | None:
    """(reason, file) when `err` is a disk or permission failure, else None. safetensors reports it in its message."""
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return os.strerror(err.errno), err.filename
    text = str(err)
    for code in _WRITE_ERRNOS:
        if f"(os error {code})" in text:
            return os.strerror(code), None
    return None


@contextlib.contextmanager
def write_errors(out: Path) -> Iterator[None]:
    """Turn a full disk or a forbidden write while running into one line naming the path (exit 2, via the CLI)."""
    try:
        yield
    except Exception as err:
        problem = _write_problem(err)
        if problem is None:
            raise
        reason, filename = problem
        where = filename or str(out)
        hint = "; free space and continue with --resume" if reason == os.strerror(errno.ENOSPC) else ""
        raise RunWriteError(f"{reason}: {where}{hint}") from None
