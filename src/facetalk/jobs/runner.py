"""Running one job: the request from the store through facetalk.pipeline.render to an
output and its sidecar, with the job's progress, lease and log kept up to date.

One code path serves every way a render runs: `facetalk worker` claims jobs and calls
run_job; `facetalk render` submits a job already claimed by itself and calls run_job in
its own process (run_in_process).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..context import RunContext
from ..errors import (
    Cancelled,
    FacetalkError,
    IdentityError,
    InputError,
    NoFaceError,
    OutputError,
    SpeechError,
)
from . import logs
from .outputs import clean_partials, output_path, sidecar_path, write_sidecar
from .store import DEFAULT_LEASE_S, Job, JobError, JobState, JobStore

# Errors of the input: a job that failed with one fails the same way every time.
NOT_RETRIED = (InputError, NoFaceError, IdentityError, SpeechError, JobError)
PROGRESS_INTERVAL_S = 0.25  # at most 4 progress writes a second per job
RENEW_INTERVAL_S = 0.5  # how often a running job's lease is renewed (and cancellation seen)


class WorkerLost(FacetalkError):
    """The machine or process running the job went away mid-run (a Ray node died, its
    worker process crashed): the job is retried like one whose local worker died."""


def retryable(e: BaseException) -> bool:
    """Worth another attempt: an output that could not be written (a full disk, a folder
    made read-only), a lost worker, or a bug / environment error (not any other
    FacetalkError, which names something the user must change)."""
    if isinstance(e, (OutputError, WorkerLost)):
        return True
    return not isinstance(e, FacetalkError)


def error_line(e: BaseException) -> str:
    """The one line a job's error shows: the FacetalkError's message, else 'Type: message'."""
    text = str(e) if isinstance(e, FacetalkError) else f"internal error: {type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if len(text) <= 1000 else text[:997] + "..."


def worker_id(prefix: str = "worker") -> str:
    """'worker-host-1234-a3f1': unique to this process (and call)."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:30] or "host"
    return f"{prefix}-{host}-{os.getpid()}-{secrets.token_hex(2)}"


# -- requests ------------------------------------------------------------------------------

def request_from_dict(d: dict):
    """A RenderRequest from a stored request (the output may be None: the job's default)."""
    from ..pipeline import RenderRequest

    known = {f.name for f in dataclasses.fields(RenderRequest)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise JobError(f"the job's request has fields this facetalk does not know ({', '.join(unknown)}): "
                       "it was submitted by a newer facetalk")
    d = dict(d)
    if isinstance(d.get("size"), list):
        d["size"] = tuple(d["size"])
    if d.get("output") is None:
        d["output"] = ""
    return RenderRequest(**d)


def prepare_request(request, home: Path, validate: bool = True) -> tuple[dict, dict]:
    """The request as a job stores it, and versions to record with it.

    Paths become absolute (the worker may run elsewhere, from another folder); an identity
    given by name is pinned to the version that is its latest now. With validate, bad input
    fails here with the one-line error the render would give later: files that are missing
    or of the wrong kind, an unknown identity, an output that cannot be written, options
    out of range."""
    from ..media.encode import check_output_path
    from ..media.formats import classify
    from ..render.base import available_renderers

    d = request.to_dict() if hasattr(request, "to_dict") else dict(request)
    for key in ("face", "audio", "output", "base", "lut", "enhancer"):
        if d.get(key):
            d[key] = str(Path(d[key]).expanduser().absolute())
    if not d.get("output"):
        d["output"] = None
    versions: dict = {}
    if d.get("identity"):
        from ..identity.registry import Registry, format_ref

        try:
            name, version = Registry(home).resolve(d["identity"])
            d["identity"] = format_ref(name, version)
            versions["identity"] = d["identity"]
        except IdentityError:
            if validate:
                raise
    if not validate:
        return d, versions
    if not d.get("face") and not d.get("identity"):
        raise InputError("give --face (a photo or video of the person) or --identity NAME")
    if d.get("face"):
        classify(d["face"], role="--face")
    if d.get("text") is not None:  # spoken by text-to-speech when the job runs
        from ..tts import check_text_request

        check_text_request(d.get("audio"), d.get("transcript"), d["text"], d.get("voice"), d.get("rate"), d.get("pitch"))
    else:
        if not d.get("audio"):
            raise InputError("give --audio (the speech) or --text (words to speak)")
        classify(d["audio"], role="--audio")
    if d.get("output"):
        check_output_path(d["output"])
    if d.get("fps") is not None and not 1 <= d["fps"] <= 120:
        raise InputError(f"--fps {d['fps']} is out of range (1 to 120)")
    renderer = d.get("renderer")
    if renderer is not None:
        if renderer not in available_renderers():
            raise InputError(f"unknown renderer {renderer!r}: use one of {', '.join(available_renderers())}")
        if renderer == "retrieval" and not d.get("identity"):
            raise InputError("the retrieval renderer needs an identity: use --identity NAME")
    _check_finish(d)
    return d, versions


def _check_finish(d: dict) -> None:
    """The finishing options of a stored request: ranges, files there, the LUT parsed (cheap;
    the enhancer model is loaded when the job runs)."""
    from ..finish.options import FinishOptions, check_finish_values

    default = FinishOptions()
    get = lambda key: d.get(key, getattr(default, key))  # noqa: E731 - a request may leave any out
    check_finish_values(get("lut"), get("lut_strength"), get("enhancer"), get("label_text"), get("label_corner"),
                        get("label_size"), get("label_opacity"))
    if get("lut"):
        from ..finish.lut import load_lut

        load_lut(get("lut"))


# -- what a long-lived worker keeps between jobs -----------------------------------------

class _CachingRegistry:
    """A Registry whose load() keeps the last few identities it loaded, by version (a
    version never changes once made, so loading and verifying it once is enough)."""

    def __init__(self, registry, size: int) -> None:
        self._registry = registry
        self._loaded: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.loads = 0  # identities loaded (and verified) from disk
        self.reuses = 0  # loads answered from memory

    def load(self, ref: str):
        from ..identity.registry import format_ref

        key = format_ref(*self._registry.resolve(ref))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                self.reuses += 1
                return self._loaded[key]
        identity = self._registry.load(key)
        with self._lock:
            self.loads += 1
            self._loaded[key] = identity
            while len(self._loaded) > self._size:
                self._loaded.popitem(last=False)
        return identity

    def __getattr__(self, name):
        return getattr(self._registry, name)


class JobCache:
    """What a worker process keeps from one job to the next, passed explicitly to execute.

    registry: identities loaded once per version. speech(): a small LRU of speech analyses
    keyed by the audio's sha256 and the transcript (speech_key), which pipeline.render uses:
    one audio rendered for several identities is analysed once."""

    def __init__(self, home: Path, identities: int = 4, speech_items: int = 32) -> None:
        from ..identity.registry import Registry

        self.registry = _CachingRegistry(Registry(home), identities)
        self._speech: OrderedDict = OrderedDict()
        self._speech_items = speech_items
        self._lock = threading.Lock()
        self._analysing = threading.Lock()  # held while one render analyses speech (see speech())
        self.speech_analyses = 0  # speech analysed (computed)
        self.speech_reuses = 0  # renders that reused an analysis
        self._pools: dict[tuple[str, str], object] = {}
        self.bases_loaded = 0  # neural base models loaded
        self.bases_reused = 0  # neural renders that found their base already loaded

    def stats(self) -> dict:
        """What was shared: speech analyses computed and reused, identities loaded and reused."""
        return {"speech_analyses": self.speech_analyses, "speech_reused": self.speech_reuses,
                "identities_loaded": self.registry.loads, "identities_reused": self.registry.reuses,
                "bases_loaded": self.bases_loaded, "bases_reused": self.bases_reused}

    @property
    def pools(self) -> list:
        """The neural base models (BaseModelPool) loaded so far."""
        with self._lock:
            return list(self._pools.values())

    def neural_pool(self, base_dir: str | Path, device: str):
        """The neural base model in base_dir, loaded once per worker (facetalk.neural.
        adapters.BaseModelPool): each identity's adapter is added to it once and switched
        per job (set_adapter), so a batch across identities never reloads the base."""
        key = (str(Path(base_dir).resolve()), device)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self.bases_reused += 1
                return pool
        from ..neural.adapters import BaseModelPool

        pool = BaseModelPool(base_dir, device=device)
        with self._lock:
            pool = self._pools.setdefault(key, pool)
            self.bases_loaded += 1
        return pool

    @staticmethod
    def speech_key(audio_path: str | Path, transcript: str | None) -> tuple[str, str]:
        import hashlib

        h = hashlib.sha256()
        with open(audio_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest(), transcript or ""

    def speech(self, key, compute: Callable[[], object]):
        # renders side by side (a batch's lanes) starting on one audio: one analyses it, the
        # others wait for its result instead of analysing it again
        with self._analysing:
            with self._lock:
                if key in self._speech:
                    self._speech.move_to_end(key)
                    self.speech_reuses += 1
                    return self._speech[key]
            value = compute()
            with self._lock:
                self.speech_analyses += 1
                self._speech[key] = value
                while len(self._speech) > self._speech_items:
                    self._speech.popitem(last=False)
        return value


# -- executing -----------------------------------------------------------------------------

def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def execute(job: Job, home: Path, ctx: RunContext, models=None, cache: JobCache | None = None) -> dict:
    """Render the job's request; {"outputs": [video, sidecar], "metrics": {...}, "result": RenderResult}.

    The video goes to the request's output, else outputs/<date>/<id>-<name>.mp4; it appears
    only when complete (the VideoWriter renames its temporary file), and the sidecar (the
    request, result and versions) after it. Leftovers of an earlier attempt are removed
    first."""
    from ..identity.registry import Registry
    from ..pipeline import render

    request = request_from_dict(job.request)
    out = prepare_output(home, job, ctx)
    request = replace(request, output=str(out))
    registry = cache.registry if cache is not None else Registry(home)
    started = time.time()
    result = render(request, ctx, models=models, registry=registry, cache=cache)
    seconds = time.time() - started
    return {**finish_job(job, out, result.to_dict(), seconds, ctx), "result": result}


def prepare_output(home: Path, job: Job, ctx: RunContext) -> Path:
    """The job's output path, its folder made (a default output) and leftovers of an
    earlier attempt removed."""
    out = output_path(home, job)
    default = not job.request.get("output")
    try:
        if default:
            out.parent.mkdir(parents=True, exist_ok=True)
        if default or job.attempts > 1:  # a default output is this job's own: nothing else writes it
            for p in clean_partials(out):
                ctx.log.info(f"removed {p.name}, left by an earlier attempt")
    except OSError as e:
        raise OutputError(f"cannot write to folder {out.parent}: {e.strerror or e} (choose another output folder)") from None
    return out


def finish_job(job: Job, out: Path, result_dict: dict, seconds: float, ctx: RunContext) -> dict:
    """After the video `out` is written: its sidecar (the request, result and versions),
    and {"outputs": [video, sidecar], "metrics": {...}} for the store."""
    result_dict = {**result_dict, "output": str(out)}
    metrics = {k: v for k, v in result_dict.items() if k != "output"}
    metrics.update(seconds=round(seconds, 3), attempt=job.attempts)
    sidecar = write_sidecar(out, {
        "job": job.id, "name": job.name, "batch": job.batch, "attempt": job.attempts,
        "submitted": _iso(job.created), "finished": _iso(time.time()), "seconds": round(seconds, 3),
        "request": {**job.request, "output": str(out)}, "result": result_dict, "versions": job.versions,
    })
    if sidecar is None:
        ctx.warn(f"{sidecar_path(out)} exists and was not written by facetalk: left alone, no sidecar written")
    outputs = [str(out)] + ([str(sidecar)] if sidecar is not None else [])
    return {"outputs": outputs, "metrics": metrics}


class StoreProgress:
    """A RunContext progress callback: the store at most every `interval` seconds (and at
    every change of stage), the job log at every change of stage, and an optional sink."""

    def __init__(self, store: JobStore, job_id: str, worker: str, log: logging.Logger, sink=None,
                 interval: float = PROGRESS_INTERVAL_S) -> None:
        self.store, self.job_id, self.worker, self.log, self.sink = store, job_id, worker, log, sink
        self.interval = interval
        self.stage: str | None = None
        self.last = 0.0
        self.writes = 0
        self._lock = threading.Lock()

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if self.sink is not None:
            self.sink(stage, fraction, message)
        now = time.monotonic()
        with self._lock:
            changed = stage != self.stage
            if changed:
                self.stage = stage
                self.log.info(f"stage {stage}" + (f": {message}" if message else ""))
            elif now - self.last < self.interval:
                return
            self.last = now
            self.writes += 1
        try:
            self.store.report(self.job_id, self.worker, stage, fraction)
        except JobError as e:  # progress is best effort; the lease keeper notices a lost store
            self.log.warning(f"progress not recorded: {e}")


class LeaseKeeper:
    """Renews a running job's lease every `interval` seconds on a thread of its own, and
    sets `cancel` (which the pipeline checks at every frame) when the job must stop:

        reason "cancelled"  someone cancelled it (the renewal was refused, the job is cancelled)
        reason "lost"       another worker owns it now, or the store could not be reached
                            for most of a lease (so it may be given to another worker)
        reason "shutdown"   `stop` was set: the worker is shutting down and gives it back
    """

    def __init__(self, store: JobStore, job_id: str, worker: str, lease_s: float, cancel: threading.Event,
                 stop: threading.Event | None = None, interval: float | None = None, log: logging.Logger | None = None):
        self.store, self.job_id, self.worker, self.lease_s = store, job_id, worker, lease_s
        self.cancel, self.stop_event = cancel, stop
        self.interval = interval if interval is not None else min(RENEW_INTERVAL_S, lease_s / 4)
        self.log = log or logging.getLogger("facetalk.jobs")
        self.reason: str | None = None
        self.tripped_at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _trip(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.tripped_at = time.monotonic()
            self.cancel.set()

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._done.wait(self.interval):
            if self.stop_event is not None and self.stop_event.is_set():
                self._trip("shutdown")  # and keep renewing until the job is given back
            try:
                ok = self.store.renew(self.job_id, self.worker, self.lease_s)
            except FacetalkError as e:
                self.log.warning(f"lease not renewed: {e}")
                if time.monotonic() - last_ok > 0.6 * self.lease_s:
                    self._trip("lost")
                    return
                continue
            if ok:
                last_ok = time.monotonic()
                continue
            try:
                state = self.store.get(self.job_id).state
            except FacetalkError:
                state = None
            self._trip("cancelled" if state == JobState.CANCELLED else "lost")
            return


@dataclass
class Outcome:
    """How a run of a job ended, from the runner's side.

    state: "succeeded", "failed", "queued" (failed, will be retried), "cancelled",
    "released" (given back to the queue), "lost" (another worker owns the job now)."""

    state: str
    job_id: str
    error: BaseException | None = None
    result: dict | None = None
    seconds: float = 0.0


def run_job(store: JobStore, job: Job, worker: str, home: Path, *, lease_s: float = DEFAULT_LEASE_S,
            renew_s: float | None = None, models=None, cache: JobCache | None = None,
            executor: Callable[..., dict] = execute, stop: threading.Event | None = None,
            ctx: RunContext | None = None, retry: bool = True, on_interrupt: str = "release",
            log: logging.Logger | None = None) -> Outcome:
    """Run a job this worker has claimed, to the end, and record how it ended in the store.

    executor(job, home, ctx, models=, cache=) -> {"outputs", "metrics"} does the work
    (execute, or a test's stand-in). ctx: a context whose progress sink, cancel event, log
    and warnings the run shares (facetalk render's). retry: failures worth another attempt
    are requeued (False: the job fails at once). stop: when set, the job is stopped and given
    back to the queue (a worker shutting down). on_interrupt: what KeyboardInterrupt or
    SystemExit does to the job before it propagates: "release" (back to the queue) or
    "cancel"."""
    service = log or logs.service_logger(home)
    jlog = logs.job_logger(home, job.id, parent=ctx.log if ctx is not None else None)
    progress = StoreProgress(store, job.id, worker, jlog, sink=ctx.progress if ctx is not None else None)
    run_ctx = RunContext(progress=progress, cancel=ctx.cancel if ctx is not None else threading.Event(), log=jlog,
                         seed=int(job.request.get("seed") or 0), warnings=ctx.warnings if ctx is not None else [],
                         job_id=job.id)
    jlog.info(f"execution started: attempt {job.attempts}/{job.max_attempts} on {worker} (pid {os.getpid()})")
    service.info(f"job {job.id} ({job.name}) attempt {job.attempts}/{job.max_attempts} started on {worker}")
    t0 = time.monotonic()
    keeper = LeaseKeeper(store, job.id, worker, lease_s, run_ctx.cancel, stop=stop, interval=renew_s, log=jlog)
    try:
        with keeper:
            result = executor(job, home, run_ctx, models=models, cache=cache)
    except (KeyboardInterrupt, SystemExit):
        seconds = time.monotonic() - t0
        if on_interrupt == "cancel":
            _quietly(store.cancel, job.id, "interrupted")
        else:
            _quietly(store.release, job.id, worker, "the worker was interrupted")
        jlog.info(f"execution interrupted after {seconds:.2f} s")
        service.info(f"job {job.id} interrupted")
        raise
    except BaseException as e:  # noqa: BLE001 - every failure is recorded, then reported
        seconds = time.monotonic() - t0
        outcome = _failed(store, job, worker, e, keeper.reason, retry, seconds, jlog)
        service.info(f"job {job.id} {outcome.state} after {seconds:.2f} s" + (f": {error_line(e)}" if outcome.state in ("failed", "queued") else ""))
        return outcome
    seconds = time.monotonic() - t0
    if store.succeed(job.id, worker, result["outputs"], result["metrics"]):
        jlog.info(f"execution finished in {seconds:.2f} s: " + ", ".join(result["outputs"]))
        service.info(f"job {job.id} succeeded in {seconds:.2f} s")
        return Outcome("succeeded", job.id, result=result, seconds=seconds)
    # finished, but the job is no longer ours: cancelled at the last moment (then it leaves
    # nothing behind), or another worker took it over (then its outputs are that worker's)
    now = _quietly(store.get, job.id)
    if now is not None and now.state == JobState.CANCELLED:
        for p in result["outputs"]:
            Path(p).unlink(missing_ok=True)
        jlog.info("execution finished after the job was cancelled: its outputs were removed")
        return Outcome("cancelled", job.id, error=Cancelled("the run was cancelled"), seconds=seconds)
    jlog.warning("execution finished after another worker took the job over: nothing recorded")
    return Outcome("lost", job.id, error=JobError(f"job {job.id} was taken over by another worker"), seconds=seconds)


def _failed(store: JobStore, job: Job, worker: str, e: BaseException, reason: str | None, retry: bool,
            seconds: float, jlog: logging.Logger) -> Outcome:
    if reason == "cancelled" or (reason is None and isinstance(e, Cancelled)):
        if reason is None:  # the caller's own context was cancelled
            _quietly(store.cancel, job.id, "cancelled")
        jlog.info(f"execution stopped after {seconds:.2f} s: the job was cancelled")
        return Outcome("cancelled", job.id, error=e if isinstance(e, Cancelled) else Cancelled("the run was cancelled"),
                       seconds=seconds)
    if reason == "shutdown" and isinstance(e, Cancelled):
        store.release(job.id, worker, "the worker is shutting down")
        jlog.info(f"execution stopped after {seconds:.2f} s: the worker is shutting down")
        return Outcome("released", job.id, error=e, seconds=seconds)
    if reason == "lost":
        jlog.warning(f"execution stopped after {seconds:.2f} s: the job is no longer this worker's")
        return Outcome("lost", job.id, error=JobError(f"job {job.id} was taken over by another worker (its lease expired)"),
                       seconds=seconds)
    again = retry and retryable(e)
    line = error_line(e)
    if isinstance(e, FacetalkError):
        jlog.error(f"attempt {job.attempts} failed after {seconds:.2f} s: {line}")
    else:
        jlog.error(f"attempt {job.attempts} failed after {seconds:.2f} s: {line}\n" + "".join(
            traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
    state = store.fail(job.id, worker, line, retry=again)
    if state is None:
        return Outcome("lost", job.id, error=e, seconds=seconds)
    return Outcome(str(state), job.id, error=e, seconds=seconds)


def _quietly(fn, *args):
    try:
        return fn(*args)
    except FacetalkError:
        return None


def run_in_process(request, home: Path, ctx: RunContext, lease_s: float = DEFAULT_LEASE_S):
    """What `facetalk render` does: record the render as a job (claimed by this process at
    once, so no worker takes it), run it here with ctx's progress and cancellation, and
    return the RenderResult. The output is request.output. A failure is recorded (failed,
    never retried: the user is there) and raised as the same exception."""
    store = JobStore.at_home(home)
    d, versions = prepare_request(request, home, validate=False)
    me = worker_id("render")
    job = store.submit(d, max_attempts=1, versions=versions, worker=me, lease_s=lease_s)
    outcome = run_job(store, job, me, home, lease_s=lease_s, ctx=ctx, retry=False, on_interrupt="cancel")
    if outcome.state == "succeeded":
        result = outcome.result["result"]
        if getattr(request, "output", None):
            result.output = Path(request.output)  # as the user wrote it
        return result
    raise outcome.error
