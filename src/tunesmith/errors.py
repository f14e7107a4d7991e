"""The base of every error that is the user's to fix (bad config, bad data, missing model): the CLI prints these
as one clear message and exits 2, instead of a traceback. Anything else that escapes a verb is a bug: the CLI
prints one line and writes the traceback to a crash log (write_crash_log)."""

from __future__ import annotations

import errno
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path


class TunesmithError(Exception):
    pass


USER_ERRORS = (TunesmithError,)

# System errors that are the machine's state, not a bug: a full disk, a read-only folder, missing permission.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
EXIT_INTERNAL = 70  # EX_SOFTWARE: distinct from 1 (bad rows found, a failed check) and 2 (the user's input)


def crash_dir() -> Path:
    """$XDG_STATE_HOME/tunesmith when the user set a state folder, else ~/.cache/tunesmith."""
    state = os.environ.get("XDG_STATE_HOME")
    return Path(state) / "tunesmith" if state else Path.home() / ".cache" / "tunesmith"


def write_crash_log(err: BaseException, argv: list[str]) -> Path:
    """Write the traceback of an unexpected exception with what ran it; return the file's path. Falls back to the
    temporary folder when the crash folder cannot be written (a read-only home must not hide the report)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tunesmith_version = version("tunesmith")
    except PackageNotFoundError:
        tunesmith_version = "unknown"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = (
        f"tunesmith {tunesmith_version} crashed at {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
        f"command: tunesmith {' '.join(argv)}\n"
        f"python {platform.python_version()} on {platform.platform()}\n\n" + "".join(traceback.format_exception(err))
    )
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(report, encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    sys.stderr.write(report)  # nowhere to write it: the traceback is still not lost
    return Path("(stderr)")


def report_unexpected(err: Exception, argv: list[str]) -> int:
    """The last resort: one line instead of a traceback, the traceback in a crash log. Known bad inputs never get
    here (tests/unit/test_cli_hostile.py); a full disk or out-of-memory are the user's to act on, so they get a
    plain error line."""
    if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":  # torch's, without importing torch
        print("error: out of memory; lower train.micro_batch_size or data.max_length", file=sys.stderr)
        return 2
    path = write_crash_log(err, argv)
    message = " ".join(str(err).split())[:300] or "(no message)"
    print(f"internal error: {type(err).__name__}: {message}; details in {path}", file=sys.stderr)
    return EXIT_INTERNAL
