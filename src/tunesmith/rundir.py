"""The run directory: resolved config, manifest (hashes, versions, seed, git sha), eval results.

Everything a run did is written under `output.dir`, so the run can be audited and reproduced from it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from tunesmith.config import Config
from tunesmith.errors import TunesmithError
from tunesmith.models.registry import ResolvedBase, file_sha256

PACKAGES = ("tunesmith", "torch", "transformers", "peft", "safetensors", "tokenizers", "gguf", "pydantic")


class RunDirError(TunesmithError):
    """The run directory cannot be used as asked (exists without --resume, or resume without a run)."""


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


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_sha256(folder: Path) -> str:
    """Hash of the tokenizer files a model directory holds (vocabulary, merges, special tokens)."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.name.startswith(("tokenizer", "special_tokens"))):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def build_manifest(cfg: Config, base: ResolvedBase, data_files: list[Path], tokenizer, argv: list[str]) -> dict:
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


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# Settings that may change between a run and its resume: they steer bookkeeping, never the numbers.
RESUMABLE_CHANGES = {
    "train.save_every",
    "train.eval_every",
    "train.log_every",
    "train.keep_checkpoints",
    "train.threads",
}


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_changes(saved: dict, current: Config) -> list[str]:
    """Keys whose value differs from the saved run config, except those a resume may change."""
    old, new = _flatten(saved), _flatten(current.model_dump(mode="json"))
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES and k != "output.overwrite"]
