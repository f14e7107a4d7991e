"""Files, fine-tuning jobs, their events and checkpoints, persisted in SQLite inside the runs directory.

Both the server and the worker processes open the same database; every call opens its own connection (WAL mode,
a busy timeout, synchronous=FULL), so a process killed at any point leaves every committed upload, job and event
in place.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tunesmith.serve.paths import new_id

TERMINAL = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL, status_details TEXT,
    rows INTEGER NOT NULL DEFAULT 0, kind TEXT, deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL, model TEXT NOT NULL,
    base TEXT NOT NULL, base_id TEXT NOT NULL,
    training_file TEXT NOT NULL, validation_file TEXT, hyperparameters TEXT NOT NULL, suffix TEXT,
    seed INTEGER NOT NULL, status TEXT NOT NULL, run_name TEXT NOT NULL, fine_tuned_model TEXT,
    finished_at INTEGER, error TEXT, trained_tokens INTEGER, result_files TEXT NOT NULL DEFAULT '[]',
    overrides TEXT NOT NULL DEFAULT '[]', metadata TEXT, logged_step INTEGER NOT NULL DEFAULT 0,
    logged_eval_step INTEGER NOT NULL DEFAULT -1, method TEXT NOT NULL DEFAULT 'supervised'
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, created_at INTEGER NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, step INTEGER NOT NULL,
    created_at INTEGER NOT NULL, metrics TEXT NOT NULL, UNIQUE (job_id, step)
);
"""


@dataclass
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    status: str = "processed"
    status_details: str | None = None
    rows: int = 0
    kind: str | None = None


@dataclass
class JobRecord:
    id: str
    created_at: int
    model: str  # the model id the job was created with
    base: str  # what training loads: a registry name, an HF model directory, or a run directory
    base_id: str  # the base model's id, the middle part of `ft:<base_id>:<run_name>`
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    suffix: str | None
    seed: int
    status: str
    run_name: str
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    metadata: dict[str, str] | None = None
    logged_step: int = 0  # the last training step whose metrics were turned into an event
    logged_eval_step: int = -1  # the same for held-out evaluations (step 0 is the base model's)
    method: str = "supervised"  # OpenAI's method.type: supervised or dpo


@dataclass
class EventRecord:
    id: str
    job_id: str
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None


@dataclass
class CheckpointRecord:
    id: str
    job_id: str
    step: int
    created_at: int
    metrics: dict[str, Any]


_JSON_COLUMNS = {"hyperparameters", "error", "result_files", "overrides", "metadata", "data", "metrics"}


def _record(cls: type, row: sqlite3.Row) -> Any:
    values = {}
    for f in fields(cls):
        value = row[f.name]
        values[f.name] = json.loads(value) if f.name in _JSON_COLUMNS and value is not None else value
    return cls(**values)


def _encode(name: str, value: Any) -> Any:
    return json.dumps(value) if name in _JSON_COLUMNS and value is not None else value


@dataclass
class Page:
    items: list[Any]
    has_more: bool


class Store:
    def __init__(self, path: Path):
        self.path = path
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never wait for the one writer
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "method" not in columns:  # a store made before jobs had a method: they were all supervised
                db.execute("ALTER TABLE jobs ADD COLUMN method TEXT NOT NULL DEFAULT 'supervised'")
                db.commit()
        finally:
            db.close()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _insert(self, table: str, record: Any) -> None:
        values = {k: _encode(k, v) for k, v in asdict(record).items()}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._db() as db:
            db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(values.values()))

    def _page(self, cls: type, table: str, where: str, args: list, after: str | None, limit: int, newest: bool):
        """Rows of `table` in id order (newest first or oldest first), starting after the row whose id is `after`."""
        order = "DESC" if newest else "ASC"
        with self._db() as db:
            if after is not None:
                cursor = db.execute(f"SELECT seq FROM {table} WHERE id = ?", [after]).fetchone()
                if cursor is not None:
                    where += f" AND seq {'<' if newest else '>'} ?"
                    args = [*args, cursor["seq"]]
            rows = db.execute(
                f"SELECT * FROM {table} WHERE {where} ORDER BY seq {order} LIMIT ?", [*args, limit + 1]
            ).fetchall()
        return Page([_record(cls, r) for r in rows[:limit]], len(rows) > limit)

    # --- files -----------------------------------------------------------------------------------------------

    def add_file(self, record: FileRecord) -> None:
        self._insert("files", record)

    def get_file(self, file_id: str) -> FileRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM files WHERE id = ? AND deleted = 0", [file_id]).fetchone()
        return _record(FileRecord, row) if row else None

    def list_files(self, purpose: str | None, after: str | None, limit: int) -> Page:
        where, args = "deleted = 0", []
        if purpose:
            where, args = where + " AND purpose = ?", [purpose]
        return self._page(FileRecord, "files", where, args, after, limit, newest=True)

    def delete_file(self, file_id: str) -> bool:
        with self._db() as db:
            return db.execute("UPDATE files SET deleted = 1 WHERE id = ? AND deleted = 0", [file_id]).rowcount > 0

    def jobs_using(self, file_id: str) -> list[str]:
        """Ids of unfinished jobs that train or validate on this file (it must stay until they end, for resume)."""
        marks = ", ".join("?" for _ in TERMINAL)
        with self._db() as db:
            rows = db.execute(
                f"SELECT id FROM jobs WHERE (training_file = ? OR validation_file = ?) AND status NOT IN ({marks})",
                [file_id, file_id, *TERMINAL],
            ).fetchall()
        return [r["id"] for r in rows]

    # --- jobs ------------------------------------------------------------------------------------------------

    def add_job(self, record: JobRecord) -> None:
        self._insert("jobs", record)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", [job_id]).fetchone()
        return _record(JobRecord, row) if row else None

    def list_jobs(self, after: str | None, limit: int) -> Page:
        return self._page(JobRecord, "jobs", "1 = 1", [], after, limit, newest=True)

    def unserved_runs(self) -> set[str]:
        """Run names of jobs that have not succeeded: their folders may hold a finished model (a job cancelled
        after its training ended, one still writing its report) that must not be listed or served."""
        db = sqlite3.connect(self.path, timeout=30)  # a plain read: no write lock, unlike _db
        try:
            rows = db.execute("SELECT run_name FROM jobs WHERE status != 'succeeded'").fetchall()
        finally:
            db.close()
        return {r[0] for r in rows}

    def jobs_with_status(self, *statuses: str) -> list[JobRecord]:
        marks = ", ".join("?" for _ in statuses)
        with self._db() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq", list(statuses)).fetchall()
        return [_record(JobRecord, r) for r in rows]

    def update_job(self, job_id: str, only_from: tuple[str, ...] | None = None, **values: Any) -> bool:
        """Set columns of one job; with `only_from`, only while its status is one of those (a cancel that landed
        first is never overwritten by a worker finishing). Returns whether the row changed."""
        sets = ", ".join(f"{k} = ?" for k in values)
        args = [_encode(k, v) for k, v in values.items()]
        where = "id = ?"
        args.append(job_id)
        if only_from:
            where += f" AND status IN ({', '.join('?' for _ in only_from)})"
            args += list(only_from)
        with self._db() as db:
            return db.execute(f"UPDATE jobs SET {sets} WHERE {where}", args).rowcount > 0

    # --- events and checkpoints ------------------------------------------------------------------------------

    def add_event(
        self, job_id: str, message: str, level: str = "info", kind: str = "message", data: dict | None = None
    ) -> EventRecord:
        event = EventRecord(new_id("ftevent"), job_id, int(time.time()), level, message, kind, data)
        values = asdict(event)
        values["data"] = _encode("data", data)
        with self._db() as db:
            db.execute(
                "INSERT INTO events (id, job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [values[k] for k in ("id", "job_id", "created_at", "level", "message", "type", "data")],
            )
        return event

    def list_events(self, job_id: str, after: str | None, limit: int) -> Page:
        return self._page(EventRecord, "events", "job_id = ?", [job_id], after, limit, newest=True)

    def put_checkpoint(self, job_id: str, step: int, metrics: dict[str, Any]) -> bool:
        """Record a checkpoint, or refresh its metrics (the held-out loss of the last step arrives after its
        folder). Returns True only the first time, so a resumed job does not announce old checkpoints again."""
        with self._db() as db:
            row = db.execute("SELECT metrics FROM checkpoints WHERE job_id = ? AND step = ?", [job_id, step]).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO checkpoints (id, job_id, step, created_at, metrics) VALUES (?, ?, ?, ?, ?)",
                    [new_id("ftckpt"), job_id, step, int(time.time()), json.dumps(metrics)],
                )
                return True
            if json.loads(row["metrics"]) != metrics:
                update = "UPDATE checkpoints SET metrics = ? WHERE job_id = ? AND step = ?"
                db.execute(update, [json.dumps(metrics), job_id, step])
            return False

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> Page:
        return self._page(CheckpointRecord, "checkpoints", "job_id = ?", [job_id], after, limit, newest=True)
