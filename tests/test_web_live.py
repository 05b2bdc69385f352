"""The live endpoint of `facetalk serve` through FastAPI's test client: POST /v1/live (in
the schema), the WebSocket streaming a file at real-time pace and getting JPEG frames whose
timestamps keep pace with the audio, the session limit with its message, the REST API's
auth rules, and closing the client frees the session (its threads end)."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
if importlib.util.find_spec("gradio") is None:
    pytest.skip("the web extra is not installed: pip install 'facetalk[web]'", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from facetalk.media.audio import load_audio  # noqa: E402
from facetalk.web import ServerConfig, create_app  # noqa: E402
from facetalk.web.live import parse_frame_message  # noqa: E402

from .web_fixtures import face_photo, speech  # noqa: E402

BASE = "http://127.0.0.1"
WS = "ws://127.0.0.1"  # the test client's default host (testserver) is not a loopback name
CHUNK = 320  # 20 ms at 16 kHz


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("live-media")
    return {"photo": face_photo(d / "astronaut.png", long_side=256), "audio": speech(d / "hello.wav")}


def _client(home: Path, **kw) -> TestClient:
    return TestClient(create_app(ServerConfig(home=home, **kw), studio=False), base_url=BASE)


def _live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("facetalk-live")]


def _open(c: TestClient, media, **fields) -> dict:
    with open(media["photo"], "rb") as f:
        r = c.post("/v1/live", files={"face": ("me.png", f, "image/png")},
                    data={"size": "192", "fps": "12.5", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_live_endpoint_is_in_the_schema(tmp_path):
    with _client(tmp_path / "home") as c:
        schema = c.get("/openapi.json").json()
    post = schema["paths"]["/v1/live"]["post"]
    assert "WebSocket" in post["description"] and "pcm" in post["description"].lower()
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "429" in post["responses"]


def test_stream_a_file_frames_keep_pace_and_closing_frees_the_session(tmp_path, media):
    pcm = (np.clip(load_audio(media["audio"]).samples, -1, 1) * 32767).astype("<i2")
    before = _live_threads()
    with _client(tmp_path / "home") as c:
        info = _open(c, media)
        assert info["sample_rate"] == 16000 and info["ws"] == f"/v1/live/{info['id']}/ws"
        assert c.get("/v1/live").json() == {"sessions": 1, "limit": 1}
        headers, jpegs, end = [], [], None
        t0 = time.monotonic()
        with c.websocket_connect(WS + info["ws"]) as ws:
            for i in range(0, len(pcm), CHUNK):  # a microphone: 20 ms every 20 ms
                ws.send_bytes(pcm[i:i + CHUNK].tobytes())
                time.sleep(max(0.0, (i + CHUNK) / 16000 - (time.monotonic() - t0)))
            ws.send_text(json.dumps({"type": "end"}))
            while True:
                msg = ws.receive()
                if msg.get("bytes") is not None:
                    head, jpg = parse_frame_message(msg["bytes"])
                    headers.append(head)
                    jpegs.append(jpg)
                elif msg.get("text") is not None:
                    end = json.loads(msg["text"])
                    break
                else:
                    break
        assert end is not None and end["type"] == "end", end
        duration = len(pcm) / 16000
        n_total = round(duration * 12.5)
        idx = [h["index"] for h in headers]
        assert idx == sorted(set(idx)) and idx[-1] == n_total - 1
        assert len(idx) + end["skipped"] + end["held"] == n_total  # every frame sent, skipped (late) or held
        pts = np.array([h["pts"] for h in headers])
        sent = np.array([h["sent"] for h in headers])
        np.testing.assert_allclose(pts, np.array(idx) / 12.5, atol=1e-3)
        # never before its sound is in, and each frame sent a fixed delay behind it
        assert np.all(sent >= pts + info["delay_s"] - 1e-3)
        assert np.all(np.array([h["audio_s"] for h in headers]) >= np.minimum(pts + 0.26, duration) - 1e-3)
        # real JPEGs of the session's size
        import cv2

        img = cv2.imdecode(np.frombuffer(jpegs[len(jpegs) // 2], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (info["height"], info["width"], 3)
        assert max(h["open"] for h in headers) > 0.2  # it spoke
        # the client is gone: the slot is free and no frame thread is left
        deadline = time.monotonic() + 10
        while (c.get("/v1/live").json()["sessions"] or _live_threads() != before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/live").json()["sessions"] == 0
        assert _live_threads() == before


def test_client_going_away_mid_stream_ends_the_session(tmp_path, media):
    before = _live_threads()
    with _client(tmp_path / "home") as c:
        info = _open(c, media)
        with c.websocket_connect(WS + info["ws"]) as ws:
            for _ in range(40):
                ws.send_bytes(np.zeros(CHUNK, "<i2").tobytes())
                time.sleep(0.02)
            assert _live_threads() != before  # frames are being made
        deadline = time.monotonic() + 10
        while (_live_threads() != before or c.get("/v1/live").json()["sessions"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_threads() == before
        assert c.get("/v1/live").json()["sessions"] == 0
        # a used session cannot be joined again
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect(WS + info["ws"]) as ws:
                ws.receive()


def test_one_past_the_limit_gets_a_clear_message(tmp_path, media):
    with _client(tmp_path / "home", live_sessions=1) as c:
        first = _open(c, media)
        with open(media["photo"], "rb") as f:
            r = c.post("/v1/live", files={"face": ("me.png", f, "image/png")}, data={"size": "192"})
        assert r.status_code == 429
        assert "1 live session" in r.json()["detail"] and "--live-sessions" in r.json()["detail"]
        assert c.delete(f"/v1/live/{first['id']}").status_code == 204
        _open(c, media)  # the slot is free again
    with _client(tmp_path / "home2", live_sessions=0) as c:
        r = c.post("/v1/live", json={"face": str(media["photo"])})
        assert r.status_code == 429 and "off" in r.json()["detail"]


def test_bad_requests_are_one_line(tmp_path, media):
    with _client(tmp_path / "home") as c:
        r = c.post("/v1/live", json={})
        assert r.status_code == 422 and "face" in r.json()["detail"]
        r = c.post("/v1/live", json={"face": str(media["photo"]), "fps": 500})
        assert r.status_code == 422 and "fps" in r.json()["detail"]
        r = c.post("/v1/live", json={"face": str(media["audio"])})
        assert r.status_code == 422
        assert c.get("/v1/live").json()["sessions"] == 0  # failed requests hold no slot
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect(WS + "/v1/live/nope/ws") as ws:
                ws.receive()


def test_same_auth_rules_as_the_rest_api(tmp_path, media):
    token = "live-test-token"
    with _client(tmp_path / "home", token=token) as c:
        r = c.post("/v1/live", json={"face": str(media["photo"])})
        assert r.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        r = c.post("/v1/live", json={"face": str(media["photo"]), "size": 192}, headers=auth)
        assert r.status_code == 201, r.text
        ws_path = r.json()["ws"]
        with pytest.raises(WebSocketDisconnect):  # no token: refused before the socket opens
            with c.websocket_connect(WS + ws_path) as ws:
                ws.receive()
        with pytest.raises(WebSocketDisconnect):  # another site's page: refused
            with c.websocket_connect(WS + ws_path, headers={**auth, "Origin": "http://evil.example"}) as ws:
                ws.receive()
        with c.websocket_connect(WS + ws_path, headers=auth) as ws:
            ws.send_bytes(np.zeros(CHUNK * 10, "<i2").tobytes())
            ws.send_text(json.dumps({"type": "end"}))
            kinds = set()
            while True:
                msg = ws.receive()
                if msg.get("text") is not None:
                    kinds.add(json.loads(msg["text"])["type"])
                    break
                kinds.add("frame")
            assert "end" in kinds
