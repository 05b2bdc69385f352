"""Logs of the job service: one rotating service log, one plain log per job.

    <home>/logs/facetalk.log          the service (workers, in-process renders): rotating,
                                      5 files of 5 MB at most
    <home>/logs/jobs/<job-id>.log     everything about one job: each attempt, its stages,
                                      warnings, the error (with a traceback for a bug)

Job logs are appended to by whoever touches the job (the store when it requeues a job
whose worker died, the worker running it), each line a single O_APPEND write, so several
processes can write one log without interleaving inside lines.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import time
from pathlib import Path

SERVICE_LOG = "facetalk.log"
SERVICE_MAX_BYTES = 5 * 1024 * 1024
SERVICE_BACKUPS = 4
SERVICE_LOGGER = "facetalk.service"
_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"


def logs_dir(home: Path) -> Path:
    return Path(home) / "logs"


def job_log_path(home: Path, job_id: str) -> Path:
    return logs_dir(home) / "jobs" / f"{job_id}.log"


def _stamp(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime(_DATEFMT, time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def append_job_log(home: Path, job_id: str, message: str, level: str = "INFO", t: float | None = None) -> None:
    """Add one line to a job's log; never raises (a log must not fail a job)."""
    path = job_log_path(home, job_id)
    line = f"{_stamp(t)} {level} {message}".replace("\n", " | ") + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def read_job_log(home: Path, job_id: str) -> str | None:
    """The job's log, or None when this machine has none."""
    try:
        return job_log_path(home, job_id).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def remove_job_log(home: Path, job_id: str) -> None:
    try:
        job_log_path(home, job_id).unlink(missing_ok=True)
    except OSError:
        pass


class _AppendHandler(logging.Handler):
    """Writes each record as one O_APPEND line to the job's log (no file kept open)."""

    def __init__(self, home: Path, job_id: str) -> None:
        super().__init__()
        self.home, self.job_id = Path(home), job_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - a broken format string must not fail the job
            message = str(record.msg)
        if "\n" in message:  # a traceback: kept readable, line by line
            first, *rest = message.split("\n")
            append_job_log(self.home, self.job_id, first, record.levelname, record.created)
            for line in rest:
                if line.strip():
                    append_job_log(self.home, self.job_id, "    " + line, record.levelname, record.created)
        else:
            append_job_log(self.home, self.job_id, message, record.levelname, record.created)


def job_logger(home: Path, job_id: str, parent: logging.Logger | None = None) -> logging.Logger:
    """A logger writing to the job's log file. Not registered with logging (no leak per job);
    with `parent`, records also go on to it (and its handlers)."""
    logger = logging.Logger(f"facetalk.job.{job_id}", logging.INFO)  # noqa: LOG001 - one per job, not kept
    logger.addHandler(_AppendHandler(home, job_id))
    if parent is not None:
        logger.parent = parent
        logger.propagate = True
    else:
        logger.propagate = False
    return logger


def service_logger(home: Path) -> logging.Logger:
    """The service's logger, writing to <home>/logs/facetalk.log (rotating).

    One handler per log file per process however often it is asked for. Rotation is done
    by whichever process passes the size first; with several processes a few lines may land
    in the file just rotated, never lost."""
    path = (logs_dir(home) / SERVICE_LOG).absolute()
    # one logger per home, so two homes in one process (tests) never share a file
    logger = logging.getLogger(f"{SERVICE_LOGGER}.h{hashlib.sha1(str(path).encode()).hexdigest()[:12]}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in logger.handlers:
        if isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path:
            return logger
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=SERVICE_MAX_BYTES, backupCount=SERVICE_BACKUPS, encoding="utf-8", delay=True
        )
    except OSError:
        return logger  # no service log on a read-only home; jobs still run
    handler.setFormatter(logging.Formatter(f"%(asctime)s.%(msecs)03d [{os.getpid()}] %(levelname)s %(message)s", _DATEFMT))
    logger.addHandler(handler)
    return logger
