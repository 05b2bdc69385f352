"""What the REST API and the studio both do, in one place, over the job store, the
identity registry and the outputs folder: submit renders from uploads or server paths,
read and change jobs, pack outputs, learn and manage identities.

It holds the server's config, open handles (the store, the registry, face models for the
upload check loaded on first use) and the identity tasks' threads; every fact lives on
disk, so a reload, another browser or a restarted server sees the same jobs.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from ..errors import FacetalkError, IdentityError, InputError
from ..jobs.outputs import output_path, sidecar_path
from ..jobs.store import Job, JobError, JobState, JobStore, safe_name
from . import uploads
from .config import ServerConfig
from .tasks import IdentityTasks, TaskSpec
from .uploads import Conflict, NotFound, Upload, WebError

# Render options a client may set, with what the studio shows by default.
RENDER_OPTIONS = ("identity", "identity_face", "transcript", "fps", "size", "seed", "still", "face_index", "renderer",
                  "color_match", "crf", "text", "voice", "enhance", "lut_strength", "label", "label_text",
                  "label_corner", "label_size", "label_opacity")
UPLOAD_KEYS = ("face", "audio", "lut", "enhancer")  # request keys that may name a file in uploads/
TTS_MISSING = "text-to-speech comes with a later version: upload a recording of the words"
ZIP_KEEP_S = 3600.0


def tts_available() -> bool:
    """Whether this facetalk renders from text: facetalk.tts (check_text_request, the
    voices) and a RenderRequest with a `text` field, which a job renders by speaking it.
    Without them the studio shows its text box disabled and the API refuses text."""
    import dataclasses
    import importlib
    import importlib.util

    try:
        if importlib.util.find_spec("facetalk.tts") is None:
            return False
        tts = importlib.import_module("facetalk.tts")
        from ..pipeline import RenderRequest

        fields = {f.name for f in dataclasses.fields(RenderRequest)}
        return callable(getattr(tts, "check_text_request", None)) and {"text", "voice"} <= fields
    except Exception:  # noqa: BLE001 - a broken optional module means: not available
        return False


def tts_voices() -> list[str]:
    """Names of the installed voices (empty without text-to-speech)."""
    try:
        from ..tts import list_voices

        return sorted(v.name for v in list_voices())
    except Exception:  # noqa: BLE001 - no voices to offer
        return []


@dataclass
class Input:
    """A face or audio input of a job: a server path, and how the user knows it."""

    path: Path
    display: str
    uploaded: bool


class Service:
    def __init__(self, config: ServerConfig, learn=None) -> None:
        from ..identity.registry import Registry

        self.config = config
        self.home = config.home
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = JobStore.at_home(self.home)
        self.registry = Registry(self.home)
        self.tasks = IdentityTasks(self.home, learn or self._learn)
        self._models = None
        self._models_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # -- inputs ----------------------------------------------------------------------------

    def has_face(self, rgb) -> bool:
        """A face the renderer would find in this photo (the same detector and settings)."""
        from ..face.detect import find_faces
        from ..face.models import FaceModels

        with self._models_lock:
            if self._models is None:
                self._models = FaceModels()
            return bool(find_faces(self._models, rgb))

    def resolve(self, value: Upload | str | None, role: str, field: str, folder: list) -> Input | None:
        """An input given as an upload, an http(s) URL (fetched only with --allow-urls) or a
        path on the server; checked by content. folder: [upload folder or None], created
        on demand for a fetched URL."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, Upload):
            inp = Input(value.path, value.filename, True)
        elif uploads.is_url(value):
            if not self.config.allow_urls:
                raise InputError(f"this server does not fetch URLs ({uploads.display_name(value)}): upload the "
                                 "file instead, or start facetalk serve with --allow-urls")
            if folder[0] is None:
                folder[0] = uploads.new_folder(self.home)
            up = uploads.fetch(value, role, field, folder[0], self.config.max_upload_bytes)
            inp = Input(up.path, up.filename, True)
        else:
            inp = Input(uploads.server_path(value, role), value.strip(), False)
        uploads.check_media(inp.path, role, inp.display, self.has_face if role == "face" else None)
        return inp

    def resolve_lut(self, value: Upload | str | None) -> Input | None:
        """A .cube LUT given as an upload or a path on the server, parsed to check it (the
        message names the file as the user named it)."""
        from ..finish.lut import load_lut

        return self._resolve_file(value, "lut", "the .cube file", load_lut)

    def resolve_enhancer(self, value: Upload | str | None) -> Input | None:
        """A face-restoration .onnx model given as an upload or a path on the server, loaded
        on the CPU to check it as a render would (an RGB, square input; the message names
        the file as the user named it). The session is dropped: the worker loads its own."""
        from ..finish.options import FinishOptions
        from ..finish.restore import FaceRestorer

        def check(path: Path) -> None:
            FinishOptions(enhancer=str(path)).check()  # there, a file, named .onnx: before loading it
            FaceRestorer(path, "cpu")

        return self._resolve_file(value, "enhancer", "the .onnx model", check)

    @staticmethod
    def _resolve_file(value: Upload | str | None, role: str, what: str, check: Callable[[Path], object]) -> Input | None:
        """An upload, or an absolute path on the server (never a URL), checked by check(path)
        with any error naming the file as the user named it."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, Upload):
            inp = Input(value.path, value.filename, True)
        elif uploads.is_url(value):
            raise InputError(f"{role} {uploads.display_name(value)}: upload {what}, or give an absolute path on the "
                             "server")
        else:
            inp = Input(uploads.server_path(value, role), value.strip(), False)
        try:
            check(inp.path)
        except FacetalkError as e:
            marked = str(e).replace(str(inp.path), "\x00").replace(inp.path.name, "\x00")  # path or bare name
            e.args = (marked.replace("\x00", inp.display),)
            raise
        return inp

    def submit(self, options: dict, face: Input | None, audio: Input | None, name: str | None = None,
               batch: str | None = None, max_attempts: int = 3, lut: Input | None = None,
               enhancer: Input | None = None) -> Job:
        """Queue a render. options: RENDER_OPTIONS (None or missing: the default); lut: a
        colour grade (resolve_lut); enhancer: a face-restoration model (resolve_enhancer)."""
        d, versions = self.build(options, face, audio, lut, enhancer)
        if not name:
            source = face.display if face is not None else str(options.get("identity", "")).split("@")[0]
            name = Path(source).stem if face is not None else source
        job = self.store.submit(d, name=safe_name(name), batch=safe_name(batch) if batch else None,
                                max_attempts=max_attempts, versions=versions)
        self._remember_names(job, [i for i in (face, audio, lut, enhancer) if i is not None])
        return job

    def build(self, options: dict, face: Input | None, audio: Input | None,
              lut: Input | None = None, enhancer: Input | None = None) -> tuple[dict, dict]:
        """The request a job would store, checked (as prepare_request checks), and versions."""
        from ..framing import parse_size
        from ..jobs.runner import prepare_request

        unknown = sorted(set(options) - set(RENDER_OPTIONS))
        if unknown:
            raise WebError(f"unknown render options: {', '.join(unknown)}")
        request: dict = {k: v for k, v in options.items() if v is not None and v != ""}
        text = request.pop("text", None)
        voice = request.pop("voice", None)
        if text is not None and str(text).strip():
            if not tts_available():
                raise InputError(TTS_MISSING)
            from ..tts import check_text_request

            if audio is not None:
                raise InputError("give audio (a recording) or text (words to speak), not both")
            check_text_request(None, request.get("transcript"), str(text), voice, None, None)
            request.update(text=str(text), voice=voice)
        elif voice is not None:
            raise InputError("a voice speaks text: give text too, or leave the voice out")
        elif audio is None:
            raise InputError("give the speech: upload an audio file (wav, mp3, m4a, flac, ogg) or a video with sound")
        if face is None and not request.get("identity"):
            raise InputError("give a photo or video of the person, or choose an identity")
        if isinstance(request.get("size"), str):
            request["size"] = parse_size(request["size"])
        if request.get("face_index") is not None and int(request["face_index"]) < 0:
            raise InputError("face_index must be 0 or more (0 = the largest face)")
        request.update(face=str(face.path) if face else None, audio=str(audio.path) if audio else None, output=None)
        if lut is not None:
            request["lut"] = str(lut.path)
        if enhancer is not None:
            request["enhancer"] = str(enhancer.path)
        return prepare_request(request, self.home)  # text requests included: it checks text like audio

    def _remember_names(self, job: Job, inputs: list[Input]) -> None:
        """names.json of an upload folder: server file name -> the user's (for messages)."""
        for inp in inputs:
            if not inp.uploaded:
                continue
            meta = inp.path.parent / "names.json"
            try:
                names = json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}
                names[inp.path.name] = inp.display
                meta.write_text(json.dumps(names), encoding="utf-8")
            except (OSError, ValueError):
                pass

    def shown(self, text: str | None) -> str | None:
        """A message with upload paths replaced by the names the user gave the files."""
        if not text:
            return text
        root = re.escape(str(uploads.uploads_dir(self.home)))

        def name(m: re.Match) -> str:
            try:
                names = json.loads((Path(m.group(1)) / "names.json").read_text(encoding="utf-8"))
                return names.get(m.group(2), m.group(2))
            except (OSError, ValueError):
                return m.group(2)

        return re.sub(rf"({root}/[0-9a-f]+)/([A-Za-z0-9_.-]+)", name, text)

    # -- jobs ------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        try:
            return self.store.get(job_id)
        except JobError as e:
            raise NotFound(str(e)) from None

    def jobs(self, state: str | None = None, batch: str | None = None, limit: int | None = 100) -> list[Job]:
        """Newest first."""
        self.store.requeue_expired()
        if state is not None and state not in {str(s) for s in JobState}:
            raise WebError(f"unknown state {state!r}: use one of {', '.join(str(s) for s in JobState)}")
        return list(reversed(self.store.list(state=state, batch=batch, limit=limit)))

    def cancel(self, job_id: str) -> Job:
        job = self.job(job_id)
        try:
            return self.store.cancel(job.id, "cancelled from the web")
        except JobError as e:
            raise Conflict(str(e)) from None

    def retry(self, job_id: str) -> Job:
        job = self.job(job_id)
        try:
            return self.store.retry(job.id)
        except JobError as e:
            raise Conflict(str(e)) from None

    def delete(self, job_id: str, remove_outputs: bool = False) -> None:
        """Forget a job that is not running (and its uploads, when no other job uses them);
        with remove_outputs, its video and sidecar too."""
        job = self.job(job_id)
        try:
            self.store.delete(job.id)
        except JobError as e:
            raise Conflict(str(e)) from None
        if remove_outputs:
            for p in self._output_files(job):
                p.unlink(missing_ok=True)
        (preview_dir(self.home) / f"{job.id}.mp4").unlink(missing_ok=True)
        self._release_uploads(job)

    def _release_uploads(self, job: Job) -> None:
        root = uploads.uploads_dir(self.home)
        folders = {Path(v).parent for k in UPLOAD_KEYS if (v := job.request.get(k))
                   and Path(v).parent.parent == root}
        if not folders:
            return
        for other in self.store.list():
            for k in UPLOAD_KEYS:
                v = other.request.get(k)
                if v and Path(v).parent in folders:
                    folders.discard(Path(v).parent)
        for f in folders:
            uploads.discard(f)

    def _output_files(self, job: Job) -> list[Path]:
        """The job's video and sidecar, when they are its recorded outputs and exist."""
        video = output_path(self.home, job)
        recorded = {str(Path(o)) for o in job.outputs}
        return [p for p in (video, sidecar_path(video))
                if str(p) in recorded and p.suffix.lower() in (".mp4", ".json") and p.is_file() and not p.is_symlink()]

    def output(self, job_id: str, which: str = "video") -> Path:
        job = self.job(job_id)
        if job.state != JobState.SUCCEEDED:
            raise Conflict(f"job {job.id} is {job.state}: it has no output"
                           + (" yet" if not job.state.final else ""))
        files = self._output_files(job)
        want = ".mp4" if which == "video" else ".json"
        for p in files:
            if p.suffix.lower() == want:
                return p
        raise NotFound(f"the {which} of job {job.id} is no longer there (moved or removed)")

    def zip_jobs(self, job_ids: list[str], dest: Path) -> tuple[Path, int]:
        """Pack the outputs (video and sidecar) of these succeeded jobs into dest; only
        those files, each under its own name."""
        if not job_ids:
            raise WebError("choose at least one job")
        if len(job_ids) > 1000:
            raise WebError("at most 1000 jobs in one zip")
        files: list[tuple[Path, str]] = []
        seen: set[str] = set()
        for job_id in dict.fromkeys(job_ids):
            job = self.job(job_id)
            if job.state != JobState.SUCCEEDED:
                raise Conflict(f"job {job.id} is {job.state}: it has no outputs to download")
            for p in self._output_files(job):
                arc = p.name if p.name.startswith(job.id) else f"{job.id}-{p.name}"
                if arc in seen:
                    continue
                seen.add(arc)
                files.append((p, arc))
        if not files:
            raise NotFound("the outputs of those jobs are no longer there (moved or removed)")
        with replacing(dest) as tmp, zipfile.ZipFile(tmp, "x", allowZip64=True) as z:
            for p, arc in files:
                z.write(p, arc, compress_type=zipfile.ZIP_STORED if p.suffix.lower() == ".mp4" else zipfile.ZIP_DEFLATED)
        return dest, len(files)

    def zip_path(self) -> Path:
        """Where a new zip for a download goes; zips older than an hour are removed."""
        folder = self.home / "web" / "zips"
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for p in folder.iterdir():
            try:
                if now - p.stat().st_mtime > ZIP_KEEP_S:
                    p.unlink()
            except OSError:
                pass
        return folder / f"facetalk-outputs-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.zip"

    def log(self, job_id: str) -> str:
        from ..jobs.logs import read_job_log

        job = self.job(job_id)
        text = read_job_log(self.home, job.id)
        if text is None:
            text = "".join(time.strftime("%Y-%m-%d %H:%M:%S ", time.localtime(e["time"])) + e["message"] + "\n"
                           for e in self.store.events(job.id))
        return self.shown(text) or ""

    def view(self, job: Job) -> dict:
        """A job as the API and the studio show it."""
        d = job.to_dict()
        d["error"] = self.shown(job.error)
        d["request"] = {k: v for k, v in job.request.items() if v is not None}
        for k in UPLOAD_KEYS:  # upload paths as the names the user gave them
            if k in d["request"]:
                d["request"][k] = self.shown(d["request"][k])
        d["outputs"] = [Path(o).name for o in job.outputs]
        links = {"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events", "log": f"/v1/jobs/{job.id}/log"}
        if job.state == JobState.SUCCEEDED:
            links.update(output=f"/v1/jobs/{job.id}/output", sidecar=f"/v1/jobs/{job.id}/output?file=sidecar")
        d["links"] = links
        for k in ("worker", "lease_until", "resources"):
            d.pop(k, None)
        return d

    # -- identities ------------------------------------------------------------------------

    def identities(self) -> list[dict]:
        out = []
        for name in self.registry.names():
            versions = self.registry.versions(name)
            try:
                latest = self.registry.latest(name)
            except IdentityError:
                latest = None
            out.append({"name": name, "latest": latest if latest in versions else None,
                        "versions": [self._version(name, v, latest) for v in versions]})
        return out

    def _version(self, name: str, version: int, latest: int | None) -> dict:
        from ..identity.registry import format_ref

        ref = format_ref(name, version)
        info = {"ref": ref, "version": version, "latest": version == latest, "thumbnail": f"/v1/identities/{ref}/thumbnail"}
        try:
            m = self.registry.manifest(ref)
        except IdentityError as e:
            return {**info, "error": str(e)}
        frames = m.get("frames") if isinstance(m.get("frames"), dict) else {}
        files = m.get("files") if isinstance(m.get("files"), dict) else {}
        footage = m.get("footage") if isinstance(m.get("footage"), list) else []
        return {**info, "created": m.get("created"), "consent": m.get("consent"), "facetalk": m.get("facetalk"),
                "frames_total": frames.get("total"), "frames_used": frames.get("used"),
                "frames_skipped": frames.get("skipped"), "bank": frames.get("bank"),
                "footage": [f.get("file") for f in footage if isinstance(f, dict)],
                "shapes": len(m["shapes"]) if isinstance(m.get("shapes"), dict) else None,
                "size_bytes": sum(f.get("size", 0) for f in files.values() if isinstance(f, dict)),
                "imported_from": m.get("imported_from")}

    def identity(self, ref: str) -> dict:
        try:
            name, version = self.registry.resolve(ref)
        except IdentityError as e:
            raise NotFound(str(e)) from None
        try:
            latest = self.registry.latest(name)
        except IdentityError:
            latest = None
        return self._version(name, version, latest)

    def thumbnail(self, ref: str, size: int = 256):
        """The version's reference photo, at most `size` pixels a side (a PIL image)."""
        from PIL import Image

        from ..identity.model import REFERENCE_FILE

        try:
            name, version = self.registry.resolve(ref)
        except IdentityError as e:
            raise NotFound(str(e)) from None
        path = self.registry.path(name, version) / REFERENCE_FILE
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((size, size))
                return im
        except OSError:
            raise NotFound(f"{name}@v{version} has no readable reference photo") from None

    def thumbnail_png(self, ref: str, size: int = 256) -> bytes:
        buf = io.BytesIO()
        self.thumbnail(ref, size).save(buf, "PNG")
        return buf.getvalue()

    def promote(self, ref: str) -> dict:
        self._known(ref)
        self.registry.promote(ref)
        return self.identity(ref)

    def remove_identity(self, ref: str, remove_all: bool = False) -> None:
        from ..identity.registry import parse_ref

        self._known(ref)
        name, version = parse_ref(ref)
        if remove_all:
            if version is not None:
                raise WebError("all=true removes every version: give the bare name")
            self.registry.remove_all(name)
        else:
            try:
                self.registry.remove(ref)
            except IdentityError as e:
                raise Conflict(str(e)) from None

    def _known(self, ref: str) -> None:
        try:
            self.registry.resolve(ref)
        except IdentityError as e:
            raise NotFound(str(e)) from None

    def start_identity(self, name: str, footage: list[Upload], folder: Path | None, consent: str | None,
                       transcripts: list[str | None] | None = None, allow_mixed: bool = False,
                       promote: bool = False) -> dict:
        """Check what can be checked now (name, consent, each footage by content), then
        learn in the background; the task (see facetalk.web.tasks)."""
        from ..identity.registry import check_name

        check_name(name)
        if not consent or not consent.strip():
            raise InputError("consent is required: say who agreed to this identity being made, and for what")
        if not footage:
            raise InputError("upload at least one video of the person talking (mp4, mov, mkv or webm)")
        transcripts = list(transcripts or [])
        if transcripts and len(transcripts) != len(footage):
            raise InputError(f"{len(transcripts)} transcripts for {len(footage)} footage files: give one per file, "
                             "in the same order, or none")
        for up in footage:
            uploads.check_media(up.path, "footage", up.filename)
        spec = TaskSpec(name=name, footage=[u.path for u in footage], footage_names=[u.filename for u in footage],
                        transcripts=transcripts or [None] * len(footage), consent=consent.strip(),
                        allow_mixed=allow_mixed, promote=promote, folder=folder)
        return self.tasks.start(spec)

    def _learn(self, spec: TaskSpec, ctx):
        from ..identity.learn import create_identity

        result = create_identity(self.registry, spec.name, footage=[str(p) for p in spec.footage],
                                 transcripts=spec.transcripts, consent=spec.consent, allow_mixed=spec.allow_mixed,
                                 ctx=ctx)
        if spec.promote:
            self.registry.promote(result.ref)
        return result


def preview_dir(home: Path) -> Path:
    """Where the studio links (or copies) videos written outside outputs/ to play them."""
    return Path(home) / "web" / "preview"


def error_status(e: BaseException) -> int:
    """HTTP status of an error a request caused."""
    if isinstance(e, WebError):
        return e.status
    if isinstance(e, FacetalkError):
        return 422
    return 500


__all__ = ["RENDER_OPTIONS", "Input", "Service", "error_status", "tts_available", "tts_voices"]
