"""WebRTC for live sessions (aiortc, the web extra): POST /v1/live/{id}/offer with the
client's SDP offer (an audio track: its microphone; a video transceiver to receive) answers
with the server's SDP. The server sends back the talking face as a video track and the same
audio, `delay_s` late so picture and sound stay together.

Safe by default: no STUN or TURN server is configured (aiortc would otherwise ask Google's
STUN server), so ICE offers only this machine's own addresses (host candidates) and nothing
outside is contacted. The session ends, its threads joined, when the peer connection closes
or fails, or its audio track ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from fractions import Fraction

from pydantic import BaseModel, Field

VIDEO_CLOCK = 90_000


def rtc_available() -> bool:
    return importlib.util.find_spec("aiortc") is not None


class Offer(BaseModel):
    sdp: str = Field(..., max_length=200_000)
    type: str = Field("offer", pattern="^offer$")


class Answer(BaseModel):
    sdp: str
    type: str


def add_rtc_route(router, hub) -> None:
    from fastapi.concurrency import run_in_threadpool

    from .live import _Detail, _Runner
    from .uploads import NotFound, WebError

    @router.post("/v1/live/{sid}/offer", response_model=Answer, tags=["live"],
                 responses={404: {"model": _Detail}, 422: {"model": _Detail}, 429: {"model": _Detail}})
    async def live_offer(sid: str, offer: Offer) -> dict:
        """WebRTC for a live session made by POST /v1/live: send your SDP offer (an audio
        track, and a video transceiver to receive), get the answer. The talking face comes
        back as video with your audio delay_s late. ICE uses this machine's own addresses
        only (no STUN/TURN). The session ends when the connection closes."""
        if not rtc_available():
            raise WebError("WebRTC is not installed on this server (pip install 'facetalk[web]' brings aiortc); "
                           "use the WebSocket instead")
        slot = hub.claim(sid)
        if slot is None:
            raise NotFound("no such live session (or already connected): POST /v1/live first")
        try:
            return await _answer(hub, slot, offer, _Runner, run_in_threadpool)
        except BaseException:
            slot.stop.set()
            hub.release(sid)
            raise



async def _answer(hub, slot, offer: Offer, runner_cls, run_in_threadpool) -> dict:
    import av
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    loop = asyncio.get_running_loop()
    delay = slot.options.delay_s
    video_q: asyncio.Queue = asyncio.Queue(maxsize=8)
    audio_q: asyncio.Queue = asyncio.Queue()

    def offer_frame(msg) -> None:  # from the frame thread
        def put() -> None:
            if msg is not None and not hasattr(msg, "image"):
                return  # the end report: the closing track says it
            if video_q.full() and msg is not None:
                video_q.get_nowait()  # a slow peer loses old frames, never queues them
            video_q.put_nowait(msg)
        try:
            loop.call_soon_threadsafe(put)
        except RuntimeError:  # the server's loop has stopped: nobody is listening any more
            pass

    runner = runner_cls(slot, offer_frame, encode=lambda frame, audio_s: frame)

    class FaceTrack(MediaStreamTrack):
        kind = "video"

        async def recv(self):
            frame = await video_q.get()
            if frame is None:
                self.stop()
                raise MediaStreamError
            out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            out.pts = int(round(frame.pts * VIDEO_CLOCK))
            out.time_base = Fraction(1, VIDEO_CLOCK)
            return out

    class DelayedAudio(MediaStreamTrack):
        kind = "audio"

        async def recv(self):
            item = await audio_q.get()
            if item is None:
                self.stop()
                raise MediaStreamError
            arrived, frame = item
            wait = arrived + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN/TURN: host candidates only
    face_track, audio_out = FaceTrack(), DelayedAudio()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    closed = asyncio.Event()

    async def finish() -> None:
        if closed.is_set():
            return
        closed.set()
        runner.stop()
        hub.release(slot.id)
        await run_in_threadpool(runner.join)
        audio_q.put_nowait(None)
        await pc.close()

    async def consume(track) -> None:
        try:
            while True:
                frame = await track.recv()
                audio_q.put_nowait((time.monotonic(), frame))
                for part in resampler.resample(frame):
                    runner.push(bytes(part.planes[0])[: part.samples * 2])
        except MediaStreamError:
            runner.end()  # the speech is over: the last frames follow, then the video track ends

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind == "audio":
            pc.addTrack(audio_out)
            asyncio.ensure_future(consume(track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await finish()

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
    pc.addTrack(face_track)  # into the client's video transceiver (recvonly on its side)
    runner.start()
    answer = await pc.createAnswer()
    await pc.setLocalDescription(answer)
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
