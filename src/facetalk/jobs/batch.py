"""Batch production: many renders from a manifest, or one audio for many identities.

    facetalk batch manifest.jsonl [--out DIR]                one render per row
    facetalk batch --audio lesson.wav --identities a,b,c     one audio, many people

A batch is jobs: every row becomes one job of the job store, tagged with the batch's id,
then (by default) this process runs them, two rows at a time (Lanes) sharing one JobCache,
so facetalk starts once, each identity loads once and the speech of one audio is analysed
once (`--concurrency N`: N worker processes, each keeping its own; `--ray
ADDRESS`: Ray tasks on a cluster, see facetalk.jobs.ray_executor; `--submit-only`: leave
them to `facetalk worker`s).

Rows are checked when submitted. A bad row (a missing file, an unknown identity, an
unknown key, an unknown voice) is recorded as a failed job with its one-line reason, and
the others run. The summary lists every row: succeeded, failed (with the reason),
skipped (already done), not run (left queued: nothing here can run it).

Manifests:
    .jsonl / .ndjson   one JSON object per line; blank lines and lines starting with # are skipped
    .json              a list of objects, or {"rows": [...]}
    .csv               a header row; an empty cell means "not given"; numbers are parsed
Keys: name, identity or face, audio or text (spoken by text-to-speech, with voice, rate,
pitch), and any render option (RenderRequest's fields: size as "1280x720" or a number,
fps, seed, still, renderer, base, device, color_match, crf, identity_face, face_index,
and the finishing: enhance, enhancer, lut, lut_strength, label, label_text, label_corner,
label_size, label_opacity); transcript is a text file, transcript_text the words
themselves; cpus and gpus are what the job asks of a worker or Ray node (gpus defaults to
1 for device "cuda"). Keys may use '-' for '_'. Paths (face, audio, output, transcript, base, lut, enhancer, a Piper
voice .onnx) are relative to the manifest's folder.

Resume: a batch is identified by its manifest (path and sha256 of its content) or by its
audio (path and sha256) and identities, with the options given on the command line.
`--resume` skips the rows whose job succeeded and whose output still exists, runs again
the ones that failed, were cancelled or lost their output, and carries on with the ones
still queued from an earlier run.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FacetalkError, InputError
from .store import Job, JobError, JobState, JobStore, safe_name

MANIFEST_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
EXTRA_KEYS = ("name", "transcript_text", "cpus", "gpus")  # row keys that are not RenderRequest fields
PATH_KEYS = ("face", "audio", "output", "transcript", "base", "lut", "enhancer")
VOICE_FILES = (".onnx", ".onnx.json")  # a voice ending so is a file (Piper), else a voice name
CHOICES = {"color_match": ("none", "mean", "histogram"), "identity_face": ("clip", "photo"),
           "label_corner": ("bottom-right", "bottom-left", "top-right", "top-left")}
_TRUE, _FALSE = ("true", "yes", "y", "on", "1"), ("false", "no", "n", "off", "0", "")


# -- rows ----------------------------------------------------------------------------------

@dataclass
class Row:
    """One render of a batch, from its manifest line to its outcome."""

    number: int  # 1-based, in manifest order
    where: str  # "line 4", "row 3", "item 2": where to look in the manifest
    raw: dict | None  # the row as read (None when it could not be read)
    error: str | None = None  # why it cannot run (found when read or checked)
    name: str = ""
    job_id: str | None = None
    action: str = ""  # "submit", "reject", "skip" (already done), "adopt" (queued from an earlier run)
    state: str = ""  # at the end: succeeded, failed, cancelled, skipped, not_run
    output: str | None = None
    seconds: float | None = None
    attempts: int = 0

    def label(self) -> str:
        return f"{self.where} ({self.name})" if self.name else self.where


def render_keys() -> dict[str, str]:
    """RenderRequest's fields (the render options a row may set) -> their type annotation."""
    from ..pipeline import RenderRequest

    return {f.name: str(f.type) for f in dataclasses.fields(RenderRequest)}


def valid_keys() -> list[str]:
    return sorted(set(render_keys()) | set(EXTRA_KEYS) | {"transcript_text"})


def read_manifest(path: Path) -> list[Row]:
    """The rows of a manifest file, each with its raw dict (or the reason it cannot be read).
    Raises InputError when the file itself cannot be read or is of an unknown kind."""
    path = Path(path)
    kind = MANIFEST_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"manifest {path}: unknown kind '{path.suffix or '(none)'}': use .jsonl (one JSON object "
                         "per line), .json (a list of objects) or .csv (a header row)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"manifest {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read manifest {path}: {getattr(e, 'strerror', None) or e}") from None
    rows: list[Row] = []
    if kind == "jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                raw = json.loads(line)
            except ValueError as e:
                rows.append(Row(len(rows) + 1, f"line {i}", None, error=f"not valid JSON ({e})"))
                continue
            rows.append(Row(len(rows) + 1, f"line {i}", raw if isinstance(raw, dict) else None,
                            error=None if isinstance(raw, dict) else "not a JSON object ({...})"))
    elif kind == "json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"manifest {path} is not valid JSON: {e}") from None
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            data = data["rows"]
        if not isinstance(data, list):
            raise InputError(f"manifest {path}: expected a list of objects, or {{\"rows\": [...]}}")
        for i, raw in enumerate(data, 1):
            rows.append(Row(i, f"item {i}", raw if isinstance(raw, dict) else None,
                            error=None if isinstance(raw, dict) else "not a JSON object ({...})"))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise InputError(f"manifest {path} is empty: a CSV manifest starts with a header row (audio,identity,...)")
        for i, raw in enumerate(reader, 1):
            extra = raw.pop(None, None)  # cells beyond the header
            values = {k: v for k, v in raw.items() if k is not None and v is not None and v.strip() != ""}
            if not values and not extra:
                continue
            error = f"{len(extra)} more cells than the header has columns" if extra else None
            rows.append(Row(len(rows) + 1, f"row {i}", values, error=error))
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    return rows


def _normalise(raw: dict) -> dict:
    out = {}
    for k, v in raw.items():
        key = str(k).strip().lower().replace("-", "_")
        if v is None or (isinstance(v, str) and v.strip() == ""):
            continue  # not given
        out[key] = v
    return out


def _coerce(key: str, value, annotation: str):
    """A row's value as the render option wants it (CSV gives strings)."""
    from ..framing import parse_size

    what = f"{key} {value!r}"
    if key == "size":
        if isinstance(value, list) and len(value) == 2:
            value = f"{value[0]}x{value[1]}"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(f"{what} is not WIDTHxHEIGHT (1280x720) or a long side (720)")
        try:
            return parse_size(str(value))
        except FacetalkError as e:
            raise InputError(str(e).replace("--size", "size")) from None
    types = annotation.replace(" ", "").split("|")
    if "bool" in types:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise InputError(f"{what} is not true or false")
    if "int" in types or "float" in types:
        if isinstance(value, bool):
            raise InputError(f"{what} is not a number")
        try:
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, (int, float)):
                raise TypeError
        except (TypeError, ValueError):
            raise InputError(f"{what} is not a number") from None
        if "int" in types and "float" not in types:
            if float(number) != int(number):
                raise InputError(f"{what} is not a whole number")
            return int(number)
        return float(number)
    if "str" in types:
        if isinstance(value, (dict, list)):
            raise InputError(f"{what} is not text")
        value = str(value)
        if key in CHOICES and value not in CHOICES[key]:
            raise InputError(f"{what} is not one of {', '.join(CHOICES[key])}")
        return value
    return value


def _count(key: str, value, low: int) -> int:
    n = _coerce(key, value, "int")
    if n < low:
        raise InputError(f"{key} {n} is below {low}")
    return n


def row_request(raw: dict, base: Path, home: Path, defaults: dict, out_dir: Path | None,
                name: str) -> tuple[dict, dict, dict]:
    """(request as a job stores it, versions, resources) for one row, checked like `jobs
    submit` checks its options. Raises FacetalkError with the row's one-line problem."""
    from ..pipeline import RenderRequest
    from ..speech.text import read_transcript
    from .runner import prepare_request

    keys = render_keys()
    own = _normalise(raw)
    if "transcript_text" in own:  # the row's own words win over a --transcript for every row
        defaults = {k: v for k, v in defaults.items() if k != "transcript"}
    values = {**defaults, **own}
    unknown = sorted(set(values) - set(keys) - set(EXTRA_KEYS) - {"transcript_text"})
    if unknown:
        raise InputError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}; "
                         f"valid keys: {', '.join(valid_keys())}")
    for key in PATH_KEYS:
        if key in values:
            if not isinstance(values[key], str):
                raise InputError(f"{key} {values[key]!r} is not a path")
            values[key] = _resolve(values[key], base)
    if isinstance(values.get("voice"), str) and values["voice"].endswith(VOICE_FILES):
        values["voice"] = _resolve(values["voice"], base)
    if "audio" not in values and "text" not in values:
        raise InputError("no audio: give audio (a speech recording) or text (words to speak)")
    transcript_text = values.pop("transcript_text", None)
    if transcript_text is not None and "transcript" in values:
        raise InputError("give transcript (a text file) or transcript_text (the words), not both")
    if "transcript" in values:
        values["transcript"] = read_transcript(values["transcript"])
    elif transcript_text is not None:
        values["transcript"] = str(transcript_text)
    cpus, gpus = values.pop("cpus", 2), values.pop("gpus", None)
    values.pop("name", None)
    request = {}
    for key, value in values.items():
        if key in PATH_KEYS or key == "transcript":
            request[key] = value
        else:
            request[key] = _coerce(key, value, keys[key])
    if "output" not in request and out_dir is not None:
        request["output"] = str(out_dir / f"{name}.mp4")
    request.setdefault("output", None)
    d, versions = prepare_request(RenderRequest(**request), home)
    resources = {"cpus": _count("cpus", cpus, 1),
                 "gpus": _count("gpus", gpus, 0) if gpus is not None else default_gpus(d)}
    return d, versions, resources


def default_gpus(request: dict) -> int:
    """GPUs a job needs when it does not say: one for a model run on CUDA, else none."""
    return 1 if str(request.get("device") or "cpu").startswith("cuda") else 0


def _resolve(path: str, base: Path) -> str:
    """A row's path: ~ expanded, relative to the manifest's folder, '..' folded."""
    p = Path(path).expanduser()
    return os.path.normpath(p if p.is_absolute() else base / p)


def _row_name(raw: dict | None, number: int) -> tuple[str, bool]:
    """(name, given): the row's name, else its identity's, face's or audio's."""
    values = _normalise(raw or {})
    if isinstance(values.get("name"), (str, int, float)) and not isinstance(values.get("name"), bool):
        return safe_name(str(values["name"])), True
    if isinstance(values.get("output"), str):
        return safe_name(Path(values["output"]).stem), True
    if isinstance(values.get("identity"), str):
        return safe_name(values["identity"].split("@")[0]), False
    for key in ("face", "audio"):
        if isinstance(values.get(key), str):
            return safe_name(Path(values[key]).stem), False
    return f"row{number}", False


def name_rows(rows: list[Row]) -> None:
    """Unique names (they name the outputs, and --resume finds a row's job by its name): a
    name taken by an earlier row gets -2, -3...; when the row gave that name itself, the
    row fails (its job is recorded under the unique name)."""
    taken: dict[str, Row] = {}
    for row in rows:
        name, given = _row_name(row.raw, row.number)
        if given and name in taken and row.error is None:
            row.error = (f"name '{name}' is taken by {taken[name].where}: names must be unique in a batch "
                         "(they name the outputs)")
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}-{k}", k + 1
        row.name = unique
        taken[unique] = row


# -- the batch -----------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _batch_id(stem: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return f"{safe_name(stem)[:24]}-{digest[:10]}"


@dataclass
class Batch:
    """The rows of one batch and where they come from."""

    id: str
    source: str  # for people: "manifest X" or "audio X for identities a, b"
    base: Path  # relative paths in rows are relative to this folder
    rows: list[Row]
    defaults: dict = field(default_factory=dict)
    out_dir: Path | None = None

    @classmethod
    def from_manifest(cls, path: Path, defaults: dict | None = None, out_dir: Path | None = None) -> Batch:
        path = Path(path).expanduser().absolute()
        rows = read_manifest(path)
        key = {"manifest": str(path), "sha256": file_sha256(path), "defaults": defaults or {},
               "out": str(out_dir) if out_dir else None}
        batch = cls(_batch_id(path.stem, key), f"manifest {path}", path.parent, rows, dict(defaults or {}), out_dir)
        name_rows(batch.rows)
        return batch

    @classmethod
    def for_identities(cls, audio: Path, identities: list[str], defaults: dict | None = None,
                       out_dir: Path | None = None) -> Batch:
        audio = Path(audio).expanduser().absolute()
        if not identities:
            raise InputError("--identities is empty: give names separated by commas (lecturer,host,guide)")
        if not audio.is_file():
            raise InputError(f"--audio file {audio} does not exist: check the path")
        rows = [Row(i, f"identity {i}", {"identity": ident, "audio": str(audio)}) for i, ident in enumerate(identities, 1)]
        key = {"audio": str(audio), "sha256": file_sha256(audio), "identities": identities, "defaults": defaults or {},
               "out": str(out_dir) if out_dir else None}
        batch = cls(_batch_id(audio.stem, key), f"audio {audio} for identities {', '.join(identities)}", audio.parent,
                    rows, dict(defaults or {}), out_dir)
        name_rows(batch.rows)
        return batch

    # -- submitting --------------------------------------------------------------------

    def submit(self, store: JobStore, home: Path, resume: bool = False, max_attempts: int = 3) -> None:
        """Submit a job per row (a bad row as a failed job with its reason); with resume,
        skip the rows already done and carry on with the ones still queued."""
        from .runner import error_line, worker_id

        earlier = store.list(batch=self.id)
        unfinished = [j for j in earlier if not j.state.final]
        if unfinished and not resume:
            raise JobError(f"batch {self.id} has {len(unfinished)} unfinished job{'s' if len(unfinished) != 1 else ''} "
                           f"from an earlier run: add --resume to carry on with it, or cancel them (see "
                           f"'facetalk jobs list --batch {self.id}')")
        latest: dict[str, Job] = {}
        for j in earlier:  # oldest first: the last one of each name wins
            latest[j.name] = j
        me = worker_id("batch")
        for row in self.rows:
            prev = latest.get(row.name) if resume else None
            if prev is not None and prev.state == JobState.SUCCEEDED and prev.outputs and Path(prev.outputs[0]).is_file():
                row.action, row.job_id, row.state, row.output = "skip", prev.id, "skipped", prev.outputs[0]
                continue
            if prev is not None and not prev.state.final:
                row.action, row.job_id = "adopt", prev.id
                continue
            request, versions, resources = None, {}, {"cpus": 2, "gpus": 0}
            if row.error is None:
                try:
                    request, versions, resources = row_request(row.raw or {}, self.base, home, self.defaults,
                                                               self.out_dir, row.name)
                except FacetalkError as e:
                    row.error = error_line(e)
            if row.error is not None:
                row.action = "reject"
                job = store.submit(_recorded_request(row.raw, self.base), name=row.name, batch=self.id, max_attempts=1,
                                   worker=me)
                store.fail(job.id, me, f"{row.where}: {row.error}", retry=False)
                row.job_id = job.id
                continue
            row.action = "submit"
            row.job_id = store.submit(request, name=row.name, batch=self.id, max_attempts=max_attempts,
                                      resources=resources, versions=versions).id

    def job_ids(self) -> list[str]:
        """The jobs this run runs (submitted now, or carried on from an earlier run)."""
        return [r.job_id for r in self.rows if r.job_id and r.action in ("submit", "adopt")]

    # -- the outcome -------------------------------------------------------------------

    def collect(self, store: JobStore, not_run_reason: Callable[[Job], str]) -> None:
        """Each row's state, output, time and error, from the store."""
        for row in self.rows:
            if row.action == "skip" or row.job_id is None:
                continue
            job = store.get(row.job_id)
            row.attempts = job.attempts
            if job.state == JobState.SUCCEEDED:
                row.state, row.output = "succeeded", job.outputs[0] if job.outputs else None
                row.seconds = job.metrics.get("seconds")
                row.error = None
            elif job.state in (JobState.FAILED, JobState.CANCELLED):
                row.state = str(job.state)
                if row.action != "reject":
                    row.error = job.error or str(job.state)
            else:
                row.state = "not_run" if job.state == JobState.QUEUED else "running"
                row.error = not_run_reason(job) if job.state == JobState.QUEUED else \
                    f"still running on {job.worker}"

    def summary(self, seconds: float, executor: str, shared: dict | None = None) -> dict:
        counts = {s: 0 for s in ("succeeded", "failed", "cancelled", "skipped", "not_run", "running", "queued")}
        for row in self.rows:
            counts[row.state or "queued"] = counts.get(row.state or "queued", 0) + 1
        problems = [r for r in self.rows if r.state not in ("succeeded", "skipped")]
        return {
            "batch": self.id,
            "source": self.source,
            "executor": executor,
            "total": len(self.rows),
            "counts": counts,
            "ok": not problems,
            "seconds": round(seconds, 3),
            "rows": [{"row": r.number, "where": r.where, "name": r.name, "job": r.job_id, "state": r.state or "queued",
                      "output": r.output, "seconds": r.seconds, "attempts": r.attempts, "error": r.error}
                     for r in self.rows],
            "failed": [{"row": r.number, "where": r.where, "name": r.name, "job": r.job_id, "state": r.state or "queued",
                        "error": r.error} for r in problems],
            "outputs": [r.output for r in self.rows if r.output and r.state in ("succeeded", "skipped")],
            "shared": shared,
        }


def _recorded_request(raw: dict | None, base: Path) -> dict:
    """What a rejected row's job records as its request: the row's render options, paths
    made absolute (its reason is in the job's error)."""
    keys = render_keys()
    out: dict = {}
    for k, v in _normalise(raw or {}).items():
        if k not in keys or not isinstance(v, (str, int, float, bool)):
            continue
        if k in PATH_KEYS and isinstance(v, str):
            v = _resolve(v, base)
        out[k] = v
    out.setdefault("output", None)
    return out


def format_summary(s: dict) -> str:
    """The summary for people: one line of counts, a line per row, the outputs."""
    c = s["counts"]
    parts = [f"{c['succeeded']} succeeded", f"{c['failed']} failed"]
    for key, word in (("cancelled", "cancelled"), ("skipped", "skipped (already done)"), ("not_run", "not run"),
                      ("running", "still running")):
        if c.get(key):
            parts.append(f"{c[key]} {word}")
    lines = [f"batch {s['batch']} ({s['source']}): {s['total']} row{'s' if s['total'] != 1 else ''} in "
             f"{s['seconds']:.1f} s on {s['executor']}: " + ", ".join(parts)]
    width = max((len(r["name"]) for r in s["rows"]), default=4)
    for r in s["rows"]:
        state = {"not_run": "not run"}.get(r["state"], r["state"])
        if r["state"] in ("succeeded", "skipped"):
            took = f"  ({r['seconds']:.1f} s)" if r.get("seconds") is not None and r["state"] == "succeeded" else ""
            lines.append(f"  {state:<10} {r['name']:<{width}}  {r['output']}{took}")
        else:
            lines.append(f"  {state:<10} {r['name']:<{width}}  {r['where']}: {r['error']}")
    if s.get("shared"):
        sh = s["shared"]
        lines.append(f"shared loading: speech analysed {sh['speech_analyses']}x and reused {sh['speech_reused']}x, "
                     f"{sh['identities_loaded']} identit{'y' if sh['identities_loaded'] == 1 else 'ies'} loaded")
    return "\n".join(lines)


# -- running -------------------------------------------------------------------------------

# Rows a batch renders at once here (without --concurrency or --ray). One render keeps ~1.4
# of two cores busy (its set-up is serial, and its Python steps between the numpy and OpenCV
# calls hold the GIL), so a second one overlapped with it fills a two-core machine.
LANES = 2


class Lanes:
    """Workers in child processes forked from this one once facetalk is loaded and the
    batch's speech analysed: no child imports anything or analyses an audio again (each
    inherits the JobCache), and each has its own GIL (as threads of one process, two
    renders spent 12 % more CPU, contending for it). Each child claims the batch's jobs one
    at a time until none is left, then sends its JobCache.stats() back through a pipe."""

    def __init__(self, make_worker: Callable[[], object], count: int) -> None:
        self.make_worker, self.count = make_worker, count
        self.children: list[int] = []
        self.stats: list[dict] = []

    def _child(self, out: int) -> None:
        from .worker import stop_on_signals

        code = 1
        try:
            worker = self.make_worker()
            with stop_on_signals(worker.stop):
                worker.run()
            os.write(out, json.dumps(worker.cache.stats()).encode())
            code = 0
        except BaseException:  # noqa: BLE001 - a crash of this child: its job's lease runs out
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never the parent's clean-up (its store connection, atexit)

    def run(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pipes = []
        for _ in range(self.count):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                self._child(write)
            os.close(write)
            self.children.append(pid)
            pipes.append(read)
        try:
            for pid in self.children:
                os.waitpid(pid, 0)
        except BaseException:  # a second Ctrl-C: the children give their jobs back first
            self.stop()
            for pid in self.children:
                os.waitpid(pid, 0)
            raise
        finally:
            for read in pipes:
                with os.fdopen(read, "rb") as f:
                    data = f.read()
                if data:
                    self.stats.append(json.loads(data))

    def stop(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


class BatchRun:
    """Runs a submitted batch's jobs here (one worker keeping models and caches, or a pool
    of worker processes) or on a Ray cluster, until every one of them has ended or cannot
    run here; then waits for the ones other workers are running."""

    def __init__(self, home: Path, batch: Batch, *, concurrency: int | None = None, ray_address: str | None = None,
                 lease_s: float | None = None, poll_s: float = 0.5, on_event: Callable[[str], None] | None = None,
                 quiet: bool = False) -> None:
        self.home, self.batch = Path(home), batch
        self.concurrency, self.ray_address = concurrency, ray_address
        self.lease_s, self.poll_s = lease_s, poll_s
        self.on_event = on_event or (lambda line: None)
        self.quiet = quiet
        self.stopping = False
        self._current = None
        self.shared: dict | None = None
        self.gpus_seen: float | None = None  # the most GPUs on a node of the Ray cluster

    @property
    def executor(self) -> str:
        if self.ray_address:
            return f"Ray cluster {self.ray_address}"
        return "this machine" + (f" ({self.concurrency} worker processes)" if (self.concurrency or 1) > 1 else "")

    def preflight(self) -> None:
        """Fail before anything is submitted when the rows could not run where asked."""
        if self.ray_address:
            from .ray_executor import check_reachable

            check_reachable(self.ray_address)

    def stop(self) -> None:
        self.stopping = True
        if self._current is not None:
            self._current.stop()

    def run(self, store: JobStore) -> None:
        from .store import DEFAULT_LEASE_S
        from .worker import Pool, Worker

        lease_s = self.lease_s or DEFAULT_LEASE_S
        cache = None
        while not self.stopping:
            if self.ray_address:
                from .ray_executor import RayWorker

                self._current = RayWorker(self.home, self.ray_address, concurrency=self.concurrency, lease_s=lease_s,
                                          poll_s=self.poll_s, once=True, batch=self.batch.id, on_event=self.on_event)
                self._current.run()
                view = self._current.last_view
                self.gpus_seen = view.max_gpus if view is not None else None
            elif (self.concurrency or 1) > 1:
                self._current = Pool(self.home, self.concurrency, lease_s=lease_s, poll_s=self.poll_s, once=True,
                                     quiet=self.quiet, batch=self.batch.id, on_event=self.on_event)
                self._current.run()
            else:
                if cache is None:
                    from .runner import JobCache

                    cache = JobCache(self.home)
                    self._analyse_speech(store, cache)
                before = cache.stats()

                def make_worker(cache=cache):
                    return Worker(self.home, lease_s=lease_s, poll_s=self.poll_s, once=True, batch=self.batch.id,
                                  on_event=self.on_event, cache=cache)

                lanes = self._lanes(store)
                if lanes > 1:
                    self._current = Lanes(make_worker, lanes)
                    self._current.run()
                    stats = [before] + [{k: v - before.get(k, 0) for k, v in st.items()} for st in self._current.stats]
                else:
                    self._current = make_worker()
                    self._current.run()
                    stats = [cache.stats()]
                self.shared = {k: sum(st.get(k, 0) for st in stats) for k in before}
            if self.stopping or not self._wait_for_others(store):
                break

    def _analyse_speech(self, store: JobStore, cache) -> None:
        """Analyse the speech of the batch's audios into cache now, once each, so the rows
        (and the Lanes forked after this) all find it there. A file that cannot be
        analysed is left to its row, which fails with the reason."""
        from ..context import RunContext
        from ..media.audio import load_audio
        from ..speech.analyse import analyse_speech

        seen = set()
        for job_id in self.batch.job_ids():
            request = store.get(job_id).request
            if request.get("text") is not None or not request.get("audio"):
                continue  # spoken by text-to-speech when it runs
            audio, transcript = request["audio"], request.get("transcript")
            try:
                key = cache.speech_key(audio, transcript)
                if key not in seen:
                    seen.add(key)
                    cache.speech(key, lambda: analyse_speech(load_audio(audio), transcript, RunContext()))
            except (FacetalkError, OSError):
                pass

    def _lanes(self, store: JobStore) -> int:
        """Rows rendered at once in this process: LANES, fewer for fewer rows or cores; one
        with --concurrency 1, or when a row uses the neural renderer (its base model is
        shared by the batch's rows and switched to each row's identity in turn)."""
        ids = self.batch.job_ids()
        if self.concurrency == 1 or not hasattr(os, "fork") or any(
                store.get(j).request.get("renderer") == "neural" for j in ids):
            return 1
        return max(1, min(LANES, os.cpu_count() or 1, len(ids)))

    def _wait_for_others(self, store: JobStore) -> bool:
        """Wait while jobs of the batch run elsewhere; True when one came back to the queue
        (its worker died), so another pass here should take it."""
        ids = set(self.batch.job_ids())
        running = [j.id for j in store.list(state=JobState.RUNNING, batch=self.batch.id) if j.id in ids]
        if not running:
            return False
        self.on_event(f"waiting for {len(running)} job{'s' if len(running) != 1 else ''} of the batch run by other workers")
        while not self.stopping:
            store.requeue_expired()
            states = [store.get(j).state for j in running]
            if any(s == JobState.QUEUED for s in states):
                return True
            if all(s.final for s in states):
                return False
            time.sleep(self.poll_s)
        return False

    def not_run_reason(self, job: Job) -> str:
        gpus = int(job.resources.get("gpus") or 0)
        if gpus and self.ray_address:
            have = f"{self.gpus_seen:g}" if self.gpus_seen is not None else "no"
            return (f"needs {gpus} GPU{'s' if gpus != 1 else ''} and no node of the Ray cluster at {self.ray_address} has "
                    f"that many (the most on a node: {have}); left queued for a worker with a GPU "
                    f"('facetalk worker --gpus {gpus}') or a cluster with a GPU node (then --resume)")
        if gpus:
            return (f"needs {gpus} GPU{'s' if gpus != 1 else ''} and this batch runs on this machine's CPU; left queued "
                    f"for a worker with a GPU ('facetalk worker --gpus {gpus}'), or use --ray ADDRESS with a GPU node")
        if self.stopping:
            return "not run: the batch was stopped; carry on with --resume"
        return "left queued (not run); carry on with --resume or 'facetalk worker'"


def run_batch(home: Path, batch: Batch, *, resume: bool = False, max_attempts: int = 3, submit_only: bool = False,
              concurrency: int | None = None, ray_address: str | None = None, lease_s: float | None = None,
              poll_s: float = 0.5, on_event: Callable[[str], None] | None = None, quiet: bool = False,
              runner: BatchRun | None = None) -> dict:
    """Submit the batch's rows, run them (unless submit_only) and return the summary."""
    t0 = time.monotonic()
    run = runner or BatchRun(home, batch, concurrency=concurrency, ray_address=ray_address, lease_s=lease_s,
                             poll_s=poll_s, on_event=on_event, quiet=quiet)
    if not submit_only:
        run.preflight()
    store = JobStore.at_home(home)
    try:
        batch.submit(store, home, resume=resume, max_attempts=max_attempts)
        if submit_only:
            batch.collect(store, lambda job: f"queued: run it with 'facetalk worker --batch {batch.id} --once' "
                                             "(or any facetalk worker)")
            return batch.summary(time.monotonic() - t0, "none (--submit-only)")
        if batch.job_ids():
            run.run(store)
        batch.collect(store, run.not_run_reason)
        return batch.summary(time.monotonic() - t0, run.executor, run.shared)
    finally:
        store.close()


__all__ = ["Batch", "BatchRun", "Row", "default_gpus", "format_summary", "read_manifest", "row_request", "run_batch",
           "valid_keys"]
