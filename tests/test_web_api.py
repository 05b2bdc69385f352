"""The REST API of `facetalk serve` through FastAPI's test client, over a real job store,
a real worker and real renders; safety (auth, host, cross-site, upload limits, names never
used as paths, no URL fetched unless allowed, nothing leaving the machine)."""

from __future__ import annotations

import base64
import http.server
import importlib.util
import io
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
if importlib.util.find_spec("gradio") is None:  # not imported here: the app imports it, analytics off
    pytest.skip("the web extra is not installed: pip install 'facetalk[web]'", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from facetalk.face.detect import detect_landmarks  # noqa: E402
from facetalk.jobs.store import JobStore  # noqa: E402
from facetalk.web import ServerConfig, create_app  # noqa: E402
from facetalk.web.config import ConfigError  # noqa: E402
from facetalk.web.service import Service  # noqa: E402

from .finish_fixtures import write_onnx  # noqa: E402
from .identity_fixtures import write_version  # noqa: E402
from .web_fixtures import (  # noqa: E402
    audio_seconds,
    blank_photo,
    face_photo,
    speech,
    tiny_video,
    video_duration,
    worker_thread,
)

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("web-media")
    return {"photo": face_photo(d / "astronaut.png"), "audio": speech(d / "hello.wav"), "blank": blank_photo(d / "blank.png"),
            "video": tiny_video(d / "noise.mp4"), "dir": d}


def _client(home: Path, studio: bool = False, **kw) -> TestClient:
    return TestClient(create_app(ServerConfig(home=home, **kw), studio=studio), base_url=BASE)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def client(home):
    with _client(home) as c:
        yield c


@pytest.fixture(scope="module")
def rendering(tmp_path_factory):
    """A server with a real worker, shared by the tests that render."""
    home = tmp_path_factory.mktemp("web-render-home")
    with worker_thread(home), _client(home) as c:
        yield c, home


def _upload(media, face="photo", face_name="portrait.png", **fields):
    files = {"audio": ("my speech.wav", media["audio"].read_bytes(), "audio/wav")}
    if face:
        files["face"] = (face_name, media[face].read_bytes(), "application/octet-stream")
    return {"files": files, "data": fields}


def _events(client, job_id: str) -> list[tuple[str, dict]]:
    out = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if event == "end":
                    break
    return out


# -- rendering through the API -------------------------------------------------------------

def test_upload_render_follow_download(rendering, media):
    client, home = rendering
    r = client.post("/v1/jobs", **_upload(media, seed="3", crf="30"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued" and job["name"] == "portrait"
    # the uploads were stored under server-chosen names, shown by the user's names
    face, audio = Path(job["request"]["face"]), job["request"]["audio"]
    assert face.name == "portrait.png" and audio == "my speech.wav"
    stored = JobStore.at_home(home).get(job["id"]).request
    assert Path(stored["face"]).name == "face.png" and Path(stored["audio"]).name == "audio.wav"
    assert Path(stored["face"]).parent.parent == home / "uploads"

    events = _events(client, job["id"])
    kinds = [e for e, _ in events]
    assert kinds[-1] == "end" and "progress" in kinds
    fractions = [d["progress"] for e, d in events if e == "progress" and d["state"] == "running"]
    assert fractions, events
    final = events[-1][1]
    assert final["state"] == "succeeded", final
    assert final["progress"] == 1.0 and final["outputs"][0].endswith("-portrait.mp4")

    r = client.get(f"/v1/jobs/{job['id']}/output")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    out = media["dir"] / "out.mp4"
    out.write_bytes(r.content)
    assert abs(video_duration(out) - audio_seconds(media["audio"])) < 0.08
    side = client.get(f"/v1/jobs/{job['id']}/output", params={"file": "sidecar"})
    assert side.status_code == 200 and side.json()["job"] == job["id"]
    log = client.get(f"/v1/jobs/{job['id']}/log")
    assert log.status_code == 200 and "execution finished" in log.text and str(home / "uploads") not in log.text

    listed = client.get("/v1/jobs").json()
    assert listed["jobs"][0]["id"] == job["id"] and listed["counts"]["succeeded"] >= 1


def test_json_paths_and_zip_of_a_selection(rendering, media):
    client, home = rendering
    ids = []
    for name in ("one", "two"):
        r = client.post("/v1/jobs", json={"face": str(media["photo"]), "audio": str(media["audio"]), "name": name,
                                          "still": True, "crf": 30, "batch": "pair"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    store = JobStore.at_home(home)
    for i in ids:
        assert store.wait(i, timeout=120).state == "succeeded"
    assert [j["id"] for j in client.get("/v1/jobs", params={"batch": "pair"}).json()["jobs"]] == ids[::-1]
    r = client.get("/v1/outputs/zip", params={"job": ids})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = sorted(z.namelist())
    assert names == sorted(f"{i}-{n}{ext}" for i, n in zip(ids, ("one", "two")) for ext in (".mp4", ".json"))
    assert not list((home / "web" / "zips").glob("*.zip"))  # removed once sent
    # only succeeded jobs' outputs; unknown ids are 404
    assert client.get("/v1/outputs/zip", params={"job": "20000101-000000-abcdef"}).status_code == 404
    assert client.get("/v1/outputs/zip").status_code == 422


def test_text_instead_of_audio(rendering, media):
    """With text-to-speech in this facetalk, text renders like audio; without, it is refused clearly."""
    from facetalk.web.service import TTS_MISSING, tts_available

    client, home = rendering
    body = {"face": str(media["photo"]), "text": "Hello from the text box.", "voice": "en-us", "still": True}
    r = client.post("/v1/jobs", json=body)
    if not tts_available():
        assert r.status_code == 422 and r.json()["detail"] == TTS_MISSING
        return
    assert r.status_code == 201, r.text
    job = JobStore.at_home(home).wait(r.json()["id"], timeout=120)
    assert job.state == "succeeded", job.error
    assert job.metrics["duration"] > 0.5
    r = client.post("/v1/jobs", json={**body, "audio": str(media["audio"])})
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    r = client.post("/v1/jobs", json={**body, "voice": "no-such-voice"})
    assert r.status_code == 422 and "no-such-voice" in r.json()["detail"]


def test_delete_removes_the_job_and_its_uploads(rendering, media):
    client, home = rendering
    job = client.post("/v1/jobs", **_upload(media, still="true")).json()
    folder = Path(JobStore.at_home(home).get(job["id"]).request["face"]).parent
    assert JobStore.at_home(home).wait(job["id"], timeout=120).state == "succeeded"
    video = home / "outputs"
    r = client.delete(f"/v1/jobs/{job['id']}", params={"outputs": "true"})
    assert r.status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not folder.exists()
    assert not list(video.rglob(f"{job['id']}*"))


# -- states and errors without a worker ------------------------------------------------------

def test_cancel_delete_and_state_conflicts(client, media, home):
    job = client.post("/v1/jobs", json={"face": str(media["photo"]), "audio": str(media["audio"])}).json()
    assert client.get(f"/v1/jobs/{job['id']}/output").status_code == 409
    store = JobStore.at_home(home)
    store.claim("someone-else")  # running elsewhere
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    events = _events(client, job["id"])
    assert events[-1][0] == "end" and events[-1][1]["state"] == "cancelled"
    assert client.post(f"/v1/jobs/{job['id']}/retry").json()["state"] == "queued"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    for path in ("/v1/jobs/nope", "/v1/jobs/20000101-000000-abcdef/events", "/v1/jobs/x/log"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["detail"].startswith("no job")


@pytest.mark.parametrize("case, status, words", [
    ("txt", 422, "unsupported format '.txt' for --face: use jpg, png, webp, mp4, mov, mkv or webm (notes.txt)"),
    ("txt-as-png", 422, "notes.png is not a JPEG, PNG or WebP image"),
    ("no-face", 422, "no face found in blank.png; use a photo with one clear, frontal face"),
    ("empty", 422, "portrait.png is empty (0 bytes)"),
    ("no-audio", 422, "give the speech"),
    ("bad-option", 422, "fps"),
    ("unknown-option", 422, "output: is not an option of a render"),
    ("bad-size", 422, "--size '9x9' is out of range"),
    ("bad-renderer", 422, "unknown renderer 'magic'"),
    ("unknown-identity", 422, "unknown identity 'nobody'"),
])
def test_bad_uploads_give_one_clear_line(client, media, home, case, status, words):
    files = {"audio": ("a.wav", media["audio"].read_bytes())}
    data: dict = {}
    if case == "txt":
        files["face"] = ("notes.txt", b"hello")
    elif case == "txt-as-png":
        files["face"] = ("notes.png", b"just some text, not an image\n" * 10)
    elif case == "no-face":
        files["face"] = ("blank.png", media["blank"].read_bytes())
    elif case == "empty":
        files["face"] = ("portrait.png", b"")
    elif case == "no-audio":
        files = {"face": ("p.png", media["photo"].read_bytes())}
    else:
        files["face"] = ("p.png", media["photo"].read_bytes())
        data = {"bad-option": {"fps": "500"}, "unknown-option": {"output": "/etc/x.mp4"}, "bad-size": {"size": "9x9"},
                "bad-renderer": {"renderer": "magic"}, "unknown-identity": {"identity": "nobody"}}[case]
    r = client.post("/v1/jobs", files=files, data=data)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail
    assert "\n" not in detail
    assert str(home / "uploads") not in detail  # the file as the user named it, never the server's path
    assert not [p for p in (home / "uploads").glob("*")] if (home / "uploads").exists() else True
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_uploaded_names_are_never_paths(client, media, home, tmp_path):
    evil = "../../../" + str(tmp_path / "owned.png")
    r = client.post("/v1/jobs", files={"face": (evil, media["photo"].read_bytes()),
                                        "audio": ("..\\..\\x.wav", media["audio"].read_bytes())})
    assert r.status_code == 201, r.text
    stored = JobStore.at_home(home).get(r.json()["id"]).request
    assert Path(stored["face"]).name == "face.png" and Path(stored["audio"]).name == "audio.wav"
    assert Path(stored["face"]).parent.parent == home / "uploads"
    assert not (tmp_path / "owned.png").exists()
    assert r.json()["name"] == "owned"


def test_upload_limit_is_enforced_while_streaming(home, media):
    with _client(home, max_upload_bytes=1024 * 1024) as c:
        big = b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024)
        r = c.post("/v1/jobs", files={"face": ("big.png", big), "audio": ("a.wav", media["audio"].read_bytes())})
        assert r.status_code == 413
        assert "upload too large" in r.json()["detail"] and "--max-upload-mb" in r.json()["detail"]

        def body():  # no Content-Length: the limit is found while reading
            yield b"--b\r\nContent-Disposition: form-data; name=\"face\"; filename=\"big.png\"\r\n\r\n"
            for _ in range(40):
                yield bytes(64 * 1024)
            yield b"\r\n--b--\r\n"

        r = c.post("/v1/jobs", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
    assert not list((home / "uploads").glob("*"))


def test_urls_are_fetched_only_when_allowed(home, media, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "face.png").write_bytes(media["photo"].read_bytes())
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/face.png"
    try:
        with _client(home) as c:
            r = c.post("/v1/jobs", json={"face": url, "audio": str(media["audio"])})
            assert r.status_code == 422 and "does not fetch URLs" in r.json()["detail"]
        with _client(home, allow_urls=True) as c:
            r = c.post("/v1/jobs", json={"face": url, "audio": str(media["audio"])})
            assert r.status_code == 201, r.text
            stored = JobStore.at_home(home).get(r.json()["id"]).request
            assert Path(stored["face"]).read_bytes() == media["photo"].read_bytes()
            r = c.post("/v1/jobs", json={"face": url.replace("face.png", "missing.png"), "audio": str(media["audio"])})
            assert r.status_code == 422 and "answered 404" in r.json()["detail"]
    finally:
        httpd.shutdown()


def test_only_a_jobs_own_outputs_are_served(client, home, media, tmp_path):
    """A job's recorded outputs are served only when they are its video and sidecar: a
    store that lists another file (tampered, or a bug) gives 404, in zips too."""
    store = JobStore.at_home(home)
    job = client.post("/v1/jobs", json={"face": str(media["photo"]), "audio": str(media["audio"])}).json()
    claimed = store.claim("w")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    assert store.succeed(claimed.id, "w", [str(secret), "/etc/passwd"], {})
    assert client.get(f"/v1/jobs/{job['id']}/output").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/output", params={"file": "sidecar"}).status_code == 404
    assert client.get("/v1/outputs/zip", params={"job": job["id"]}).status_code == 404


def test_outputs_written_elsewhere_are_previewed_from_a_copy(home, media, tmp_path):
    """`facetalk render -o` writes anywhere: the studio plays a link of it under web/preview."""
    from facetalk.web.service import Service
    from facetalk.web.studio import preview_path

    service = Service(ServerConfig(home=home))
    video = tmp_path / "mine.mp4"
    video.write_bytes(tiny_video(tmp_path / "src.mp4").read_bytes())
    job = service.store.submit({"face": str(media["photo"]), "audio": str(media["audio"]), "output": str(video)})
    service.store.claim("w")
    service.store.succeed(job.id, "w", [str(video)], {})
    preview = preview_path(service, service.job(job.id))
    assert preview == home / "web" / "preview" / f"{job.id}.mp4" and preview.read_bytes() == video.read_bytes()
    service.delete(job.id)
    assert not preview.exists() and video.exists()  # the preview goes with the job, the user's file stays


# -- identities ----------------------------------------------------------------------------

def test_identities_list_show_promote_remove(client, home):
    from facetalk.identity.registry import Registry

    reg = Registry(home)
    write_version(reg, "ana", seed=1)
    write_version(reg, "ana", seed=2)
    listed = client.get("/v1/identities").json()["identities"]
    assert [(i["name"], i["latest"], [v["ref"] for v in i["versions"]]) for i in listed] == [("ana", 1, ["ana@v1", "ana@v2"])]
    v1 = listed[0]["versions"][0]
    assert v1["latest"] and v1["consent"] == "recorded with consent" and v1["frames_used"] == 5
    thumb = client.get(v1["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert client.get("/v1/identities/ana").json()["ref"] == "ana@v1"
    assert client.delete("/v1/identities/ana@v1").status_code == 409  # the latest, while v2 exists
    assert client.post("/v1/identities/ana@v2/promote").json()["latest"] is True
    assert client.delete("/v1/identities/ana@v1").status_code == 204
    assert [v["ref"] for v in client.get("/v1/identities").json()["identities"][0]["versions"]] == ["ana@v2"]
    assert client.get("/v1/identities/bob").status_code == 404
    assert client.delete("/v1/identities/ana", params={"all": "true"}).status_code == 204
    assert client.get("/v1/identities").json()["identities"] == []


def test_identity_from_uploaded_footage_runs_in_the_background(home, media):
    from facetalk.identity.learn import CreateResult

    seen = {}

    def learn(spec, ctx):
        seen["footage"] = [p.read_bytes() == media["video"].read_bytes() for p in spec.footage]
        seen["consent"] = spec.consent
        for k in range(5):
            ctx.report("identity", k / 4, f"step {k}")
            time.sleep(0.05)
        from facetalk.identity.registry import Registry

        ref = write_version(Registry(home), spec.name)
        return CreateResult(ref, 1, 10, 5, {"no_face": 5}, 0.3, (0.1, 0.05), [])

    service = Service(ServerConfig(home=home), learn=learn)
    with TestClient(create_app(ServerConfig(home=home), service=service, studio=False), base_url=BASE) as c:
        files = [("footage", ("my talk.mp4", media["video"].read_bytes()))]
        r = c.post("/v1/identities", files=files, data={"name": "ana"})
        assert r.status_code == 422 and "consent is required" in r.json()["detail"]
        r = c.post("/v1/identities", files=files, data={"name": "Bad Name", "consent": "yes"})
        assert r.status_code == 422 and "bad identity name" in r.json()["detail"]
        r = c.post("/v1/identities", files=[("footage", ("talk.png", b"x"))], data={"name": "ana", "consent": "yes"})
        assert r.status_code == 422 and "for --footage: use mp4, mov, mkv or webm" in r.json()["detail"]
        r = c.post("/v1/identities", files=files, data={"name": "ana", "consent": "Ana, for her course"})
        assert r.status_code == 202, r.text
        task = r.json()
        assert r.headers["location"] == f"/v1/identity-tasks/{task['id']}"
        service.tasks.join(30)
        done = c.get(f"/v1/identity-tasks/{task['id']}").json()
        assert done["state"] == "succeeded" and done["ref"] == "ana@v1" and done["progress"] == 1.0
        assert seen == {"footage": [True], "consent": "Ana, for her course"}
        assert [t["id"] for t in c.get("/v1/identity-tasks").json()] == [task["id"]]
        assert c.get("/v1/identities").json()["identities"][0]["name"] == "ana"
        assert not list((home / "uploads").glob("*"))  # the footage is not kept


def test_identity_task_failure_names_the_users_file(client, home, media):
    r = client.post("/v1/identities", files=[("footage", ("holiday clip.mp4", media["video"].read_bytes()))],
                    data={"name": "ana", "consent": "mine"})
    assert r.status_code == 202, r.text
    service = client.app.state.service
    service.tasks.join(120)
    task = client.get(f"/v1/identity-tasks/{r.json()['id']}").json()
    assert task["state"] == "failed"
    assert "holiday clip.mp4" in task["error"] and str(home) not in task["error"]


def test_interrupted_identity_task_shows_as_failed(home):
    folder = home / "identity-tasks"
    folder.mkdir(parents=True)
    (folder / "20260101-000000-abcdef.json").write_text(json.dumps(
        {"id": "20260101-000000-abcdef", "name": "ana", "state": "running", "stage": "identity", "progress": 0.4,
         "ref": None, "error": None, "server": "gone"}))
    with _client(home) as c:
        task = c.get("/v1/identity-tasks/20260101-000000-abcdef").json()
    assert task["state"] == "failed" and "interrupted" in task["error"]


# -- safety ------------------------------------------------------------------------------------

def test_token_protects_api_and_studio(home):
    with _client(home, studio=True, token="s3cret-token") as c:
        assert c.get("/v1/health").status_code == 200  # open, tells nothing
        r = c.get("/v1/jobs")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/v1/jobs", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/v1/jobs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        for path in ("/studio/config", "/studio/gradio_api/info", "/studio/theme.css"):
            assert c.get(path).status_code == 401, path
        r = c.get("/studio/", headers={"accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        page = c.get(r.headers["location"])
        assert page.status_code == 200 and "Access token" in page.text
        r = c.post("/login", data={"token": "nope", "next": "/studio/"}, follow_redirects=False)
        assert r.status_code == 401 and "not this server" in r.text
        r = c.post("/login", data={"token": "s3cret-token", "next": "https://evil.example/"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"  # never an open redirect
        assert "s3cret-token" not in r.headers["set-cookie"]
        assert c.get("/studio/config").status_code == 200  # the login cookie
        assert c.get("/v1/jobs").status_code == 200
        c.get("/logout", follow_redirects=False)
        c.cookies.clear()
        assert c.get("/studio/config").status_code == 401


def test_basic_auth_protects_api_and_studio(home):
    with _client(home, studio=True, auth=("ana", "pa:ss")) as c:
        r = c.get("/v1/jobs")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.get("/studio/config").status_code == 401
        good = "Basic " + base64.b64encode(b"ana:pa:ss").decode()
        bad = "Basic " + base64.b64encode(b"ana:nope").decode()
        assert c.get("/v1/jobs", headers={"Authorization": bad}).status_code == 401
        assert c.get("/v1/jobs", headers={"Authorization": good}).status_code == 200
        assert c.get("/studio/config", headers={"Authorization": good}).status_code == 200


def test_host_and_cross_site_checks(client, media):
    r = client.get("/v1/jobs", headers={"host": "evil.example:7860"})
    assert r.status_code == 400 and "answers only to" in r.json()["detail"]
    r = client.post("/v1/jobs", json={"face": str(media["photo"]), "audio": str(media["audio"])},
                    headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = client.post("/v1/jobs", json={"face": str(media["photo"]), "audio": str(media["audio"])},
                    headers={"origin": BASE})
    assert r.status_code == 201


def test_unsafe_configurations_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0 without --token or --auth"):
        ServerConfig(home=tmp_path, host="0.0.0.0").check()
    with pytest.raises(ConfigError, match="not both"):
        ServerConfig(home=tmp_path, token="long-enough", auth=("a", "b")).check()
    ServerConfig(home=tmp_path, host="0.0.0.0", token="long-enough").check()
    ServerConfig(home=tmp_path, host="127.0.0.2").check()
    ServerConfig(home=tmp_path, host="::1").check()


@pytest.mark.parametrize("args, words", [
    (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without --token or --auth"),
    (["--host", "192.168.1.5", "--auth", "nopassword"], "--auth must be USER:PASSWORD"),
    (["--token", "short"], "--token must be at least 8 characters"),
])
def test_serve_refuses_unsafe_options_in_one_line(capsys, tmp_path, args, words):
    from facetalk.cli import main

    assert main(["serve", "--home", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facetalk: error: ") and words in err and "\n" not in err


def test_serve_refuses_a_port_in_use(capsys, tmp_path):
    from facetalk.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--home", str(tmp_path), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


NO_NETWORK_PROBE = r"""
import socket, sys, time
attempts = []
real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
def loopback(host):
    return host is None or str(host) in ("localhost", "::1", "testserver") or str(host).startswith("127.")
def connect(self, address):
    if self.family != socket.AF_UNIX and not loopback(address[0] if isinstance(address, tuple) else address):
        attempts.append(address)
        raise OSError("blocked by the test")
    return real_connect(self, address)
def getaddrinfo(host, *a, **kw):
    if not loopback(host):
        attempts.append(host)
    return real_getaddrinfo(host, *a, **kw)
socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo

from fastapi.testclient import TestClient
from facetalk.web import ServerConfig, create_app
with TestClient(create_app(ServerConfig(home=sys.argv[1])), base_url="http://127.0.0.1") as c:
    assert c.get("/studio/").status_code == 200
    assert c.get("/studio/config").status_code == 200
    assert c.post("/v1/jobs", json={"face": sys.argv[2], "audio": sys.argv[3]}).status_code == 201
    assert c.get("/v1/jobs").status_code == 200
    time.sleep(1.0)  # background threads get their chance
print("ATTEMPTS", attempts)
"""


def test_nothing_leaves_the_machine(home, media):
    """Importing gradio, building the app with the studio and using it, in a fresh process,
    opens no connection (and looks up no name) off loopback."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_"))}
    r = subprocess.run([sys.executable, "-c", NO_NETWORK_PROBE, str(home), str(media["photo"]), str(media["audio"])],
                       capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ATTEMPTS []" in r.stdout, r.stdout + r.stderr[-2000:]


def test_openapi_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in [("/v1/jobs", "post"), ("/v1/jobs", "get"), ("/v1/jobs/{job_id}", "get"),
                         ("/v1/jobs/{job_id}/output", "get"), ("/v1/jobs/{job_id}", "delete"),
                         ("/v1/jobs/{job_id}/cancel", "post"), ("/v1/identities", "get"), ("/v1/identities", "post"),
                         ("/v1/health", "get"), ("/v1/jobs/{job_id}/events", "get"), ("/v1/outputs/zip", "get")]:
        assert method in paths[path], (path, method)
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}


# -- a face-restoration model (--enhancer) over the web -------------------------------------

def test_enhancer_upload_runs_on_the_face(rendering, media, face_models, tmp_path):
    """An uploaded .onnx model is kept under uploads/, named in the job's request, run by the
    worker on the face (a model that inverts colours: plain to see) and named in the MP4's
    tags; deleting the job removes the upload."""
    import av

    from .conftest import decode_video

    client, home = rendering
    model = write_onnx(tmp_path / "invert.onnx", op="Neg")
    common = {"still": "true", "crf": "0", "label": "false"}
    up = _upload(media, **common)
    up["files"]["enhancer"] = ("my restorer.onnx", model.read_bytes(), "application/octet-stream")
    r = client.post("/v1/jobs", **up)
    assert r.status_code == 201, r.text
    assert r.json()["request"]["enhancer"] == "my restorer.onnx"  # the user's name, not the server's path
    restored_id = r.json()["id"]
    plain_id = client.post("/v1/jobs", **_upload(media, **common)).json()["id"]
    store = JobStore.at_home(home)
    stored = store.get(restored_id).request["enhancer"]
    assert Path(stored).name == "enhancer.onnx" and Path(stored).parent.parent == home / "uploads"
    assert Path(stored).read_bytes() == model.read_bytes()
    assert "enhancer" not in store.get(plain_id).request
    for job_id in (restored_id, plain_id):
        assert store.wait(job_id, timeout=180).state == "succeeded", store.get(job_id).error

    videos = {}
    for job_id in (restored_id, plain_id):
        path = tmp_path / f"{job_id}.mp4"
        path.write_bytes(client.get(f"/v1/jobs/{job_id}/output").content)
        with av.open(str(path)) as c:
            videos[job_id] = (dict(c.metadata), decode_video(path)[0])
    side = client.get(f"/v1/jobs/{restored_id}/output", params={"file": "sidecar"}).json()
    assert side["request"]["enhancer"] == stored
    tags, got = videos[restored_id]
    assert tags["finish"] == "enhancer enhancer.onnx" and tags["ai_generated"] == "true", tags
    plain_tags, plain = videos[plain_id]
    assert plain_tags["finish"] == "none"
    assert len(got) == len(plain) > 10
    lm = detect_landmarks(face_models, plain[3])
    nose = (slice(int(lm[28, 1]), int(lm[30, 1])), slice(int(lm[31, 0]), int(lm[35, 0])))
    inverted = np.abs(got[3][nose].astype(np.float32) - (255 - plain[3][nose].astype(np.float32))).mean()
    assert inverted < 8, f"the model ran on the face: {inverted:.1f} from the inverted nose"
    assert np.array_equal(got[3][:, :20], plain[3][:, :20]), "far from the face nothing changes"

    assert client.delete(f"/v1/jobs/{restored_id}").status_code == 204
    assert not Path(stored).parent.exists(), "the uploaded model goes with its job"


def test_enhancer_by_server_path_and_refusals(client, media, home, tmp_path):
    """A model by absolute path on the server is stored as that path; a relative path or a
    URL is refused (never fetched, even with --allow-urls); nothing is queued then."""
    model = write_onnx(tmp_path / "restore.onnx", shape=(1, 3, "h", "w"))  # dynamic size: facetalk's 512
    body = {"face": str(media["photo"]), "audio": str(media["audio"])}
    r = client.post("/v1/jobs", json={**body, "enhancer": str(model)})
    assert r.status_code == 201, r.text
    assert JobStore.at_home(home).get(r.json()["id"]).request["enhancer"] == str(model)
    for value, words in [("restore.onnx", "--enhancer restore.onnx: give an absolute path on the server"),
                         ("https://example.com/gfpgan.onnx",
                          "enhancer gfpgan.onnx: upload the .onnx model, or give an absolute path on the server"),
                         (str(tmp_path / "none.onnx"), f"--enhancer file {tmp_path / 'none.onnx'} does not exist"),
                         (str(media["photo"]), "(its name must end in .onnx)")]:
        r = client.post("/v1/jobs", json={**body, "enhancer": value})
        assert r.status_code == 422 and words in r.json()["detail"], (value, r.text)
    with _client(home, allow_urls=True) as c:
        r = c.post("/v1/jobs", files={"face": ("p.png", media["photo"].read_bytes()),
                                      "audio": ("a.wav", media["audio"].read_bytes())},
                   data={"enhancer": "http://127.0.0.1:9/gfpgan.onnx"})
        assert r.status_code == 422 and "upload the .onnx model" in r.json()["detail"], r.text
    assert len(client.get("/v1/jobs").json()["jobs"]) == 1
    assert not list((home / "uploads").glob("*"))


@pytest.mark.parametrize("make, name, words", [
    (lambda d: write_onnx(d / "m.onnx", shape=(1, 1, 512, 512)).read_bytes(), "grey model.onnx",
     "--enhancer grey model.onnx: its input 'x' has shape [1, 1, 512, 512], not a batch of RGB images"),
    (lambda d: write_onnx(d / "m.onnx", shape=(1, 3, 512, 256)).read_bytes(), "wide model.onnx",
     "--enhancer wide model.onnx: its input 'x' has shape [1, 3, 512, 256]: the face crop must be square"),
    (lambda d: b"not a model\n" * 100, "junk.onnx", "--enhancer junk.onnx cannot be loaded by onnxruntime"),
    (lambda d: write_onnx(d / "m.onnx").read_bytes(), "gfpgan.pth",
     "unsupported format '.pth' for --enhancer: use onnx (gfpgan.pth)"),
], ids=["grey", "wide", "junk", "not-onnx"])
def test_bad_enhancer_upload_is_refused_by_its_name(client, media, home, tmp_path, make, name, words):
    r = client.post("/v1/jobs", files={"face": ("p.png", media["photo"].read_bytes()),
                                        "audio": ("a.wav", media["audio"].read_bytes()),
                                        "enhancer": (name, make(tmp_path))})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and str(home) not in detail, detail
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert not list((home / "uploads").glob("*")), "the refused upload is not kept"
