"""The job store: every render is a row in <home>/jobs.db (SQLite, WAL).

A job holds its full request (JSON, with the facetalk and model versions it was submitted
under), its state, progress (stage and fraction), attempts, timestamps, outputs, metrics and
error; its history (each attempt, requeue, cancel) is in the `events` table and, with more
detail, in its log file (facetalk.jobs.logs).

States:

    queued ──claim──► running ──succeed──► succeeded
      ▲                 │ │ └──fail (no retry, or attempts used up)──► failed
      │                 │ └────cancel──► cancelled ◄──cancel── queued
      └─fail (retry)────┘   lease expired: requeued (or failed when its attempts are used up)
      └─release (a worker shutting down gives the job back; the attempt is not counted)
    failed / cancelled ──retry──► queued (attempts from 0)

Workers claim jobs atomically (BEGIN IMMEDIATE) and hold them by a lease they renew while
they work; a job whose lease expired (its worker was killed, the machine restarted) is put
back in the queue by the next claim, with the attempt counted. Every change a worker makes
to a job it runs is conditional on still holding it (state running, worker = itself), so a
worker that lost its lease, or whose job was cancelled, cannot overwrite what happened since.

Safe from any number of threads (one connection per store object, behind a lock) and
processes (SQLite's locking; busy_timeout waits instead of failing). Times are Unix seconds
(time.time()); leases compare clocks, so workers on several machines need synced clocks.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from ..errors import FacetalkError
from . import logs

SCHEMA_VERSION = 1
DB_NAME = "jobs.db"
BUSY_TIMEOUT_S = 30.0
DEFAULT_LEASE_S = 30.0
NAME_MAX = 40


class JobError(FacetalkError):
    """A job that does not exist, is ambiguous, or cannot make the change asked for; or a
    job store that cannot be opened."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass
class Job:
    id: str
    name: str
    request: dict
    state: JobState
    stage: str
    progress: float
    attempts: int
    max_attempts: int
    created: float
    started: float | None
    finished: float | None
    worker: str | None
    lease_until: float | None
    error: str | None
    outputs: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    batch: str | None = None
    resources: dict = field(default_factory=dict)  # {"cpus": 2, "gpus": 0}
    versions: dict = field(default_factory=dict)  # {"facetalk": "...", ...} recorded at submit

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state"] = str(self.state)
        return d


_SCHEMA = [
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        request TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        stage TEXT NOT NULL DEFAULT '',
        progress REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        worker TEXT,
        lease_until REAL,
        error TEXT,
        outputs TEXT NOT NULL DEFAULT '[]',
        metrics TEXT NOT NULL DEFAULT '{}',
        batch TEXT,
        resources TEXT NOT NULL DEFAULT '{}',
        gpus INTEGER NOT NULL DEFAULT 0,
        versions TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX jobs_queue ON jobs (state, created, id)",
    "CREATE INDEX jobs_created ON jobs (created)",
    "CREATE INDEX jobs_batch ON jobs (batch)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        time REAL NOT NULL,
        worker TEXT,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX events_job ON events (job_id, seq)",
]
# schema version -> statements that bring a database from the version before up to it
_MIGRATIONS: dict[int, list[str]] = {1: _SCHEMA}

_ID_PATTERN = re.compile(r"[0-9a-f-]{1,40}")


def new_job_id(t: float | None = None) -> str:
    """'20261121-193812-a3f19c': local time of submission (sortable) + 24 random bits."""
    t = time.time() if t is None else t
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + "-" + secrets.token_hex(3)


def safe_name(text: str | None) -> str:
    """A name fit for a file name: letters, digits, '.', '_' and '-' only, at most 40 long."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text or "").strip("-._")[:NAME_MAX].strip("-._")
    return name or "render"


def job_name(request: dict) -> str:
    """The output's stem, else the identity's name, else the face file's stem."""
    if request.get("output"):
        return safe_name(Path(request["output"]).stem)
    if request.get("identity"):
        return safe_name(str(request["identity"]).split("@")[0])
    if request.get("face"):
        return safe_name(Path(request["face"]).stem)
    return "render"


@lru_cache(maxsize=1)
def software_versions() -> dict:
    """Versions a render depends on: facetalk, its models and the libraries that decode,
    align and encode (recorded with each job so it can be reproduced)."""
    from importlib import metadata

    from .. import __version__

    versions = {"facetalk": __version__, "python": sys.version.split()[0]}
    for dist in ("face-recognition-models", "dlib-bin", "pocketsphinx", "av", "opencv-python-headless",
                 "numpy", "scipy", "scikit-image"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _db_error(path: Path, e: Exception) -> JobError:
    return JobError(f"cannot use the job store {path}: {e} (check that the folder is writable, "
                    "or set FACETALK_HOME to another folder)")


class JobStore:
    def __init__(self, path: Path) -> None:
        """Open (and create, if missing) the job store at `path`."""
        self.path = Path(path).absolute()
        self.home = self.path.parent
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as e:
            raise _db_error(self.path, e) from None
        except OSError as e:
            raise _db_error(self.path, e.strerror or e) from None

    @classmethod
    def at_home(cls, home: Path) -> JobStore:
        return cls(Path(home) / DB_NAME)

    def __reduce__(self):  # picklable (to a spawned process, a Ray task): the path is the store
        return (type(self), (self.path,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise JobError(f"the job store {self.path} has schema {version}, newer than this facetalk "
                           f"reads ({SCHEMA_VERSION}): upgrade facetalk")
        with self._write() as db:  # another process may be creating it at the same moment
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[v]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taking the write lock at once (BEGIN IMMEDIATE): no reader
        of this transaction can be overtaken by another writer."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise _db_error(self.path, e) from None
            try:
                yield self._db
            except sqlite3.IntegrityError:
                self._rollback()
                raise
            except sqlite3.Error as e:
                self._rollback()
                raise _db_error(self.path, e) from None
            except BaseException:
                self._rollback()
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as e:
                    self._rollback()
                    raise _db_error(self.path, e) from None

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise _db_error(self.path, e) from None

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, message: str, worker: str | None, now: float,
               pending: list | None = None) -> None:
        db.execute("INSERT INTO events (job_id, time, worker, message) VALUES (?, ?, ?, ?)", (job_id, now, worker, message))
        if pending is not None:
            pending.append((job_id, message, now))

    def _flush_logs(self, pending: list) -> None:
        """Job-log lines for what a transaction did, written after it committed."""
        for job_id, message, now in pending:
            logs.append_job_log(self.home, job_id, message, t=now)

    # -- submitting and reading -----------------------------------------------------------

    def submit(self, request: dict, name: str | None = None, batch: str | None = None, max_attempts: int = 3,
               resources: dict | None = None, versions: dict | None = None, worker: str | None = None,
               lease_s: float = DEFAULT_LEASE_S) -> Job:
        """Queue a job for `request` (a RenderRequest as a dict, JSON-serialisable).

        versions: recorded beside the software versions (e.g. the identity version pinned).
        worker: the job is created already claimed by this worker (attempt 1, leased for
        lease_s), so no other worker can take it first: how `facetalk render` runs its own."""
        if max_attempts < 1:
            raise JobError(f"max_attempts must be at least 1, got {max_attempts}")
        resources = {"cpus": 2, "gpus": 0, **(resources or {})}
        gpus = int(resources.get("gpus") or 0)
        name = safe_name(name) if name else job_name(request)
        all_versions = {**software_versions(), **(versions or {})}
        try:
            request_json = json.dumps(request, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise JobError(f"the request cannot be stored: {e}") from None
        pending: list = []
        for _ in range(10):
            now = time.time()
            job_id = new_job_id(now)
            try:
                with self._write() as db:
                    running = worker is not None
                    db.execute(
                        "INSERT INTO jobs (id, name, request, state, attempts, max_attempts, created, started, worker,"
                        " lease_until, batch, resources, gpus, versions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job_id, name, request_json, JobState.RUNNING if running else JobState.QUEUED,
                         1 if running else 0, max_attempts, now, now if running else None, worker,
                         now + lease_s if running else None, batch, json.dumps(resources), gpus,
                         json.dumps(all_versions)))
                    self._event(db, job_id, "submitted" + (f" in batch {batch}" if batch else ""), None, now, pending)
                    if running:
                        self._event(db, job_id, f"attempt 1/{max_attempts} started by {worker}", worker, now, pending)
            except sqlite3.IntegrityError:
                pending.clear()
                continue  # the same id in the same second: draw another
            self._flush_logs(pending)
            return self.get(job_id)
        raise JobError("could not draw a unique job id")  # pragma: no cover - 10 collisions of 24 bits

    def get(self, job_id: str) -> Job:
        """The job with this id, or with this unique id prefix (or random suffix)."""
        return _to_job(self._find(job_id))

    def _find(self, job_id: str) -> sqlite3.Row:
        key = (job_id or "").strip().lower()
        if not _ID_PATTERN.fullmatch(key):
            raise JobError(f"no job {job_id!r}: a job id looks like 20261121-193812-a3f19c (see 'facetalk jobs list')")
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (key,))
        if not rows:
            rows = self._read("SELECT * FROM jobs WHERE id LIKE ? ORDER BY id LIMIT 6", (key + "%",))
        if not rows and "-" not in key:
            rows = self._read("SELECT * FROM jobs WHERE id LIKE ? ORDER BY id LIMIT 6", ("%-" + key + "%",))
        if not rows:
            raise JobError(f"no job {job_id!r} in {self.path} (see 'facetalk jobs list')")
        if len(rows) > 1:
            shown = ", ".join(r["id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise JobError(f"job id {job_id!r} is ambiguous: it matches {shown}; give more of it")
        return rows[0]

    def list(self, state: JobState | str | None = None, batch: str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs, oldest first; with limit, the newest `limit` of them."""
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(str(JobState(state)))
        if batch is not None:
            where.append("batch = ?")
            args.append(batch)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_to_job(r) for r in reversed(self._read(sql, tuple(args)))]

    def counts(self, batch: str | None = None) -> dict[str, int]:
        """Number of jobs in each state (every state present, 0 when none)."""
        sql = "SELECT state, COUNT(*) AS n FROM jobs" + (" WHERE batch = ?" if batch is not None else "") + " GROUP BY state"
        found = {r["state"]: r["n"] for r in self._read(sql, (batch,) if batch is not None else ())}
        return {str(s): found.get(str(s), 0) for s in JobState}

    def events(self, job_id: str) -> list[dict]:
        """The job's history: {"time", "worker", "message"}, oldest first."""
        job_id = self._find(job_id)["id"]
        return [{"time": r["time"], "worker": r["worker"], "message": r["message"]}
                for r in self._read("SELECT time, worker, message FROM events WHERE job_id = ? ORDER BY seq", (job_id,))]

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> Job:
        """Wait until the job is in a final state; return it. JobError on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.state.final:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobError(f"job {job.id} is still {job.state} after {timeout:g} s")
            time.sleep(poll)

    # -- workers ------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float = DEFAULT_LEASE_S, job_id: str | None = None, gpus: int = 0,
              batch: str | None = None) -> Job | None:
        """Take the oldest queued job (or job `job_id`, exactly) this worker can run, atomically.

        Jobs whose lease expired are first put back in the queue (the attempt they were on
        stays counted; when it was the last, they fail). A worker with `gpus` GPUs never
        takes a job needing more. batch: only a job of this batch. None when there is
        nothing to take."""
        pending: list = []
        with self._write() as db:
            now = time.time()
            expired = self._requeue_expired(db, now, pending)
            where, args = "state = 'queued' AND gpus <= ?", [gpus]
            if batch is not None:
                where += " AND batch = ?"
                args.append(batch)
            if job_id is not None:
                row = db.execute(f"SELECT * FROM jobs WHERE id = ? AND {where}", (job_id, *args)).fetchone()
            else:
                row = db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY created, id LIMIT 1", args).fetchone()
            if row is not None:
                attempt = row["attempts"] + 1
                db.execute("UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, attempts = ?, started = ?,"
                           " finished = NULL, stage = '', progress = 0 WHERE id = ?",
                           (worker, now + lease_s, attempt, now, row["id"]))
                self._event(db, row["id"], f"attempt {attempt}/{row['max_attempts']} started by {worker}", worker, now, pending)
        self._flush_logs(pending)
        self._clean_expired(expired)
        return None if row is None else self.get(row["id"])

    def requeue_expired(self) -> list[str]:
        """Put back (or fail) the jobs whose lease expired now; their ids."""
        pending: list = []
        with self._write() as db:
            expired = self._requeue_expired(db, time.time(), pending)
        self._flush_logs(pending)
        self._clean_expired(expired)
        return [r["id"] for r in expired]

    def _requeue_expired(self, db: sqlite3.Connection, now: float, pending: list) -> list[sqlite3.Row]:
        rows = db.execute("SELECT * FROM jobs WHERE state = 'running' AND lease_until < ?", (now,)).fetchall()
        for r in rows:
            why = f"worker {r['worker']} stopped responding (its lease expired) on attempt {r['attempts']}/{r['max_attempts']}"
            if r["attempts"] >= r["max_attempts"]:
                db.execute("UPDATE jobs SET state = 'failed', finished = ?, lease_until = NULL, error = ? WHERE id = ?",
                           (now, why, r["id"]))
                self._event(db, r["id"], f"failed: {why}", None, now, pending)
            else:
                db.execute("UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, stage = '', progress = 0,"
                           " error = ? WHERE id = ?", (why, r["id"]))
                self._event(db, r["id"], f"requeued: {why}", None, now, pending)
        return rows

    def _clean_expired(self, rows: list[sqlite3.Row]) -> None:
        """Remove what a dead worker left half-written (hidden temporary files of the output)."""
        if not rows:
            return
        from .outputs import clean_partials, output_path

        for r in rows:
            try:
                clean_partials(output_path(self.home, _to_job(r)))
            except OSError:
                pass  # the next attempt cleans again before it starts

    def renew(self, job_id: str, worker: str, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Extend the worker's lease. False when the job was cancelled or is no longer this
        worker's (its lease expired and it was requeued): the worker must stop it."""
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND state = 'running'",
                             (time.time() + lease_s, job_id, worker))
            return cur.rowcount == 1

    def report(self, job_id: str, worker: str, stage: str, fraction: float) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND worker = ? AND state = 'running'",
                       (stage, float(min(1.0, max(0.0, fraction))), job_id, worker))

    def succeed(self, job_id: str, worker: str, outputs: list[str], metrics: dict) -> bool:
        """Mark the job done. False (and nothing changed) when it is no longer this worker's."""
        pending: list = []
        with self._write() as db:
            now = time.time()
            cur = db.execute("UPDATE jobs SET state = 'succeeded', finished = ?, lease_until = NULL, stage = 'done',"
                             " progress = 1, error = NULL, outputs = ?, metrics = ?"
                             " WHERE id = ? AND worker = ? AND state = 'running'",
                             (now, json.dumps([str(o) for o in outputs]), json.dumps(metrics, default=str), job_id, worker))
            if cur.rowcount == 1:
                self._event(db, job_id, "succeeded: " + ", ".join(str(o) for o in outputs), worker, now, pending)
        self._flush_logs(pending)
        return cur.rowcount == 1

    def fail(self, job_id: str, worker: str, error: str, retry: bool) -> JobState | None:
        """Record a failed attempt. retry: queue the job again while it has attempts left;
        else (or when they are used up) it fails with `error`. Returns the job's new state,
        None when the job is no longer this worker's (nothing changed)."""
        error = " ".join(str(error).split()) or "unknown error"
        pending: list = []
        with self._write() as db:
            now = time.time()
            row = db.execute("SELECT attempts, max_attempts FROM jobs WHERE id = ? AND worker = ? AND state = 'running'",
                             (job_id, worker)).fetchone()
            if row is None:
                return None
            attempt = f"attempt {row['attempts']}/{row['max_attempts']}"
            if retry and row["attempts"] < row["max_attempts"]:
                state = JobState.QUEUED
                db.execute("UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, stage = '', progress = 0,"
                           " error = ? WHERE id = ?", (error, job_id))
                self._event(db, job_id, f"{attempt} failed, will retry: {error}", worker, now, pending)
            else:
                state = JobState.FAILED
                db.execute("UPDATE jobs SET state = 'failed', finished = ?, lease_until = NULL, error = ? WHERE id = ?",
                           (now, error, job_id))
                self._event(db, job_id, f"{attempt} failed: {error}", worker, now, pending)
        self._flush_logs(pending)
        return state

    def release(self, job_id: str, worker: str, reason: str = "the worker is shutting down") -> bool:
        """Give a job back to the queue without counting the attempt. False when it is no
        longer this worker's."""
        pending: list = []
        with self._write() as db:
            now = time.time()
            cur = db.execute("UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, stage = '', progress = 0,"
                             " attempts = MAX(0, attempts - 1) WHERE id = ? AND worker = ? AND state = 'running'",
                             (job_id, worker))
            if cur.rowcount == 1:
                self._event(db, job_id, f"given back to the queue: {reason}", worker, now, pending)
        self._flush_logs(pending)
        return cur.rowcount == 1

    # -- people -------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        """Cancel a queued or running job (a running one stops within a second or two: its
        worker's next lease renewal fails). Cancelling a cancelled job changes nothing."""
        pending: list = []
        with self._write() as db:
            row = self._find_in(db, job_id)
            state = JobState(row["state"])
            if state in (JobState.SUCCEEDED, JobState.FAILED):
                raise JobError(f"job {row['id']} already {state}: nothing to cancel")
            if state != JobState.CANCELLED:
                now = time.time()
                db.execute("UPDATE jobs SET state = 'cancelled', finished = ?, lease_until = NULL, error = ? WHERE id = ?",
                           (now, reason, row["id"]))
                self._event(db, row["id"], f"cancelled ({reason}) while {state}", None, now, pending)
        self._flush_logs(pending)
        return self.get(row["id"])

    def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again, with all its attempts."""
        pending: list = []
        with self._write() as db:
            row = self._find_in(db, job_id)
            state = JobState(row["state"])
            if state not in (JobState.FAILED, JobState.CANCELLED):
                hint = "; submit it again for another render" if state == JobState.SUCCEEDED else ""
                raise JobError(f"job {row['id']} is {state}: only failed or cancelled jobs can be retried{hint}")
            now = time.time()
            db.execute("UPDATE jobs SET state = 'queued', attempts = 0, started = NULL, finished = NULL, worker = NULL,"
                       " lease_until = NULL, stage = '', progress = 0, error = NULL, outputs = '[]', metrics = '{}'"
                       " WHERE id = ?", (row["id"],))
            self._event(db, row["id"], f"retried (was {state})", None, now, pending)
        self._flush_logs(pending)
        return self.get(row["id"])

    def delete(self, job_id: str) -> None:
        """Remove a job that is not running, its history and its log (never its outputs)."""
        with self._write() as db:
            row = self._find_in(db, job_id)
            if row["state"] == JobState.RUNNING:
                raise JobError(f"job {row['id']} is running: cancel it first")
            db.execute("DELETE FROM events WHERE job_id = ?", (row["id"],))
            db.execute("DELETE FROM jobs WHERE id = ?", (row["id"],))
        logs.remove_job_log(self.home, row["id"])

    def clean(self, older_than_s: float) -> int:
        """Remove finished jobs (succeeded, failed, cancelled) that finished more than
        older_than_s seconds ago, with their history and logs (not their outputs)."""
        with self._write() as db:
            cutoff = time.time() - older_than_s
            ids = [r["id"] for r in db.execute(
                "SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
                " AND COALESCE(finished, created) < ?", (cutoff,))]
            db.executemany("DELETE FROM events WHERE job_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        for i in ids:
            logs.remove_job_log(self.home, i)
        return len(ids)

    def _find_in(self, db: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        """_find inside a write transaction (the row cannot change before the update)."""
        found = self._find(job_id)  # same connection, same transaction: sees what it sees
        return db.execute("SELECT * FROM jobs WHERE id = ?", (found["id"],)).fetchone()


def _to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], name=row["name"], request=json.loads(row["request"]), state=JobState(row["state"]),
        stage=row["stage"], progress=row["progress"], attempts=row["attempts"], max_attempts=row["max_attempts"],
        created=row["created"], started=row["started"], finished=row["finished"], worker=row["worker"],
        lease_until=row["lease_until"], error=row["error"], outputs=json.loads(row["outputs"]),
        metrics=json.loads(row["metrics"]), batch=row["batch"], resources=json.loads(row["resources"]),
        versions=json.loads(row["versions"]),
    )


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s' (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if m is None:
        raise JobError(f"duration {text!r} is not a number with a unit s, m, h, d or w (e.g. 30d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
