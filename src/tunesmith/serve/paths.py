"""Ids and names that become paths, checked so that none can reach outside the runs directory.

Every path the server builds from a request goes through here: a file id must match `file-<24 hex>`, a run name a
short slug, and the resolved result must still lie directly under its folder (which also stops symlinks that lead
out). A request that fails these checks is answered as 'not found'.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from tunesmith.errors import TunesmithError

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
JOB_ID = re.compile(r"^ftjob-[0-9a-f]{24}$")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SUFFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class UnsafePath(TunesmithError):
    """A name that does not pass as a path component inside its folder."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def is_file_id(value: str) -> bool:
    return bool(FILE_ID.match(value))


def is_job_id(value: str) -> bool:
    return bool(JOB_ID.match(value))


def is_run_name(value: str) -> bool:
    return bool(RUN_NAME.match(value)) and ".." not in value


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it resolves to a direct child of `folder` (no separators, no `..`, no
    symlink that leads elsewhere)."""
    if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise UnsafePath(f"{name!r} is not a plain name")
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise UnsafePath(f"{name!r} leads outside {root}")
    return path


def upload_path(files_dir: Path, file_id: str) -> Path:
    if not is_file_id(file_id):
        raise UnsafePath(f"{file_id!r} is not a file id")
    return inside(files_dir, file_id)


def run_path(runs_dir: Path, run_name: str) -> Path:
    if not is_run_name(run_name):
        raise UnsafePath(f"{run_name!r} is not a run name")
    return inside(runs_dir, run_name)
