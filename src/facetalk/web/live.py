"""Live over the REST API: POST /v1/live prepares a face and holds a session slot; the
client then opens the WebSocket /v1/live/{id}/ws, sends its microphone as binary PCM and
gets the talking face back as JPEG frames with timestamps.

WebSocket protocol (documented in POST /v1/live's description, so it is in the schema):
- client -> server: binary messages of signed 16-bit little-endian mono PCM at 16 kHz,
  any length (20 ms is usual); a text message {"type": "end"} when the speech is over.
- server -> client: per frame one binary message: 4 bytes big-endian header length N,
  N bytes of JSON header {"type": "frame", "index", "pts", "sent", "audio_s", "width",
  "height", "scale", "skipped", "open"}, then the JPEG. pts: the audio time the frame
  shows (s from the first sample); sent: the server's session clock when it was sent
  (pts + delay_s unless the machine fell behind); audio_s: seconds of audio received
  then. After {"type": "end"} from the client the last frames follow, then a text
  message {"type": "end", ...counts} and the server closes.

Sessions: at most ServerConfig.live_sessions at once (a POST past it gets 429 with the
reason); a slot whose WebSocket is not opened within PENDING_S is freed; a session ends,
its threads joined and its uploads removed, when its client goes away.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import FacetalkError, InputError
from . import uploads
from .uploads import WebError

PENDING_S = 30.0
JPEG_QUALITY = 85
SEND_QUEUE = 4  # frames waiting for a slow client; older ones are dropped, never queued up


class LiveBusy(WebError):
    status = 429


class LiveOptionsIn(BaseModel):
    """A live session: the face (an uploaded photo or video, an absolute path on the
    server, or an identity) and how frames are made."""

    model_config = ConfigDict(extra="forbid")

    face: str | None = Field(None, max_length=4096, description="Photo or video of the person (or give identity).")
    identity: str | None = Field(None, max_length=80, description="A learnt person: NAME or NAME@vN.")
    size: int = Field(512, ge=128, le=1920, description="Long side of the frames, px.")
    fps: float = Field(25.0, ge=1, le=60)
    delay_s: float = Field(0.32, ge=0.28, le=5.0, description="Each frame is sent this long after the sound it shows.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    still: bool = Field(False, description="No blinks, head sway or breathing.")


class LiveOut(BaseModel):
    id: str
    ws: str
    width: int
    height: int
    fps: float
    delay_s: float
    sample_rate: int
    format: str
    expires_s: float
    sessions: int
    limit: int


class LiveList(BaseModel):
    sessions: int
    limit: int


@dataclass
class Slot:
    id: str
    face: object  # facetalk.live.LiveFace
    options: object  # facetalk.live.LiveOptions
    folder: Path | None
    created: float = field(default_factory=time.monotonic)
    connected: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


class LiveHub:
    """The server's live sessions (one per app; nothing global)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, Slot] = {}
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = time.monotonic()
        for sid, slot in list(self._slots.items()):
            if not slot.connected and now - slot.created > PENDING_S:
                self._drop(sid)

    def _drop(self, sid: str) -> None:
        slot = self._slots.pop(sid, None)
        if slot is not None:
            slot.stop.set()
            uploads.discard(slot.folder)

    def reserve(self) -> str:
        with self._lock:
            self._expire()
            if self.limit <= 0:
                raise LiveBusy("live sessions are off on this server (start facetalk serve with --live-sessions N)")
            if len(self._slots) >= self.limit:
                raise LiveBusy(f"all {self.limit} live session{'s are' if self.limit != 1 else ' is'} in use (the "
                               "server's --live-sessions); try again when one ends")
            sid = secrets.token_urlsafe(12)
            self._slots[sid] = None  # type: ignore[assignment] - held while the face is prepared
            return sid

    def fill(self, sid: str, slot: Slot) -> None:
        with self._lock:
            self._slots[sid] = slot

    def release(self, sid: str) -> None:
        with self._lock:
            if self._slots.get(sid, 0) is None:
                self._slots.pop(sid, None)
            else:
                self._drop(sid)

    def claim(self, sid: str) -> Slot | None:
        with self._lock:
            self._expire()
            slot = self._slots.get(sid)
            if slot is None or slot.connected:
                return None
            slot.connected = True
            return slot

    @property
    def active(self) -> int:
        with self._lock:
            self._expire()
            return len(self._slots)

    def close(self) -> None:
        with self._lock:
            for sid in list(self._slots):
                self._drop(sid)


def _header(frame, audio_s: float) -> bytes:
    head = json.dumps({"type": "frame", "index": frame.index, "pts": round(frame.pts, 4),
                       "sent": None if frame.sent is None else round(frame.sent, 4), "audio_s": round(audio_s, 4),
                       "width": int(frame.image.shape[1]), "height": int(frame.image.shape[0]),
                       "scale": frame.scale, "skipped": frame.skipped, "open": round(frame.open, 3)}).encode()
    return struct.pack(">I", len(head)) + head


def frame_message(frame, audio_s: float) -> bytes:
    import cv2

    ok, jpg = cv2.imencode(".jpg", frame.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    return _header(frame, audio_s) + jpg.tobytes()


def parse_frame_message(data: bytes) -> tuple[dict, bytes]:
    """(header, JPEG bytes) of a frame message (for clients and tests)."""
    (n,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + n]), data[4 + n:]


def live_router(service, hub: LiveHub) -> APIRouter:
    config = service.config
    router = APIRouter()

    @router.get("/live/", include_in_schema=False)
    def live_page() -> HTMLResponse:
        """The browser's live page (the studio's Live tab shows it)."""
        from .live_page import PAGE

        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
    errors = {422: {"model": _Detail}, 429: {"model": _Detail}}

    @router.get("/v1/live", response_model=LiveList, tags=["live"])
    def live_status() -> dict:
        """How many live sessions are open, and how many the server allows."""
        return {"sessions": hub.active, "limit": hub.limit}

    @router.post("/v1/live", status_code=201, response_model=LiveOut, tags=["live"], responses=errors,
                 openapi_extra={"requestBody": _body_schema()}, description=__doc__.split("\n\n", 1)[1])
    async def create_live(request: Request) -> dict:
        """Open a live session: a talking face that speaks as your audio arrives."""
        sid = hub.reserve()
        form = None
        try:
            raw, files, form = await uploads.receive_body(request, config.home, {"face": "face"},
                                                          config.max_upload_bytes, what="a face")
            upload = files.get("face")
            if upload is not None:
                raw.pop("face", None)
            try:
                opts = LiveOptionsIn.model_validate(raw)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ())) or "request"
                raise WebError(f"{where}: {err.get('msg', 'invalid')}") from None
            slot = await run_in_threadpool(_prepare, service, sid, opts, upload, form.folder if form else None)
        except BaseException:
            hub.release(sid)
            uploads.discard(form.folder if form else None)
            raise
        hub.fill(sid, slot)
        w, h = slot.face.size
        return {"id": sid, "ws": f"/v1/live/{sid}/ws", "width": w, "height": h, "fps": opts.fps,
                "delay_s": opts.delay_s, "sample_rate": 16000, "format": "pcm_s16le mono", "expires_s": PENDING_S,
                "sessions": hub.active, "limit": hub.limit}

    @router.delete("/v1/live/{sid}", status_code=204, tags=["live"])
    def end_live(sid: str) -> Response:
        """End a live session (its WebSocket is closed)."""
        hub.release(sid)
        return Response(status_code=204)

    from .rtc import add_rtc_route

    add_rtc_route(router, hub)

    @router.websocket("/v1/live/{sid}/ws")
    async def live_ws(websocket: WebSocket, sid: str) -> None:
        slot = hub.claim(sid)
        if slot is None:
            await websocket.close(code=1008, reason="no such live session (or already connected): POST /v1/live first")
            return
        await websocket.accept()
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        waiting: deque = deque()
        def deliver(msg) -> None:  # from the frame thread
            try:
                loop.call_soon_threadsafe(_offer, out, waiting, msg)
            except RuntimeError:  # the server's loop has stopped: nobody is listening any more
                pass

        runner = _Runner(slot, deliver)
        runner.start()

        async def sender() -> None:
            while True:
                msg = await out.get()
                if msg is None:
                    return
                try:
                    if isinstance(msg, str):
                        await websocket.send_text(msg)
                    else:
                        await websocket.send_bytes(msg)
                except Exception:  # noqa: BLE001 - the client has gone: the receive side ends the session
                    return

        send_task = asyncio.create_task(sender())
        try:
            while True:
                recv = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait({recv, send_task}, return_when=asyncio.FIRST_COMPLETED)
                if send_task in done:  # the stream ended (or the client went away while sending)
                    recv.cancel()
                    break
                message = recv.result()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    runner.push(message["bytes"])
                elif message.get("text") is not None:
                    try:
                        kind = json.loads(message["text"]).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == "end":
                        runner.end()
                    else:
                        await websocket.send_text(json.dumps({"type": "error", "detail": "text messages: only "
                                                              "{\"type\": \"end\"}; audio goes as binary PCM"}))
        except WebSocketDisconnect:
            pass
        finally:
            runner.stop()  # the frame threads end within a frame; the slot is free at once
            hub.release(sid)
            if not send_task.done():
                send_task.cancel()
            await run_in_threadpool(runner.join)
            try:
                await websocket.close()
            except Exception:  # noqa: BLE001 - already closed by the client
                pass

    return router


def _offer(out: asyncio.Queue, waiting: deque, msg) -> None:
    """Queue a message for the client; a slow client loses old frames, never the end."""
    if isinstance(msg, bytes) and out.qsize() >= SEND_QUEUE:
        try:
            out.get_nowait()
        except asyncio.QueueEmpty:  # pragma: no cover
            pass
    out.put_nowait(msg)


class _Runner:
    """One session's frame thread: plans and draws frames as they fall due (two at once),
    hands each to `send` as a message. Audio is pushed from the WebSocket's side."""

    def __init__(self, slot: Slot, send, encode=None) -> None:
        """send(message): bytes/str for the client, None at the very end; encode(frame,
        audio_s) -> the message of a frame (default: frame_message, a JPEG)."""
        from ..live import LiveSession

        self.slot = slot
        self.send = send
        self.encode = encode or frame_message
        self.session = LiveSession(slot.face, slot.options, workers=2)
        self._t0: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"facetalk-live-{slot.id[:6]}", daemon=True)
        self._error: str | None = None

    def clock(self) -> float:
        """Session seconds: the wall clock since the first audio, held back to the audio
        received (the latest packet's arrival, the audio it completes), so a client whose
        microphone runs slow or whose packets come late is not shown as frames gone late:
        each frame still leaves delay_s after its sound arrived."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def start(self) -> None:
        self._thread.start()

    def push(self, data: bytes) -> None:
        if self.session.mouth.ended:
            return
        try:
            self.session.push_pcm16(data)
        except InputError as e:
            self._error = str(e)
            self.slot.stop.set()
            return
        anchor = time.monotonic() - self.session.audio_seconds  # the clock never runs ahead of the audio in
        self._t0 = anchor if self._t0 is None else max(self._t0, anchor)

    def end(self) -> None:
        if not self.session.mouth.ended:
            self.session.end()

    def stop(self) -> None:
        self.slot.stop.set()

    def join(self) -> None:
        self._thread.join(10.0)

    def _run(self) -> None:
        from ..live.run import pump_frames

        session = self.session
        try:
            pump_frames(session, lambda f: self.send(self.encode(f, session.audio_seconds)), self.clock,
                        self.slot.stop)
            st = session.stats
            self.send(json.dumps({"type": "end", "frames": st.frames, "skipped": st.skipped, "held": st.held,
                                  "max_late_s": round(st.max_late_s, 4), "levels": st.levels,
                                  **({"error": self._error} if self._error else {})}))
        except FacetalkError as e:
            self.send(json.dumps({"type": "error", "detail": " ".join(str(e).split())}))
        finally:
            self.send(None)


def _prepare(service, sid: str, opts: LiveOptionsIn, upload, folder: Path | None) -> Slot:
    from ..live import LiveOptions, prepare_face

    face = None
    if upload is not None:
        face = service.resolve(upload, "face", "face", [folder])
    elif opts.face:
        face = service.resolve(opts.face, "face", "face", [folder])
    if face is None and not opts.identity:
        raise InputError("give face (a photo or video: upload it, or an absolute path on the server) or identity")
    with service._models_lock:  # the server's face models, one user at a time
        if service._models is None:
            from ..face.models import FaceModels

            service._models = FaceModels()
        live_face = prepare_face(str(face.path) if face else None, opts.identity, size=opts.size,
                                 models=service._models, registry=service.registry)
    options = LiveOptions(fps=opts.fps, delay_s=opts.delay_s, seed=opts.seed, still=opts.still)
    options.check()
    return Slot(sid, live_face, options, folder)


class _Detail(BaseModel):
    detail: str


def _body_schema() -> dict:
    schema = LiveOptionsIn.model_json_schema()
    multipart = json.loads(json.dumps(schema))
    multipart["properties"]["face"] = {"anyOf": [{"type": "string", "format": "binary"}, {"type": "string"}],
                                       "description": schema["properties"]["face"].get("description", "")}
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "multipart/form-data": {"schema": multipart}}}


__all__ = ["LiveHub", "frame_message", "live_router", "parse_frame_message"]
