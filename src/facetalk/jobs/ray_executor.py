"""Jobs as Ray tasks on an existing Ray cluster: `facetalk worker --ray ADDRESS` and
`facetalk batch --ray ADDRESS`.

The process that runs this (the driver) is where the job store lives. It claims jobs from
the store like any worker, holds them by their leases (renewed while their tasks run) and
submits each as a Ray task asking for the job's resources (num_cpus, num_gpus), so a job
needing a GPU lands only on a node that has one. A node need not share the driver's disk:

    driver                                          node (a Ray worker process)
    inputs' bytes -> ray.put, once per file         files written to a node cache, by sha256
    the identity version's folder -> ray.put,       its folder rebuilt under a node-local
      once per version                                facetalk home, verified when loaded
    <- progress, then the MP4's bytes and           pipeline.render into a temporary folder,
       the result                                     with one FaceModels and one JobCache per
    output written atomically, sidecar, store         process (kept between tasks: one audio
                                                      for many identities is analysed once)

The task is a streaming generator: it yields where it runs (node, pid), its progress, and
at last the video and the result. Cancelling the job (`facetalk jobs cancel`) cancels the
task (ray.cancel); stopping the driver cancels its tasks and gives their jobs back. A task
lost with its node or worker process (WorkerCrashedError, NodeDiedError, ObjectLostError,
TaskUnschedulableError...) fails the attempt with WorkerLost, so the job is queued again
(the attempt counted) like a job whose local worker died; Ray's own task retries are off
so the store counts every attempt.

GPU jobs: the driver claims only jobs whose GPUs some live node of the cluster has. A job
needing more stays queued in the store (for a worker with a GPU, or until a GPU node joins
the cluster; a long-running `worker --ray` looks again every few seconds); `batch --ray`
reports such rows as not run, with the reason. Every node needs facetalk installed, the
same version as the driver (checked by the task).

ray is imported only here, and only when a Ray worker starts: `pip install 'facetalk[cluster]'`.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from ..context import RunContext
from ..errors import Cancelled, FacetalkError, InputError
from . import logs
from .runner import Outcome, WorkerLost, finish_job, prepare_output, run_job, worker_id
from .store import DEFAULT_LEASE_S, Job, JobError, JobStore

INSTALL_HINT = "pip install 'facetalk[cluster]' (ray 2.60)"
CLUSTER_REFRESH_S = 5.0  # how long a look at the cluster's nodes is trusted
PROGRESS_EVERY_S = 0.25  # a task sends progress at most this often (and at every new stage)
CANCEL_GRACE_S = 10.0  # a cancelled task that has not stopped by then is killed (force)
TASK_CPUS = 2  # a job's CPUs when it names none
KEEP_BYTES = 1 << 30  # inputs kept in the object store for later tasks, per kind
PROBE_TIMEOUT_S = 5.0  # how long to try reaching the head node before ray.init


class RayUnavailable(FacetalkError):
    """ray is not installed, or the cluster cannot be reached."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"running jobs on a Ray cluster needs ray: {INSTALL_HINT}") from None
    return ray


def _lost_errors(ray) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task that died with its process or node (not by its own fault)."""
    names = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "ObjectFetchTimedOutError",
             "ObjectReconstructionFailedError", "ObjectReconstructionFailedMaxAttemptsExceededError",
             "ObjectReconstructionFailedLineageEvictedError", "TaskUnschedulableError", "LocalRayletDiedError",
             "OutOfMemoryError", "RaySystemError", "ReferenceCountingAssertionError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def connect(address: str, ray=None) -> None:
    """Connect this process to the Ray cluster at `address` (host:port, or 'auto')."""
    ray = ray or import_ray()
    if ray.is_initialized():
        return
    _probe(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, namespace="facetalk", log_to_driver=False, logging_level="WARNING",
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = " ".join(str(e).split())[:300]
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {first} (start one with "
                             "'ray start --head', or check the address: host:port of its head node)") from None


def check_reachable(address: str) -> None:
    """RayUnavailable now (before any job is claimed) when ray is missing or nothing
    listens at the address."""
    import_ray()
    _probe(address)


def _probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once when nothing listens at host:port (ray.init would retry for minutes)."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address.strip())
    if m is None:
        return  # 'auto', or a form ray itself understands
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {e.strerror or e} (start one with "
                             "'ray start --head', or check the address: host:port of its head node)") from None


@dataclass
class ClusterView:
    """What the live nodes of the cluster offer (the largest node decides what can run)."""

    nodes: int = 0
    total_cpus: float = 0.0
    max_cpus: float = 0.0
    max_gpus: float = 0.0

    @classmethod
    def look(cls, ray) -> ClusterView:
        view = cls()
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources", {})
            view.nodes += 1
            view.total_cpus += res.get("CPU", 0.0)
            view.max_cpus = max(view.max_cpus, res.get("CPU", 0.0))
            view.max_gpus = max(view.max_gpus, res.get("GPU", 0.0))
        return view

    def describe(self) -> str:
        return (f"{self.nodes} node{'s' if self.nodes != 1 else ''}, {self.total_cpus:g} CPUs, "
                f"at most {self.max_gpus:g} GPUs on a node")


# -- the driver ----------------------------------------------------------------------------

class _Inputs:
    """Input files and identity versions put in the object store once (per content) and
    shared by every task that needs them. The most recent ones are kept (at most
    KEEP_BYTES); a task still holding one keeps it alive (Ray counts its reference)."""

    def __init__(self, ray, home: Path) -> None:
        self.ray, self.home = ray, Path(home)
        self._files: OrderedDict[tuple, dict] = OrderedDict()
        self._identities: OrderedDict[tuple, dict] = OrderedDict()
        self._folders: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_put = 0

    def _keep(self, table: OrderedDict, key: tuple, entry: dict) -> None:
        table[key] = entry
        while len(table) > 1 and sum(e["size"] for e in table.values()) > KEEP_BYTES:
            table.popitem(last=False)

    def _cached(self, table: OrderedDict, key: tuple) -> dict | None:
        with self._lock:
            if key in table:
                table.move_to_end(key)
                return table[key]
        return None

    def file(self, path: str, role: str) -> dict:
        from ..media.formats import classify

        classify(path, role=role)  # missing or wrong kind: the same one-line error as a local render
        p = Path(path)
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if (hit := self._cached(self._files, key)) is not None:
            return hit
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InputError(f"{role} file {p} cannot be read: {e.strerror or e}") from None
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "name": p.name, "path": str(p),
                 "ref": self.ray.put(data), "size": len(data)}
        with self._lock:
            self._keep(self._files, key, entry)
            self.bytes_put += len(data)
        return entry

    def folder(self, folder: Path, files: list[str], what: str) -> dict:
        """A few files of a folder (a base model, a Piper voice), shipped as one object and
        rebuilt on the node under a name made from their content."""
        folder = Path(folder)
        key = (str(folder), tuple((f, _mtime(folder / f)) for f in files))
        if (hit := self._cached(self._folders, key)) is not None:
            return hit
        data, digest = {}, hashlib.sha256()
        for f in files:
            try:
                data[f] = (folder / f).read_bytes()
            except OSError as e:
                raise InputError(f"{what} {folder / f} cannot be read: {e.strerror or e}") from None
            digest.update(f.encode() + b"\0" + hashlib.sha256(data[f]).digest())
        entry = {"name": folder.name, "path": str(folder), "sha256": digest.hexdigest(), "ref": self.ray.put(data),
                 "size": sum(len(b) for b in data.values())}
        with self._lock:
            self._keep(self._folders, key, entry)
            self.bytes_put += entry["size"]
        return entry

    def identity(self, ref: str) -> dict:
        from ..identity.registry import MANIFEST, Registry, format_ref

        registry = Registry(self.home)
        name, version = registry.resolve(ref)
        folder = registry.path(name, version)
        manifest = registry.manifest(format_ref(name, version))
        files = [MANIFEST, *sorted(manifest.get("files", {}))]
        key = (str(folder), tuple((f, _mtime(folder / f)) for f in files))
        if (hit := self._cached(self._identities, key)) is not None:
            return hit
        data = {}
        for f in files:
            try:
                data[f] = (folder / f).read_bytes()
            except OSError as e:
                from ..errors import IdentityError
                from ..identity.registry import rebuild_hint

                raise IdentityError(f"{format_ref(name, version)}: cannot read {folder / f} ({e.strerror or e}); "
                                    f"{rebuild_hint(name)}") from None
        entry = {"name": name, "version": version, "folder": str(folder), "ref": self.ray.put(data),
                 "size": sum(len(b) for b in data.values()), "adapter": manifest.get("adapter")}
        with self._lock:
            self._keep(self._identities, key, entry)
            self.bytes_put += entry["size"]
        return entry


def _find_base(models: Path, name: str | None, sha256: str) -> Path | None:
    """The folder under models/ whose config.json records this weights sha256 (no torch)."""
    if not models.is_dir():
        return None
    for folder in ([models / name] if name else []) + sorted(p for p in models.iterdir() if p.is_dir()):
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (cfg.get("weights") or {}).get("sha256") == sha256:
            return folder
    return None


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return 0


class RayExecutor:
    """The executor run_job calls (same signature as runner.execute): runs the job as a
    Ray task, relays its progress, writes what comes back."""

    def __init__(self, ray, home: Path, cluster: Callable[[], ClusterView]) -> None:
        self.ray, self.home = ray, Path(home)
        self.cluster = cluster
        self.inputs = _Inputs(ray, home)
        self._task = None
        self._lost = _lost_errors(ray)
        self.tasks: dict[str, dict] = {}  # job id -> where its current task runs (node, pid)

    def _remote(self):
        if self._task is None:
            self._task = self.ray.remote(num_returns="streaming", max_retries=0)(render_task)
        return self._task

    def __call__(self, job: Job, home: Path, ctx: RunContext, models=None, cache=None) -> dict:
        from .. import __version__
        from ..media.encode import check_output_path

        out = check_output_path(prepare_output(self.home, job, ctx))
        request = dict(job.request)
        files = {role: self.inputs.file(request[role], f"--{role}") for role in ("audio", "face", "lut", "enhancer")
                 if request.get(role)}
        identity = self.inputs.identity(request["identity"]) if request.get("identity") else None
        folders = {}
        voice = request.get("voice")
        if isinstance(voice, str) and voice.endswith((".onnx", ".onnx.json")):
            folders["voice"] = self._voice(Path(voice))
        if request.get("renderer") == "neural":
            base = self._base(request.get("base"), identity)
            if base is not None:
                folders["base"] = base
        view = self.cluster()
        wanted_cpus = float(job.resources.get("cpus") or TASK_CPUS)
        cpus = min(wanted_cpus, view.max_cpus) if view.max_cpus else wanted_cpus
        gpus = float(job.resources.get("gpus") or 0)
        spec = {"job": job.id, "name": job.name, "request": request, "files": files, "identity": identity,
                "folders": folders, "facetalk": __version__, "seed": int(request.get("seed") or 0), "output": str(out)}
        ctx.log.info(f"submitting to Ray: num_cpus={cpus:g}, num_gpus={gpus:g}"
                     + (f" (asked {wanted_cpus:g} CPUs; the largest node has {view.max_cpus:g})" if cpus < wanted_cpus else ""))
        ctx.progress("queued", 0.0, "waiting for a Ray node")
        gen = self._remote().options(num_cpus=cpus, num_gpus=gpus, name=f"facetalk-{job.id}").remote(spec)
        try:
            result = self._follow(job, gen, ctx)
        finally:
            self.tasks.pop(job.id, None)
        video = result.pop("video")
        _write_atomic(out, video)
        for w in result["result"].get("warnings", []):
            ctx.log.warning(w)
        return finish_job(job, out, result["result"], result["seconds"], ctx)

    def _voice(self, voice: Path) -> dict:
        """A Piper voice: the .onnx model and its config beside it."""
        from ..tts.base import VoiceError

        model = voice.with_name(voice.name[:-5]) if voice.name.endswith(".onnx.json") else voice
        if not model.is_file():
            raise VoiceError(f"Piper voice {model} is not a file: give the .onnx model")
        configs = [n for n in (model.name + ".json", model.with_suffix(".json").name) if (model.parent / n).is_file()]
        entry = self.inputs.folder(model.parent, [model.name, *configs[:1]], "Piper voice")
        return {**entry, "file": model.name, "given": voice.name}

    def _base(self, base: str | None, identity: dict | None) -> dict | None:
        """The base model folder a neural render needs (config.json and its weights file):
        the one given, else the one under the driver's models/ that the identity's adapter
        was trained on. None when the identity is a model of its own (shipped with it)."""
        from ..neural.config import CONFIG_FILE

        if base is None:
            adapter = (identity or {}).get("adapter") or {}
            if adapter.get("kind") != "lora":
                return None  # no adapter (the renderer says so on the node) or a model of its own
            stamp = adapter.get("base") or {}
            folder = _find_base(self.home / "models", stamp.get("name"), str(stamp.get("sha256")))
            if folder is None:
                raise InputError(f"{identity['name']}@v{identity['version']}'s adapter was trained on base model "
                                 f"{stamp.get('name')} (sha256 {str(stamp.get('sha256'))[:12]}), which is not in "
                                 f"{self.home / 'models'}: give its folder with base")
        else:
            folder = Path(base)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            weights = str((config.get("weights") or {}).get("file") or "model.safetensors")
        except (OSError, ValueError) as e:
            raise InputError(f"base model {folder}: cannot read {CONFIG_FILE} ({e})") from None
        return {**self.inputs.folder(folder, [CONFIG_FILE, weights], "base model"), "given": base is not None}

    def _follow(self, job: Job, gen, ctx: RunContext) -> dict:
        ray = self.ray
        while True:
            if ctx.cancel.is_set():
                self._cancel(gen, ctx)
                raise Cancelled("the run was cancelled")
            ready, _ = ray.wait([gen], timeout=0.2)
            if not ready:
                continue
            try:
                ref = next(gen)
            except StopIteration:
                raise WorkerLost(f"the Ray task of job {job.id} ended without a result") from None
            try:
                item = ray.get(ref)
            except self._lost as e:
                raise WorkerLost(f"the Ray task was lost ({type(e).__name__}: {_first_line(e)}); "
                                 "the job runs again, like one whose worker died") from None
            except ray.exceptions.TaskCancelledError:
                raise Cancelled("the run was cancelled") from None
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                if cause is None:
                    raise RuntimeError(_first_line(e)) from None
                if isinstance(cause, KeyboardInterrupt):
                    raise Cancelled("the run was cancelled") from None
                raise cause from None
            kind = item.get("kind")
            if kind == "started":
                self.tasks[job.id] = {"node": item["node"], "pid": item["pid"]}
                ctx.log.info(f"running on Ray node {item['node']} ({item['host']}), pid {item['pid']}")
                ctx.progress("started", 0.0, f"on {item['host']}")
            elif kind == "progress":
                ctx.progress(item["stage"], item["fraction"], item["message"])
            elif kind == "log":
                for level, line in item["lines"]:
                    ctx.log.log(level, line)
            elif kind == "result":
                stats = item.get("cache") or {}
                ctx.log.info(f"rendered on {item['host']} in {item['seconds']:.2f} s; that process has "
                             f"analysed speech {stats.get('speech_analyses', '?')}x, reused it "
                             f"{stats.get('speech_reused', '?')}x, loaded {stats.get('identities_loaded', '?')} identities")
                return item

    def _cancel(self, gen, ctx: RunContext) -> None:
        ray = self.ray
        try:
            ray.cancel(gen)
        except Exception as e:  # noqa: BLE001 - it may have ended on its own
            ctx.log.info(f"ray.cancel: {type(e).__name__}: {e}")
            return
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:  # let it clean up and end (it keeps its process)
            ready, _ = ray.wait([gen], timeout=0.2)
            if ready:
                try:
                    ray.get(next(gen))
                except StopIteration:
                    return
                except Exception:  # noqa: BLE001 - TaskCancelledError, as expected
                    return
        try:
            ray.cancel(gen, force=True)
        except Exception as e:  # noqa: BLE001 - it ended meanwhile
            ctx.log.info(f"ray.cancel(force=True): {type(e).__name__}: {e}")


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _write_atomic(out: Path, data: bytes) -> None:
    """The video under a hidden temporary name (the one clean_partials knows), then renamed."""
    from ..errors import OutputError
    from ..media.formats import error_reason

    try:
        with replacing(out, keep_suffix=True) as tmp, open(tmp, "xb") as f:
            f.write(data)
    except OSError as e:
        raise OutputError(f"cannot write {out}: {error_reason(e)} (choose another output folder)") from None


class RayWorker:
    """Claims jobs from the store and runs each as a Ray task, `concurrency` at a time (one
    thread each: threads only wait on Ray). Same interface as worker.Worker: run() until
    stop() (or, with once, until nothing is left to take), on_event lines, outcomes."""

    def __init__(self, home: Path, address: str, *, concurrency: int | None = None, lease_s: float = DEFAULT_LEASE_S,
                 renew_s: float | None = None, poll_s: float = 1.0, once: bool = False, batch: str | None = None,
                 max_jobs: int | None = None, name: str | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.home, self.address = Path(home), address
        self.concurrency = concurrency
        self.lease_s, self.renew_s, self.poll_s = lease_s, renew_s, poll_s
        self.once, self.batch, self.max_jobs = once, batch, max_jobs
        self.id = name or worker_id("ray")
        self.on_event = on_event or (lambda line: None)
        self.stop_event = threading.Event()
        self.outcomes: list[Outcome] = []
        self.executor: RayExecutor | None = None
        self._view: ClusterView | None = None  # the last look at the cluster (see cluster())
        self._view_at = 0.0
        self._lock = threading.Lock()
        self._claimed = 0

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def last_view(self) -> ClusterView | None:
        return self._view

    def cluster(self) -> ClusterView:
        with self._lock:
            if self._view is None or time.monotonic() - self._view_at > CLUSTER_REFRESH_S:
                self._view = ClusterView.look(self._ray)
                self._view_at = time.monotonic()
            return self._view

    def run(self) -> list[Outcome]:
        ray = self._ray = import_ray()
        connected_here = not ray.is_initialized()
        connect(self.address, ray)
        log = logs.service_logger(self.home)
        store = JobStore.at_home(self.home)
        try:
            view = self.cluster()
            n = self.concurrency or max(1, min(64, int(view.total_cpus // TASK_CPUS)))
            self.executor = RayExecutor(ray, self.home, self.cluster)
            self.on_event(f"{self.id}: connected to the Ray cluster at {self.address} ({view.describe()}); "
                          f"{n} job{'s' if n != 1 else ''} at a time")
            log.info(f"ray worker {self.id} started on {self.address}: {view.describe()}")
            threads = [threading.Thread(target=self._loop, args=(store, f"{self.id}-{i}", log), daemon=True,
                                        name=f"{self.id}-{i}") for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # the main thread stays responsive to signals
        finally:
            log.info(f"ray worker {self.id} stopped after {len(self.outcomes)} jobs")
            store.close()
            if connected_here:
                ray.shutdown()
        return self.outcomes

    def _take(self) -> bool:
        with self._lock:
            if self.max_jobs is not None and self._claimed >= self.max_jobs:
                return False
            self._claimed += 1
            return True

    def _loop(self, store: JobStore, me: str, log) -> None:
        while not self.stop_event.is_set():
            try:
                gpus = int(self.cluster().max_gpus)
                if not self._take():
                    return
                job = store.claim(me, self.lease_s, gpus=gpus, batch=self.batch)
                if job is None:
                    with self._lock:
                        self._claimed -= 1
                    if self.once:
                        return
                    self.stop_event.wait(self.poll_s)
                    continue
                self.on_event(f"{me}: job {job.id} ({job.name}) attempt {job.attempts}/{job.max_attempts} -> Ray")
                outcome = run_job(store, job, me, self.home, lease_s=self.lease_s, renew_s=self.renew_s,
                                  executor=self.executor, stop=self.stop_event, log=log)
            except JobError as e:  # the store could not be reached: try again later
                self.on_event(f"{me}: {e}")
                log.error(f"ray worker {me}: {e}")
                self.stop_event.wait(max(self.poll_s, 5.0))
                continue
            with self._lock:
                self.outcomes.append(outcome)
            detail = f": {outcome.error}" if outcome.state in ("failed", "queued") and outcome.error else ""
            self.on_event(f"{me}: job {job.id} {outcome.state} in {outcome.seconds:.2f} s{detail}")


# -- the task, on a node -------------------------------------------------------------------

_NODE: dict = {}  # per Ray worker process: kept from one task to the next
_NODE_LOCK = threading.Lock()


def _node_state() -> dict:
    with _NODE_LOCK:
        if not _NODE:
            from ..face.models import FaceModels
            from .runner import JobCache

            root = _node_cache_root()
            _clean_dead_renders(root)
            home = root / "home"
            home.mkdir(parents=True, exist_ok=True)
            _NODE.update(root=root, home=home, models=FaceModels(), cache=JobCache(home))
        return _NODE


def _node_cache_root() -> Path:
    """<the Ray session's folder>/facetalk (removed with the session's files), else a
    folder under the system's temporary folder."""
    try:
        import ray

        session = ray._private.worker.global_worker.node.get_session_dir_path()  # a private API
        root = Path(session) / "facetalk"
    except Exception:  # noqa: BLE001 - a private API: fall back to the temp folder
        root = Path(tempfile.gettempdir()) / f"facetalk-ray-{os.getuid()}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _clean_dead_renders(root: Path) -> None:
    """Remove the temporary folders of renders whose process died (a killed task)."""
    for p in root.glob("render-*-*"):
        try:
            pid = int(p.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _materialise(root: Path, entry: dict) -> Path:
    """The file's bytes on this node: <root>/files/<sha256>/<its name>, fetched once."""
    import ray

    path = root / "files" / entry["sha256"] / entry["name"]
    if not path.is_file():
        data = ray.get(entry["ref"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_bytes(data)
    return path


def _materialise_folder(parent: Path, entry: dict) -> Path:
    """A shipped folder under parent/<its name>-<content digest>, fetched once."""
    import ray

    folder = parent / f"{entry['name']}-{entry['sha256'][:12]}"
    if not folder.is_dir():
        _install_folder(folder, ray.get(entry["ref"]))
    return folder


def _install_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write files into folder as a whole: staged beside it and renamed into place, so a
    half-written folder is never seen; if another process of this node made it first, its
    copy stays."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    for fname, data in files.items():
        (staging / fname).write_bytes(data)
    try:
        os.rename(staging, folder)
    except OSError:  # another process of this node made it first
        shutil.rmtree(staging, ignore_errors=True)


def _materialise_identity(home: Path, entry: dict) -> str:
    """The identity version's folder under the node's facetalk home; its ref."""
    import ray

    from ..identity.registry import format_ref

    folder = home / "identities" / entry["name"] / f"v{entry['version']}"
    if not folder.is_dir():
        _install_folder(folder, ray.get(entry["ref"]))
    return format_ref(entry["name"], entry["version"])


class _Collect:
    """A logger stand-in for the node: lines kept to send back to the driver's job log."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def log(self, level: int, msg: str, *args) -> None:
        self.lines.append((level, msg % args if args else msg))

    def debug(self, msg, *args):
        self.log(10, msg, *args)

    def info(self, msg, *args):
        self.log(20, msg, *args)

    def warning(self, msg, *args):
        self.log(30, msg, *args)

    def error(self, msg, *args):
        self.log(40, msg, *args)


def render_task(spec: dict):
    """The Ray task (a streaming generator): {"kind": "started"}, {"kind": "progress"}...,
    {"kind": "log"}, {"kind": "result", "video": bytes, "result": {...}, "seconds"}."""
    import ray

    from .. import __version__
    from ..pipeline import render
    from .runner import request_from_dict

    host = socket.gethostname()
    node = ray.get_runtime_context().get_node_id()
    yield {"kind": "started", "node": node, "host": host, "pid": os.getpid()}
    if spec["facetalk"] != __version__:
        raise JobError(f"node {host} has facetalk {__version__}, the driver {spec['facetalk']}: "
                       "install the same facetalk version on every node of the Ray cluster")
    state = _node_state()
    root, home = state["root"], state["home"]
    request = dict(spec["request"])
    local: dict[str, str] = {}  # node path -> the driver's, to put back in messages
    for role, entry in spec["files"].items():
        p = _materialise(root, entry)
        request[role] = str(p)
        local[str(p)] = entry["path"]
    if spec.get("identity"):
        request["identity"] = _materialise_identity(home, spec["identity"])
        local[str(home / "identities" / spec["identity"]["name"] / f"v{spec['identity']['version']}")] = \
            spec["identity"]["folder"]
    for role, entry in (spec.get("folders") or {}).items():
        # a base model goes under the node home's models/ (where an adapter's base is looked up by sha256)
        parent = home / "models" if role == "base" else root / "folders"
        folder = _materialise_folder(parent, entry)
        local[str(folder)] = entry["path"]
        if role == "voice":
            request["voice"] = str(folder / entry["given"])
        elif entry.get("given"):
            request["base"] = str(folder)
    workdir = Path(tempfile.mkdtemp(prefix=f"render-{os.getpid()}-", dir=root))
    out = workdir / "out.mp4"
    request["output"] = str(out)
    local[str(out)] = spec["output"]
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    collected = _Collect()
    ctx = RunContext(progress=lambda stage, fraction, message: events.put((stage, fraction, message)),
                     cancel=cancel, log=collected, seed=spec["seed"], job_id=spec["job"])  # type: ignore[arg-type]
    box: dict = {}

    def work() -> None:
        try:
            t0 = time.time()
            box["result"] = render(request_from_dict(request), ctx, models=state["models"],
                                   registry=state["cache"].registry, cache=state["cache"])
            box["seconds"] = time.time() - t0
        except BaseException as e:  # noqa: BLE001 - handed to the generator below
            box["error"] = e

    thread = threading.Thread(target=work, name=f"render-{spec['job']}", daemon=True)
    try:
        thread.start()
        shown_stage, shown_at = None, 0.0
        while thread.is_alive() or not events.empty():
            try:
                stage, fraction, message = events.get(timeout=0.1)
            except queue.Empty:
                continue
            now = time.monotonic()
            if stage != shown_stage or now - shown_at >= PROGRESS_EVERY_S or fraction >= 1.0:
                shown_stage, shown_at = stage, now
                yield {"kind": "progress", "stage": stage, "fraction": fraction,
                       "message": _local_to_driver(message, local)}
        thread.join()
        if collected.lines:
            yield {"kind": "log", "lines": [(lv, _local_to_driver(m, local)) for lv, m in collected.lines]}
        if "error" in box:
            e = box["error"]
            if isinstance(e, FacetalkError):
                raise type(e)(_local_to_driver(str(e), local)) from None
            raise e
        result = box["result"].to_dict()
        result["warnings"] = [_local_to_driver(w, local) for w in result.get("warnings", [])]
        yield {"kind": "result", "video": out.read_bytes(), "result": result, "seconds": box["seconds"],
               "host": host, "cache": state["cache"].stats()}
    except (KeyboardInterrupt, GeneratorExit):  # ray.cancel: stop the render, leave nothing behind
        cancel.set()
        thread.join(timeout=30)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _local_to_driver(text: str, local: dict[str, str]) -> str:
    for node_path, driver_path in local.items():
        text = text.replace(node_path, driver_path)
    return text


__all__ = ["ClusterView", "RayExecutor", "RayUnavailable", "RayWorker", "check_reachable", "connect", "import_ray",
           "render_task"]
