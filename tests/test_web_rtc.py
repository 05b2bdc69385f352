"""WebRTC for live sessions (aiortc): a Python peer offers its audio (a file played at its
own pace) and a video transceiver; the talking face comes back as video whose mouth,
re-detected, opens while the file speaks and stays shut in its pause, with the same audio
returned; ICE offers no outside address (no STUN/TURN); closing the peer frees the session
and its threads."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiortc")
if importlib.util.find_spec("gradio") is None:
    pytest.skip("the web extra is not installed: pip install 'facetalk[web]'", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from facetalk.web import ServerConfig, create_app  # noqa: E402

from .web_fixtures import face_photo  # noqa: E402


def _live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("facetalk-live")]


def test_webrtc_returns_a_face_that_speaks_and_the_same_audio(tmp_path, speech_with_pause):
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamError

    from facetalk.face import geometry
    from facetalk.face.detect import detect_landmarks
    from facetalk.face.models import FaceModels

    photo = face_photo(tmp_path / "astronaut.png", long_side=256)
    before = _live_threads()
    with TestClient(create_app(ServerConfig(home=tmp_path / "home"), studio=False), base_url="http://127.0.0.1") as c:
        info = c.post("/v1/live", json={"face": str(photo), "size": 256, "fps": 12.5}).json()
        assert "/v1/live/{sid}/offer" in c.get("/openapi.json").json()["paths"]

        async def run() -> tuple[list, int, str]:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            player = MediaPlayer(str(speech_with_pause["path"]))  # real-time pace, as a microphone
            pc.addTrack(player.audio)
            pc.addTransceiver("video", direction="recvonly")
            got: dict = {"video": [], "audio": 0}

            async def take_video(track) -> None:
                try:
                    while True:
                        f = await track.recv()
                        got["video"].append((float(f.pts * f.time_base), f.to_ndarray(format="rgb24")))
                except MediaStreamError:
                    pass

            async def take_audio(track) -> None:
                try:
                    while True:
                        await track.recv()
                        got["audio"] += 1
                except MediaStreamError:
                    pass

            @pc.on("track")
            def on_track(track) -> None:
                asyncio.ensure_future(take_video(track) if track.kind == "video" else take_audio(track))

            await pc.setLocalDescription(await pc.createOffer())
            r = await asyncio.to_thread(c.post, f"/v1/live/{info['id']}/offer",
                                        json={"sdp": pc.localDescription.sdp, "type": "offer"})
            assert r.status_code == 200, r.text
            answer = r.json()
            await pc.setRemoteDescription(RTCSessionDescription(**answer))
            # RTP does not say a track has ended: wait for the file's length, then for frames to stop
            duration = len(speech_with_pause["samples"]) / speech_with_pause["sr"]
            t0 = time.monotonic()
            seen, quiet_since = 0, time.monotonic()
            while time.monotonic() - t0 < duration + 30:
                await asyncio.sleep(0.25)
                if len(got["video"]) != seen:
                    seen, quiet_since = len(got["video"]), time.monotonic()
                elif time.monotonic() - t0 > duration and time.monotonic() - quiet_since > 1.5:
                    break
            await pc.close()
            return got["video"], got["audio"], answer["sdp"]

        frames, audio_frames, sdp = asyncio.run(run())
        # only this machine's own addresses: no server-reflexive or relayed candidates
        cands = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
        assert cands and all(" typ host" in line for line in cands)
        assert audio_frames > 50, "the same audio must come back"
        assert len(frames) > 0.7 * 12.5 * 6
        models = FaceModels()
        t = np.array([p for p, _ in frames])
        assert np.all(np.diff(t) > 0)
        opening = []
        for _, img in frames:
            lm = detect_landmarks(models, img)
            opening.append(np.nan if lm is None else float(geometry.mouth_openness(lm)))
        opening = np.array(opening)
        a, b = speech_with_pause["silence"]
        pause = opening[(t > a + 0.35) & (t < b - 0.35)]
        speech = opening[(t > 0.6) & (t < a - 0.1)]
        rest = float(geometry.mouth_openness(detect_landmarks(models, frames[0][1])))
        assert np.nanmax(pause) < max(rest, 0.0) + 0.08 and np.nanmax(pause) < 0.12, pause
        assert np.nanpercentile(speech, 80) > np.nanmedian(pause) + 0.06, (speech, pause)
        deadline = time.monotonic() + 10
        while (_live_threads() != before or c.get("/v1/live").json()["sessions"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_threads() == before and c.get("/v1/live").json()["sessions"] == 0
