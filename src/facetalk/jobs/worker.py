"""Workers: processes that take jobs from the store and run them, one at a time each.

`facetalk worker` is one worker; `facetalk worker --concurrency N` starts N of them as
child processes (`facetalk worker --concurrency 1`) and starts another when one dies, so a
kill -9 of a worker loses at most the job it was running, which is requeued when its lease
expires and runs again.

A worker keeps its face models and caches (JobCache) from one job to the next. SIGTERM or
Ctrl-C stops it cleanly: the job it is running stops and goes back to the queue without
counting the attempt; a second Ctrl-C interrupts at once (the job still goes back).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from . import logs
from .runner import JobCache, Outcome, execute, run_job, worker_id
from .store import DEFAULT_LEASE_S, JobError, JobStore


class Worker:
    """Claims and runs jobs until stopped (or, with once, until nothing is left to claim).

    executor: what runs a job (execute; a test may pass a stand-in with the same signature).
    on_event: called with a line for each job started and finished (the CLI prints them)."""

    def __init__(self, home: Path, *, lease_s: float = DEFAULT_LEASE_S, renew_s: float | None = None,
                 poll_s: float = 1.0, gpus: int = 0, once: bool = False, max_jobs: int | None = None,
                 executor: Callable[..., dict] = execute, name: str | None = None,
                 on_event: Callable[[str], None] | None = None, batch: str | None = None,
                 models=None, cache: JobCache | None = None) -> None:
        self.home = Path(home)
        self.lease_s, self.renew_s, self.poll_s = lease_s, renew_s, poll_s
        self.gpus, self.once, self.max_jobs = gpus, once, max_jobs
        self.batch = batch  # only jobs of this batch
        self.models = models  # FaceModels and JobCache to use (None: its own, made by run)
        self.cache = cache
        self.executor = executor
        self.id = name or worker_id()
        self.on_event = on_event or (lambda line: None)
        self.stop_event = threading.Event()
        self.outcomes: list[Outcome] = []

    def stop(self) -> None:
        """Stop after (or, when it is running one, by giving back) the current job."""
        self.stop_event.set()

    def run(self) -> list[Outcome]:
        """Run jobs until stopped; how each ended."""
        from ..face.models import FaceModels

        store = JobStore.at_home(self.home)
        log = logs.service_logger(self.home)
        if self.models is None:
            self.models = FaceModels()  # loaded on first use, then kept for every job
        if self.cache is None:
            self.cache = JobCache(self.home)
        models, cache = self.models, self.cache
        log.info(f"worker {self.id} started")
        try:
            while not self.stop_event.is_set():
                if self.max_jobs is not None and len(self.outcomes) >= self.max_jobs:
                    break
                try:
                    job = store.claim(self.id, self.lease_s, gpus=self.gpus, batch=self.batch)
                    if job is None:
                        if self.once:
                            break
                        self.stop_event.wait(self.poll_s)
                        continue
                    self.on_event(f"{self.id}: job {job.id} ({job.name}) attempt {job.attempts}/{job.max_attempts}")
                    outcome = run_job(store, job, self.id, self.home, lease_s=self.lease_s, renew_s=self.renew_s,
                                      models=models, cache=cache, executor=self.executor, stop=self.stop_event, log=log)
                except JobError as e:  # the store could not be reached (for 30 s): try again later
                    self.on_event(f"{self.id}: {e}")
                    log.error(f"worker {self.id}: {e}")
                    self.stop_event.wait(max(self.poll_s, 5.0))
                    continue
                self.outcomes.append(outcome)
                detail = f": {outcome.error}" if outcome.state in ("failed", "queued") and outcome.error else ""
                self.on_event(f"{self.id}: job {job.id} {outcome.state} in {outcome.seconds:.2f} s{detail}")
        finally:
            log.info(f"worker {self.id} stopped after {len(self.outcomes)} jobs")
            store.close()
        return self.outcomes


@contextmanager
def stop_on_signals(stop: Callable[[], None]):
    """SIGTERM and the first Ctrl-C call stop(); a second Ctrl-C raises KeyboardInterrupt.
    Only in the main thread (elsewhere signals cannot be handled); handlers restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = {"int": 0}

    def on_term(signum, frame):
        stop()

    def on_int(signum, frame):
        seen["int"] += 1
        stop()
        if seen["int"] > 1:
            raise KeyboardInterrupt

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def worker_command_line(home: Path, *, lease_s: float, poll_s: float, gpus: int, once: bool, quiet: bool,
                        renew_s: float | None = None, batch: str | None = None) -> list[str]:
    """The command that runs one worker process."""
    cmd = [sys.executable, "-m", "facetalk", "worker", "--home", str(home), "--concurrency", "1",
           "--lease", f"{lease_s:g}", "--poll", f"{poll_s:g}", "--gpus", str(gpus)]
    if batch is not None:
        cmd += ["--batch", batch]
    if renew_s is not None:
        cmd += ["--renew", f"{renew_s:g}"]
    if once:
        cmd.append("--once")
    if quiet:
        cmd.append("--quiet")
    return cmd


class Pool:
    """N worker processes; one that dies (killed, crashed) is replaced unless stopping or
    once. Exit codes: 2 (a user error: the store cannot be used) is not retried."""

    def __init__(self, home: Path, concurrency: int, *, lease_s: float = DEFAULT_LEASE_S, poll_s: float = 1.0,
                 gpus: int = 0, once: bool = False, quiet: bool = False, renew_s: float | None = None,
                 on_event: Callable[[str], None] | None = None, restart_delay_s: float = 1.0,
                 batch: str | None = None) -> None:
        self.home = Path(home)
        self.concurrency = concurrency
        self.command = worker_command_line(self.home, lease_s=lease_s, poll_s=poll_s, gpus=gpus, once=once,
                                           quiet=quiet, renew_s=renew_s, batch=batch)
        self.once = once
        self.on_event = on_event or (lambda line: None)
        self.restart_delay_s = restart_delay_s
        self.stop_event = threading.Event()
        self.procs: list[subprocess.Popen | None] = [None] * concurrency

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.procs:
            if p is not None and p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        log = logs.service_logger(self.home)
        codes: list[int | None] = [None] * self.concurrency
        started = [0.0] * self.concurrency
        for i in range(self.concurrency):
            self.procs[i] = subprocess.Popen(self.command)
            started[i] = time.monotonic()
        log.info(f"pool of {self.concurrency} workers started: pids {[p.pid for p in self.procs]}")
        while True:
            alive = False
            for i, p in enumerate(self.procs):
                if p is None:
                    continue
                rc = p.poll()
                if rc is None:
                    alive = True
                    continue
                codes[i] = rc
                self.procs[i] = None
                if rc == 0 or rc == 2 or self.once or self.stop_event.is_set():
                    continue
                how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                self.on_event(f"worker process {p.pid} died ({how}); starting another")
                log.warning(f"worker process {p.pid} died ({how}); starting another")
                time.sleep(max(0.0, self.restart_delay_s - (time.monotonic() - started[i])))
                self.procs[i] = subprocess.Popen(self.command)
                started[i] = time.monotonic()
                alive = True
            if not alive:
                break
            self.stop_event.wait(0.2)
        bad = [c for c in codes if c not in (0, None)]
        return 0 if not bad else (bad[0] if bad[0] > 0 else 1)


__all__ = ["Pool", "Worker", "stop_on_signals", "worker_command_line"]
