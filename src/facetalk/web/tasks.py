"""Identity creation from uploaded footage, in the background: one thread per task, one
task learning at a time (it takes the machine's cores), the others queued.

A task is a small JSON file, <home>/identity-tasks/<id>.json, rewritten (atomically) as
it goes: state (queued, running, succeeded, failed), stage, progress, the new version or
the error. So a page reload, a second browser or a REST client all see the same thing,
and a task whose server stopped before it ended shows as failed, not running for ever.
Its footage (an upload folder) is removed when the task ends.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from ..context import RunContext
from ..errors import FacetalkError
from . import uploads

TASKS_DIR = "identity-tasks"
FINAL = ("succeeded", "failed")
PROGRESS_INTERVAL_S = 0.5


@dataclass
class TaskSpec:
    name: str
    footage: list[Path]
    footage_names: list[str]  # as the user named them, for display
    transcripts: list[str | None]
    consent: str
    allow_mixed: bool = False
    promote: bool = False
    folder: Path | None = None  # the upload folder holding the footage (removed at the end)


def _atomic_write(path: Path, data: dict) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")


class IdentityTasks:
    """Starts and reads identity tasks for one home. `runner(spec, ctx) -> CreateResult`
    does the learning (create_identity over the home's registry; a test may stand in)."""

    def __init__(self, home: Path, runner, concurrency: int = 1) -> None:
        self.home = Path(home)
        self.dir = self.home / TASKS_DIR
        self.runner = runner
        self.instance = secrets.token_hex(6)  # this server: tasks of another one are not running
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def start(self, spec: TaskSpec) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        task_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        task = {"id": task_id, "name": spec.name, "state": "queued", "stage": "", "progress": 0.0, "message": "",
                "footage": spec.footage_names, "consent": spec.consent, "created": time.time(), "started": None,
                "finished": None, "ref": None, "error": None, "warnings": [], "frames_used": None,
                "frames_skipped": None, "server": self.instance}
        _atomic_write(self.dir / f"{task_id}.json", task)
        thread = threading.Thread(target=self._run, args=(task, spec), name=f"identity-{task_id}", daemon=True)
        with self._lock:
            self._threads[task_id] = thread
        thread.start()
        return dict(task)

    def _run(self, task: dict, spec: TaskSpec) -> None:
        path = self.dir / f"{task['id']}.json"
        try:
            with self._slots:
                task.update(state="running", started=time.time(), stage="starting")
                _atomic_write(path, task)
                last = [0.0]

                def progress(stage: str, fraction: float, message: str) -> None:
                    now = time.monotonic()
                    if now - last[0] < PROGRESS_INTERVAL_S and fraction < 1.0:
                        return
                    last[0] = now
                    task.update(stage=stage, progress=round(float(fraction), 4), message=_display(message, spec))
                    _atomic_write(path, task)

                ctx = RunContext(progress=progress)
                try:
                    result = self.runner(spec, ctx)
                except FacetalkError as e:
                    task.update(state="failed", error=_display(str(e), spec))
                except Exception as e:  # noqa: BLE001 - a bug: recorded, the server goes on
                    task.update(state="failed", error=f"internal error: {type(e).__name__}: {e}")
                else:
                    task.update(state="succeeded", ref=result.ref, progress=1.0, stage="done", message=result.ref,
                                warnings=[_display(w, spec) for w in result.warnings],
                                frames_used=int(result.frames_used),
                                frames_skipped={k: int(v) for k, v in result.frames_skipped.items()})
                task["finished"] = time.time()
                _atomic_write(path, task)
        finally:
            uploads.discard(spec.folder)
            with self._lock:
                self._threads.pop(task["id"], None)

    def get(self, task_id: str) -> dict:
        if not task_id or not all(c.isalnum() or c == "-" for c in task_id) or len(task_id) > 40:
            raise uploads.NotFound(f"no identity task {task_id!r}")
        path = self.dir / f"{task_id}.json"
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise uploads.NotFound(f"no identity task {task_id!r}") from None
        if task.get("state") not in FINAL and task.get("server") != self.instance:
            task.update(state="failed", error="interrupted: the server stopped before the identity was learnt; "
                        "start it again", finished=task.get("finished") or time.time())
            try:
                _atomic_write(path, task)
            except OSError:
                pass
        return task

    def list(self, limit: int = 50) -> list[dict]:
        """The newest `limit` tasks, newest first."""
        if not self.dir.is_dir():
            return []
        ids = sorted((p.stem for p in self.dir.glob("*.json") if not p.name.startswith(".")), reverse=True)[:limit]
        out = []
        for i in ids:
            try:
                out.append(self.get(i))
            except uploads.NotFound:
                continue
        return out

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running tasks (tests, shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)


def _display(text: str, spec: TaskSpec) -> str:
    """Server paths (and names) of uploaded footage replaced by the names the user gave them."""
    for path, name in zip(spec.footage, spec.footage_names):
        text = text.replace(str(path), name)
        if spec.folder is not None and path.parent == spec.folder:
            text = re.sub(rf"(?<![\w./-]){re.escape(path.name)}(?![\w.-])", name, text)
    return text
