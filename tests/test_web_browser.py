"""The studio in a real browser: `facetalk serve` as a subprocess on a free loopback port,
Debian's chromium driven by Playwright (its own browser download is never used).

Upload a photo and speech, render, watch progress reach 100%, play the result (its length
is the audio's, within a frame), download the zip; a bad upload shows its error in the
page; a server with --token asks for it. Screenshots go to tests/artifacts/web/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

if importlib.util.find_spec("gradio") is None:  # not imported here: the app imports it, analytics off
    pytest.skip("the web extra is not installed: pip install 'facetalk[web]'", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

from .web_fixtures import audio_seconds, blank_photo, face_photo, free_port, speech  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
FPS = 25.0
TOKEN = "browser-test-token"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


class Server:
    def __init__(self, root: Path, *args: str) -> None:
        self.port = free_port()
        self.home = root / "home"
        env = {**os.environ, "FACETALK_HOME": str(self.home), "HOME": str(root / "user"),
               "GRADIO_TEMP_DIR": str(root / "gradio")}
        env.pop("FACETALK_TOKEN", None)
        env.pop("FACETALK_AUTH", None)
        self.log = open(root / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "facetalk", "serve", "--port", str(self.port),
                                      "--workers", "1", *args], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("facetalk serve did not start:\n" + (root / "serve.log").read_text())
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (scripts/setup installs the chromium package)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("chromium-home"))  # chromium writes under ~/.config
    try:
        with playwright_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
            yield b
            b.close()
    finally:
        if old_home is not None:
            os.environ["HOME"] = old_home


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("browser-media")
    text_png = d / "notes.png"
    text_png.write_text("these are meeting notes, not a photo\n" * 20)
    return {"photo": face_photo(d / "astronaut.png"), "audio": speech(d / "hello.wav"), "text_png": text_png,
            "blank": blank_photo(d / "blank.png"), "dir": d}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


def _open_studio(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.goto(url + "/", wait_until="load")
    page.wait_for_selector("#render-button", timeout=30_000)
    return page


def _wait_uploaded(page, selector: str, path: Path) -> None:
    """Until the file component shows the file (its name and size: the upload is done)."""
    page.locator(selector, has_text=path.stem).filter(has_text=re.compile(r"\d\s*[KMG]?B")).wait_for(timeout=30_000)


def test_upload_render_play_and_download(browser, server, media):
    page = _open_studio(browser, server.url)
    _shot(page, "01-studio")
    page.locator("#face-file input[type=file]").set_input_files(str(media["photo"]))
    page.locator("#audio-file input[type=file]").set_input_files(str(media["audio"]))
    _wait_uploaded(page, "#face-file", media["photo"])
    _wait_uploaded(page, "#audio-file", media["audio"])
    page.locator("#render-button").click()

    # live progress, to 100%
    page.wait_for_selector("#create-progress [data-state]", timeout=30_000)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = page.get_attribute("#create-progress [data-state]", "data-state")
        seen.add(state)
        if state in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    text = page.inner_text("#create-progress")
    _shot(page, "02-rendered")
    assert state == "succeeded", text
    assert "100%" in text and page.get_attribute("#create-progress [data-state]", "data-progress") == "100"
    assert seen & {"queued", "running"}, seen  # it was followed while it ran

    # the result plays in the page, as long as the audio
    page.wait_for_function("() => { const v = document.querySelector('#result-video video');"
                           " return v && v.readyState >= 1 && v.duration > 0 }", timeout=30_000)
    duration = page.evaluate("document.querySelector('#result-video video').duration")
    assert abs(duration - audio_seconds(media["audio"])) <= 1.0 / FPS + 1e-3, duration
    page.evaluate("() => { const v = document.querySelector('#result-video video'); v.muted = true; return v.play() }")
    page.wait_for_function("document.querySelector('#result-video video').currentTime > 0.2", timeout=15_000)
    _shot(page, "03-playing")

    # the zip of the job: its video and sidecar, nothing else
    with page.expect_download() as info:
        page.get_by_text("Download both as a zip").click()
    zpath = media["dir"] / "result.zip"
    info.value.save_as(zpath)
    with zipfile.ZipFile(zpath) as z:
        names = sorted(z.namelist())
    assert len(names) == 2 and names[0].endswith("-astronaut.json") and names[1].endswith("-astronaut.mp4"), names
    job_id = names[1][: -len("-astronaut.mp4")]

    # the jobs tab shows it after a reload (the store, not the page, holds it)
    page.reload(wait_until="load")
    page.get_by_role("tab", name="Jobs").click()
    cell = page.locator("#jobs-table").get_by_text(job_id).filter(visible=True).first
    cell.wait_for(timeout=15_000)
    cell.click()
    page.wait_for_selector("#job-details [data-state=succeeded]", timeout=15_000)
    page.wait_for_function("() => { const v = document.querySelector('#job-video video'); return v && v.duration > 0 }",
                           timeout=15_000)
    assert "execution finished" in page.input_value("#job-log textarea")
    page.locator("#zip-pick input").click()
    page.get_by_role("option", name=job_id).click()
    page.wait_for_selector("#zip-link", timeout=10_000)
    _shot(page, "04-jobs")
    with page.expect_download() as info:
        page.locator("#zip-link").click()
    info.value.save_as(zpath)
    with zipfile.ZipFile(zpath) as z:
        assert sorted(z.namelist()) == names
    page.close()


@pytest.mark.parametrize("case, words", [
    ("text_png", "notes.png is not a JPEG, PNG or WebP image"),
    ("blank", "no face found in blank.png; use a photo with one clear, frontal face"),
])
def test_bad_upload_shows_the_error(browser, server, media, case, words):
    page = _open_studio(browser, server.url)
    page.locator("#face-file input[type=file]").set_input_files(str(media[case]))
    page.locator("#audio-file input[type=file]").set_input_files(str(media["audio"]))
    _wait_uploaded(page, "#face-file", media[case])
    _wait_uploaded(page, "#audio-file", media["audio"])
    page.locator("#render-button").click()
    page.wait_for_selector("#create-status .ft-error", timeout=30_000)
    message = page.inner_text("#create-status")
    _shot(page, f"05-bad-upload-{case}")
    assert words in message
    assert str(server.home) not in message
    page.close()


def test_token_server_asks_for_the_token(browser, tmp_path_factory, media):
    """A server with --token (and a 1 MB upload limit): the studio asks for the token; an
    upload over the limit is refused in the page."""
    s = Server(tmp_path_factory.mktemp("serve-token"), "--token", TOKEN, "--max-upload-mb", "1")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(s.url + "/", wait_until="load")
        assert "/login" in page.url
        page.fill("#token", "wrong-token")
        page.click("button[type=submit]")
        page.wait_for_selector(".error")
        _shot(page, "06-login-refused")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#render-button", timeout=30_000)
        assert "/studio" in page.url
        _shot(page, "07-after-login")
        big = media["dir"] / "big.png"
        big.write_bytes(media["photo"].read_bytes() + bytes(2 * 1024 * 1024))
        page.locator("#face-file input[type=file]").set_input_files(str(big))
        page.get_by_text("exceed the maximum allowed size of 1.0 Mb").first.wait_for(timeout=15_000)
        _shot(page, "08-too-large")
        page.close()
    finally:
        s.stop()


def _visible_count(page, selector: str, text: str) -> int:
    return page.locator(selector).get_by_text(text, exact=True).filter(visible=True).count()


def _wait_count(page, selector: str, text: str, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while _visible_count(page, selector, text) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: fewer than {n} '{text}':\n{page.inner_text(selector)}")
        time.sleep(0.3)


def test_batch_manifest_and_identities(browser, server, media):
    from facetalk.identity.registry import Registry

    from .identity_fixtures import write_version
    from .web_fixtures import tiny_video

    write_version(Registry(server.home), "ana", seed=1)
    second = media["dir"] / "second.png"
    second.write_bytes(media["photo"].read_bytes())
    page = _open_studio(browser, server.url)

    # one audio for two photos, then a manifest with a good and a bad row
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-audio input[type=file]").set_input_files(str(media["audio"]))
    page.locator("#batch-faces input[type=file]").set_input_files([str(media["photo"]), str(second)])
    _wait_uploaded(page, "#batch-audio", media["audio"])
    _wait_uploaded(page, "#batch-faces", second)
    page.locator("#batch-button").click()
    page.wait_for_selector("#batch-status .ft-ok", timeout=30_000)
    assert "queued 2 jobs" in page.inner_text("#batch-status")
    _wait_count(page, "#batch-table", "succeeded", 2)
    _shot(page, "09-batch")

    manifest = media["dir"] / "rows.jsonl"
    manifest.write_text(json.dumps({"face": str(media["photo"]), "audio": str(media["audio"]), "name": "from-manifest",
                                    "still": True}) + "\n"
                        + json.dumps({"face": "/nowhere/x.png", "audio": str(media["audio"]), "name": "broken"}) + "\n")
    page.get_by_text("…or a manifest").click()
    page.locator("#manifest-file input[type=file]").set_input_files(str(manifest))
    _wait_uploaded(page, "#manifest-file", manifest)
    page.locator("#manifest-button").click()
    page.wait_for_selector("#batch-status >> text=1 refused", timeout=30_000)
    _wait_count(page, "#batch-table", "succeeded", 1)
    assert _visible_count(page, "#batch-table", "failed") == 1
    assert "/nowhere/x.png" in page.inner_text("#batch-table")
    _shot(page, "10-manifest")

    # identities: the list, a version's photo and stats; learning from footage with no face fails clearly
    page.reload(wait_until="load")
    page.get_by_role("tab", name="Identities").click()
    page.locator("#identities-table").get_by_text("ana@v1").filter(visible=True).first.wait_for(timeout=15_000)
    page.locator("#identity-version input").click()
    page.get_by_role("option", name="ana@v1").click()
    page.wait_for_selector("#identity-thumb img", timeout=15_000)
    assert "recorded with consent" in page.inner_text("#identity-info")
    page.fill("#learn-name textarea, #learn-name input", "bob")
    page.fill("#learn-consent textarea, #learn-consent input", "Bob, for the test suite")
    video = tiny_video(media["dir"] / "holiday.mp4")
    page.locator("#learn-files input[type=file]").set_input_files(str(video))
    _wait_uploaded(page, "#learn-files", video)
    page.locator("#learn-button").click()
    page.wait_for_selector("#learn-status .ft-ok", timeout=30_000)
    _wait_count(page, "#tasks-table", "failed", 1, timeout=60)
    assert "holiday.mp4" in page.inner_text("#tasks-table")
    _shot(page, "11-identities")
    page.close()


def test_finishing_controls_reach_the_video(browser, server, media):
    """The Create tab's Finishing section: a .cube upload (red and blue swapped), an .onnx
    face-restoration model, enhance and the label's text end up in the rendered MP4's
    provenance tags and in its pixels."""
    import av
    import numpy as np

    from .conftest import decode_video
    from .finish_fixtures import write_cube, write_onnx

    cube = write_cube(media["dir"] / "swap.cube")
    model = write_onnx(media["dir"] / "restore.onnx")  # Identity: the face comes back as it went in
    page = _open_studio(browser, server.url)
    page.locator("#face-file input[type=file]").set_input_files(str(media["photo"]))
    page.locator("#audio-file input[type=file]").set_input_files(str(media["audio"]))
    page.get_by_text("Finishing").click()
    page.locator("#lut-file input[type=file]").set_input_files(str(cube))
    page.locator("#enhancer-file input[type=file]").set_input_files(str(model))
    _wait_uploaded(page, "#face-file", media["photo"])
    _wait_uploaded(page, "#audio-file", media["audio"])
    _wait_uploaded(page, "#lut-file", cube)
    _wait_uploaded(page, "#enhancer-file", model)
    page.locator("#enhance input[type=checkbox]").check()
    page.get_by_label("Label text").fill("Synthetic presenter")
    _shot(page, "05-finishing")
    page.locator("#render-button").click()
    page.wait_for_selector("#create-progress [data-state=succeeded]", timeout=180_000)
    _shot(page, "06-finished")

    (video,) = [p for p in (server.home / "outputs").rglob("*.mp4")
                if json.loads(p.with_suffix(".json").read_text())["request"].get("lut")]
    with av.open(str(video)) as c:
        tags = dict(c.metadata)
    assert tags["ai_generated"] == "true" and "Synthetic presenter" in tags["label"], tags
    assert "lut " in tags["finish"] and "enhance;" in tags["finish"] and "enhancer " in tags["finish"], tags
    # the grade reached the pixels: the frame's mean colour is the photo's with red and blue swapped
    from PIL import Image

    frames, _ = decode_video(video)
    photo = np.asarray(Image.open(media["photo"]).convert("RGB"), dtype=np.float64)
    assert frames[0].shape == photo.shape
    graded, original = frames[0].reshape(-1, 3).mean(0), photo.reshape(-1, 3).mean(0)
    assert np.allclose(graded, original[[2, 1, 0]], atol=4), (graded, original)
    assert not np.allclose(graded, original, atol=4)  # a swap that shows (the photo is not grey)
