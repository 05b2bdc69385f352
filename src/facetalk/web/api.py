"""The REST API, /v1: jobs (submit, list, read, follow, cancel, delete, download) and
identities (list, learn from footage, promote, remove), over facetalk.web.service.

Errors are JSON {"detail": "one line"}: 404 an unknown job or identity, 409 a change the
job's state does not allow, 413 an upload over the limit, 422 bad input (the CLI's message).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask

from .. import __version__
from ..finish.options import DEFAULT_LABEL_OPACITY, DEFAULT_LABEL_SIZE, DEFAULT_LABEL_TEXT, MAX_LABEL_CHARS
from ..jobs.store import FINAL_STATES
from . import uploads
from .service import UPLOAD_KEYS, Service
from .uploads import Upload, WebError

SSE_KEEPALIVE_S = 15.0


class RenderOptions(BaseModel):
    """A render to queue. face and audio: an uploaded file (multipart), an absolute path on
    the server, or an http(s) URL (fetched only when the server runs with --allow-urls);
    lut and enhancer: an uploaded file or an absolute path on the server, never a URL."""

    model_config = ConfigDict(extra="forbid")

    face: str | None = Field(None, max_length=4096, description="Photo or video of the person (or give identity).")
    audio: str | None = Field(None, max_length=4096, description="Speech: wav, mp3, m4a, flac, ogg, or a video's sound.")
    identity: str | None = Field(None, max_length=80, description="A learnt person: NAME or NAME@vN.")
    identity_face: Literal["clip", "photo"] = Field("clip", description="Face source of an identity without face.")
    transcript: str | None = Field(None, max_length=100_000, description="The words spoken: precise lip-sync.")
    text: str | None = Field(None, max_length=20_000, description="Words to speak instead of audio (text-to-speech; "
                             "refused when this facetalk has none).")
    voice: str | None = Field(None, max_length=200, description="Voice of text (e.g. en-us); default the engine's.")
    fps: float | None = Field(None, ge=1, le=120, description="Default: 25 for a photo, the video's own rate.")
    size: str | None = Field(None, max_length=20, description="WIDTHxHEIGHT or a long side; default the input's.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    still: bool = Field(False, description="No blinks, head sway or breathing on a photo.")
    face_index: int | None = Field(None, ge=0, le=1000, description="Which face when several (0 = the largest).")
    renderer: str | None = Field(None, max_length=40, description="warp, or retrieval (needs identity).")
    color_match: Literal["none", "mean", "histogram"] = Field(
        "mean", description="Match the colour of the new mouth to the face around it: by mean, histogram, or not.")
    crf: int = Field(18, ge=0, le=51, description="H.264 quality (lower is better).")
    enhance: bool = Field(False, description="Sharpen detail in the mouth (teeth, lips) and, gently, the face.")
    enhancer: str | None = Field(None, max_length=4096, description="A face-restoration model exported to ONNX "
                                 "(GFPGAN, CodeFormer) run on the face: an uploaded .onnx file (multipart) or an "
                                 "absolute path on the server.")
    lut: str | None = Field(None, max_length=4096, description="A .cube colour grade: an uploaded file (multipart) or "
                            "an absolute path on the server.")
    lut_strength: float = Field(1.0, ge=0, le=1, description="How much of the lut grade: 0 (none) to 1.")
    label: bool = Field(True, description="Show the visible label (the MP4's tags say it is AI-generated either way).")
    label_text: str = Field(DEFAULT_LABEL_TEXT, min_length=1, max_length=MAX_LABEL_CHARS,
                            description="Words of the visible label.")
    label_corner: Literal["bottom-right", "bottom-left", "top-right", "top-left"] = "bottom-right"
    label_size: float = Field(DEFAULT_LABEL_SIZE, ge=0.01, le=0.2, description="Text height over frame height.")
    label_opacity: float = Field(DEFAULT_LABEL_OPACITY, ge=0.05, le=1)
    name: str | None = Field(None, max_length=80, description="Name of the job and its output file.")
    batch: str | None = Field(None, max_length=80, description="Tag the job with a batch name.")
    max_attempts: int = Field(3, ge=1, le=100)


class JobOut(BaseModel):
    id: str
    name: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str
    progress: float
    attempts: int
    max_attempts: int
    created: float
    started: float | None
    finished: float | None
    error: str | None
    batch: str | None
    request: dict
    outputs: list[str]
    metrics: dict
    versions: dict
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobOut]
    counts: dict[str, int]


class IdentityVersion(BaseModel):
    model_config = ConfigDict(extra="allow")

    ref: str
    version: int
    latest: bool
    thumbnail: str
    created: str | None = None
    consent: object = None
    frames_total: int | None = None
    frames_used: int | None = None
    error: str | None = None


class IdentityOut(BaseModel):
    name: str
    latest: int | None
    versions: list[IdentityVersion]


class IdentityList(BaseModel):
    identities: list[IdentityOut]


class TaskOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    state: Literal["queued", "running", "succeeded", "failed"]
    stage: str
    progress: float
    ref: str | None
    error: str | None


class Health(BaseModel):
    status: str
    version: str


class Detail(BaseModel):
    detail: str


ERRORS = {404: {"model": Detail}, 409: {"model": Detail}, 422: {"model": Detail}}


def _render_body_schema() -> dict:
    schema = RenderOptions.model_json_schema()
    multipart = json.loads(json.dumps(schema))
    for k in UPLOAD_KEYS:
        multipart["properties"][k] = {"anyOf": [{"type": "string", "format": "binary"}, {"type": "string"}],
                                      "description": schema["properties"][k].get("description", "")}
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "multipart/form-data": {"schema": multipart}}}


def _identity_body_schema() -> dict:
    props = {
        "name": {"type": "string", "maxLength": 64, "description": "Identity name: lower-case letters, digits, . _ -"},
        "consent": {"type": "string", "maxLength": 2000, "description": "Who agreed to this identity, and for what."},
        "footage": {"type": "array", "items": {"type": "string", "format": "binary"},
                    "description": "Videos of the person talking (or absolute paths on the server)."},
        "transcript": {"type": "array", "items": {"type": "string"}, "description": "Words of each footage file."},
        "allow_mixed": {"type": "boolean"},
        "promote": {"type": "boolean"},
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props, "required": ["name", "consent", "footage"]}}}}


def _bool(text: str | None, name: str) -> bool:
    if text is None or text == "":
        return False
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise WebError(f"{name} must be true or false, got {text[:20]!r}")


def api_router(service: Service) -> APIRouter:
    config = service.config
    router = APIRouter(prefix="/v1")

    @router.get("/health", response_model=Health, tags=["server"])
    def health() -> dict:
        """The server is up (open without a token: it tells nothing else)."""
        return {"status": "ok", "version": __version__}

    # -- jobs ------------------------------------------------------------------------------

    @router.post("/jobs", status_code=201, response_model=JobOut, tags=["jobs"],
                 responses={**ERRORS, 413: {"model": Detail}}, openapi_extra={"requestBody": _render_body_schema()})
    async def submit_job(request: Request, response: Response) -> dict:
        """Queue a render: multipart (face and audio uploaded, or given as text) or JSON."""
        raw, files, form = await uploads.receive_body(request, config.home, {k: k for k in UPLOAD_KEYS},  # role = field
                                                      config.max_upload_bytes)
        for k in files:
            raw.pop(k, None)
        try:
            try:
                opts = RenderOptions.model_validate(raw)
            except ValidationError as e:
                raise WebError(_validation_line(e)) from None
            job = await run_in_threadpool(_submit, service, opts, files, form.folder if form else None)
        except BaseException:
            uploads.discard(form.folder if form else None)
            raise
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return service.view(job)

    @router.get("/jobs", response_model=JobList, tags=["jobs"], responses={422: {"model": Detail}})
    def list_jobs(state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
                  batch: Annotated[str | None, Query(max_length=80)] = None,
                  limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> dict:
        """Jobs, newest first."""
        jobs = service.jobs(state=state, batch=batch, limit=limit)
        return {"jobs": [service.view(j) for j in jobs], "counts": service.store.counts(batch=batch)}

    @router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def get_job(job_id: str) -> dict:
        return service.view(service.job(job_id))

    @router.delete("/jobs/{job_id}", status_code=204, tags=["jobs"], responses=ERRORS)
    def delete_job(job_id: str, outputs: bool = False) -> Response:
        """Forget a job that is not running (cancel it first); outputs=true removes its video and sidecar too."""
        service.delete(job_id, remove_outputs=outputs)
        return Response(status_code=204)

    @router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def cancel_job(job_id: str) -> dict:
        """Cancel a queued or running job (a running one stops within a second or two)."""
        return service.view(service.cancel(job_id))

    @router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def retry_job(job_id: str) -> dict:
        """Queue a failed or cancelled job again."""
        return service.view(service.retry(job_id))

    @router.get("/jobs/{job_id}/output", tags=["jobs"], response_class=FileResponse,
                responses={**ERRORS, 200: {"content": {"video/mp4": {}, "application/json": {}}}})
    def job_output(job_id: str, file: Literal["video", "sidecar"] = "video") -> FileResponse:
        """The rendered MP4 (or, with file=sidecar, its JSON sidecar)."""
        path = service.output(job_id, file)
        return FileResponse(path, media_type="video/mp4" if file == "video" else "application/json",
                            filename=path.name)

    @router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, tags=["jobs"], responses=ERRORS)
    def job_log(job_id: str) -> str:
        """The job's log: each attempt, stage, warning and error."""
        return service.log(job_id)

    @router.get("/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse,
                responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                                           "description": "'progress' events, then one 'end' event"}})
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: a `progress` event at every change (state, stage, progress),
        then `end` with the whole job once it is succeeded, failed or cancelled."""
        job = await run_in_threadpool(service.job, job_id)
        return StreamingResponse(_events(service, job.id, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/outputs/zip", tags=["jobs"], response_class=FileResponse,
                responses={**ERRORS, 200: {"content": {"application/zip": {}}}})
    def outputs_zip(job: Annotated[list[str], Query(min_length=1, max_length=1000,
                                                    description="A job id (repeat for several).")]) -> FileResponse:
        """One zip of the outputs (video and sidecar) of the given succeeded jobs."""
        dest = service.zip_path()
        path, _ = service.zip_jobs(job, dest)
        return FileResponse(path, media_type="application/zip", filename=path.name,
                            background=BackgroundTask(path.unlink, missing_ok=True))

    # -- identities ------------------------------------------------------------------------

    @router.get("/identities", response_model=IdentityList, tags=["identities"])
    def list_identities() -> dict:
        """Every identity with its versions: when made, consent, frames used, a thumbnail link."""
        return {"identities": service.identities()}

    @router.post("/identities", status_code=202, response_model=TaskOut, tags=["identities"],
                 responses={**ERRORS, 413: {"model": Detail}}, openapi_extra={"requestBody": _identity_body_schema()})
    async def create_identity(request: Request, response: Response) -> dict:
        """Learn a new version of an identity from uploaded footage, in the background;
        follow it at /v1/identity-tasks/{id}."""
        form = await uploads.receive_form(request, config.home, {"footage": "footage"}, config.max_upload_bytes)
        try:
            task = await run_in_threadpool(_start_identity, service, form)
        except BaseException:
            uploads.discard(form.folder)
            raise
        response.headers["Location"] = f"/v1/identity-tasks/{task['id']}"
        return task

    @router.get("/identity-tasks", response_model=list[TaskOut], tags=["identities"])
    def list_tasks(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
        """Identity creations, newest first."""
        return service.tasks.list(limit)

    @router.get("/identity-tasks/{task_id}", response_model=TaskOut, tags=["identities"], responses=ERRORS)
    def get_task(task_id: str) -> dict:
        return service.tasks.get(task_id)

    @router.get("/identities/{ref}", response_model=IdentityVersion, tags=["identities"], responses=ERRORS)
    def get_identity(ref: str) -> dict:
        """One version (NAME: the latest; NAME@vN)."""
        return service.identity(ref)

    @router.get("/identities/{ref}/thumbnail", tags=["identities"], response_class=Response,
                responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    def identity_thumbnail(ref: str, size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
        """The version's reference photo, at most `size` pixels a side."""
        return Response(service.thumbnail_png(ref, size), media_type="image/png")

    @router.post("/identities/{ref}/promote", response_model=IdentityVersion, tags=["identities"], responses=ERRORS)
    def promote_identity(ref: str) -> dict:
        """Make NAME@vN the version a bare NAME means."""
        return service.promote(ref)

    @router.delete("/identities/{ref}", status_code=204, tags=["identities"], responses=ERRORS)
    def remove_identity(ref: str, all: bool = False) -> Response:  # noqa: A002 - the query's name
        """Remove NAME@vN (not the latest while others exist), or NAME with all=true."""
        service.remove_identity(ref, remove_all=all)
        return Response(status_code=204)

    return router


def _validation_line(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "is not an option of a render"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _submit(service: Service, opts: RenderOptions, files: dict[str, Upload], folder: Path | None):
    holder = [folder]
    try:
        face = service.resolve(files.get("face") or opts.face, "face", "face", holder)
        audio = service.resolve(files.get("audio") or opts.audio, "audio", "audio", holder)
        lut = service.resolve_lut(files.get("lut") or opts.lut)
        enhancer = service.resolve_enhancer(files.get("enhancer") or opts.enhancer)
        options = opts.model_dump(include={"identity", "identity_face", "transcript", "fps", "size", "seed", "still",
                                           "face_index", "renderer", "color_match", "crf", "text", "voice", "enhance",
                                           "lut_strength", "label", "label_text", "label_corner", "label_size",
                                           "label_opacity"})
        return service.submit(options, face, audio, name=opts.name, batch=opts.batch, max_attempts=opts.max_attempts,
                              lut=lut, enhancer=enhancer)
    except BaseException:
        uploads.discard(holder[0])
        raise


def _start_identity(service: Service, form: uploads.Form) -> dict:
    allowed = {"name", "consent", "transcript", "allow_mixed", "promote", "footage"}
    unknown = sorted(set(form.fields) - allowed)
    if unknown:
        raise WebError(f"unknown fields: {', '.join(unknown)}")
    footage = list(form.files.get("footage", []))
    for text in form.fields.get("footage", []):  # paths on the server
        if uploads.is_url(text):
            raise WebError(f"footage {uploads.display_name(text)}: upload the video, or give an absolute path on the server")
        p = uploads.server_path(text, "footage")
        uploads.check_extension(p.name, "footage")
        if not p.is_file():
            raise WebError(f"footage {text.strip()} does not exist on the server: check the path")
        footage.append(Upload(field="footage", path=p, filename=text.strip(), size=p.stat().st_size, kind="video"))
    transcripts = [t if t.strip() else None for t in form.fields.get("transcript", [])]
    return service.start_identity(
        name=(form.value("name") or "").strip(), footage=footage, folder=form.folder, consent=form.value("consent"),
        transcripts=transcripts, allow_mixed=_bool(form.value("allow_mixed"), "allow_mixed"),
        promote=_bool(form.value("promote"), "promote"))


async def _events(service: Service, job_id: str, request: Request):
    last = None
    last_sent = time.monotonic()
    last_reap = 0.0
    seq = 0
    while True:
        if await request.is_disconnected():
            return
        if time.monotonic() - last_reap > 5.0:
            await asyncio.to_thread(service.store.requeue_expired)
            last_reap = time.monotonic()
        try:
            job = await asyncio.to_thread(service.store.get, job_id)
        except Exception as e:  # noqa: BLE001 - deleted while followed
            yield f"event: error\ndata: {json.dumps({'detail': str(e)})}\n\n"
            return
        now = (str(job.state), job.stage, round(job.progress, 3))
        if now != last:
            last = now
            seq += 1
            data = {"id": job.id, "state": now[0], "stage": job.stage, "progress": round(job.progress, 4),
                    "error": service.shown(job.error)}
            yield f"id: {seq}\nevent: progress\ndata: {json.dumps(data)}\n\n"
            last_sent = time.monotonic()
        if job.state in FINAL_STATES:
            seq += 1
            yield f"id: {seq}\nevent: end\ndata: {json.dumps(service.view(job), default=str)}\n\n"
            return
        if time.monotonic() - last_sent > SSE_KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(service.config.poll_s)


__all__ = ["JobOut", "RenderOptions", "api_router"]
