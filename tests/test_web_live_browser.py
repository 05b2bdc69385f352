"""The live page in a real browser: `facetalk serve` as a subprocess, Debian's chromium with a
fake microphone that plays speech with pauses (--use-file-for-fake-audio-capture). Choose a
photo, Start: the face that comes back over the WebSocket is captured from the page's canvas
while the microphone speaks; landmarks re-detected on those captures show the mouth open
while the sound is loud and shut in the pauses. The studio's Live tab holds the page.
Screenshots go to tests/artifacts/web/."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from .test_web_browser import CHROMIUM, Server, _shot, playwright_api  # noqa: F401 - skips without the web extra
from .web_fixtures import face_photo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve-live"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, speech_with_pause):
    import os
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (scripts/setup installs the chromium package)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("chromium-home"))
    try:
        with playwright_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech_with_pause['path']}",
                "--disable-features=WebRtcHideLocalIpsWithMdns"])  # plain host addresses in ICE (no mDNS)
            yield b
            b.close()
    finally:
        if old_home is not None:
            os.environ["HOME"] = old_home


def _decode(url: str) -> np.ndarray:
    import cv2

    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_live_page_mouth_follows_the_fake_microphone(browser, server, tmp_path):
    from facetalk.face import geometry
    from facetalk.face.detect import detect_landmarks
    from facetalk.face.models import FaceModels

    photo = face_photo(tmp_path / "astronaut.png", long_side=256)
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.goto(server.url + "/live/", wait_until="load")
    page.locator("#live-face").set_input_files(str(photo))
    page.select_option("#live-size", "256")
    page.locator("#live-start").click()
    page.wait_for_function("window.liveLog.frames.length > 0", timeout=60_000)

    captures = []
    t_end = time.monotonic() + 10.0  # the fake microphone loops its file (~6 s with its pauses)
    while time.monotonic() < t_end:
        captures.append(page.evaluate(
            "() => ({img: document.getElementById('live-view').toDataURL('image/png'), shown: window.liveLog.shown})"))
        time.sleep(0.12)
    _shot(page, "live-01-speaking")
    page.locator("#live-stop").click()
    page.wait_for_function("window.liveLog.ended !== null", timeout=30_000)
    levels = np.array(page.evaluate("window.liveLog.levels"))
    frames = page.evaluate("window.liveLog.frames")
    _shot(page, "live-02-ended")
    assert "Ended" in page.locator("#status").inner_text()

    # timestamps: in order, each sent delay_s or more after its sound
    idx = [f["index"] for f in frames]
    assert idx == sorted(set(idx))
    assert all(f["sent"] >= f["pts"] + 0.3 for f in frames)

    models = FaceModels()
    loud = levels[:, 1].max()
    assert loud > 0.01, "the fake microphone sent no sound"
    speaking, pause, seen = [], [], set()
    for c in captures:
        shown = c["shown"]
        if shown is None or shown["index"] in seen:
            continue
        seen.add(shown["index"])
        t = shown["pts"]
        near = levels[np.abs(levels[:, 0] + 0.032 - t) < 0.07, 1]  # chunks of 64 ms, centred
        around = levels[np.abs(levels[:, 0] + 0.032 - t) < 0.35, 1]
        if not len(near) or not len(around):
            continue
        lm = detect_landmarks(models, _decode(c["img"]))
        if lm is None:
            continue
        opening = float(geometry.mouth_openness(lm))
        if near.max() > 0.3 * loud:
            speaking.append(opening)
        elif around.max() < 0.05 * loud:
            pause.append(opening)
    assert len(speaking) >= 5 and len(pause) >= 3, (len(speaking), len(pause))
    rest = float(geometry.mouth_openness(detect_landmarks(models, _decode(
        "x," + base64.b64encode(photo.read_bytes()).decode()))))
    assert np.max(pause) < min(rest, 0.08) + 0.03, f"mouth open in a pause: {pause}"
    assert np.percentile(speaking, 75) > np.median(pause) + 0.06, (speaking, pause)


def test_studio_has_the_live_tab(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server.url + "/studio/", wait_until="load")
    page.get_by_role("tab", name="Live").click()
    frame = page.frame_locator("#live-frame")
    frame.locator("#live-start").wait_for(timeout=30_000)
    _shot(page, "live-03-studio-tab")


def test_live_page_over_webrtc(browser, server, tmp_path):
    """The same page with WebRTC: the face comes back as a video track (with the sound);
    frames grabbed from the <video> while the fake microphone speaks show the mouth open,
    and shut in its pauses (paired with the microphone's level delay_s earlier)."""
    from facetalk.face import geometry
    from facetalk.face.detect import detect_landmarks
    from facetalk.face.models import FaceModels

    photo = face_photo(tmp_path / "astronaut.png", long_side=256)
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.goto(server.url + "/live/", wait_until="load")
    page.locator("#live-face").set_input_files(str(photo))
    page.select_option("#live-size", "256")
    page.select_option("#live-transport", "rtc")
    page.locator("#live-start").click()
    page.wait_for_function("(() => { const v = document.getElementById('live-video'); "
                           "return v.readyState >= 2 && v.videoWidth > 0; })()", timeout=60_000)
    grab = """() => { const v = document.getElementById('live-video'); const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight; c.getContext('2d').drawImage(v, 0, 0);
        return {img: c.toDataURL('image/png'), t: (performance.now() - window.liveLog.rtcStart) / 1000}; }"""
    captures = []
    t_end = time.monotonic() + 10.0
    while time.monotonic() < t_end:
        captures.append(page.evaluate(grab))
        time.sleep(0.12)
    _shot(page, "live-04-webrtc")
    levels = np.array(page.evaluate("window.liveLog.levels"))
    page.locator("#live-stop").click()
    page.wait_for_function("window.liveLog.ended !== null", timeout=30_000)

    models = FaceModels()
    loud = levels[:, 1].max()
    assert loud > 0.01, "the fake microphone sent no sound"
    shots = []
    for c in captures:
        lm = detect_landmarks(models, _decode(c["img"]))
        if lm is not None:
            shots.append((c["t"], float(geometry.mouth_openness(lm))))
    assert len(shots) > 0.8 * len(captures), "the face must stay detectable"

    def split(lag: float) -> tuple[list, list]:
        speaking, pause = [], []
        for t_shot, opening in shots:
            t = t_shot - lag  # when the sound this picture shows was heard
            near = levels[(levels[:, 0] > t - 0.1) & (levels[:, 0] < t + 0.1), 1]
            around = levels[np.abs(levels[:, 0] - t) < 0.4, 1]
            if len(near) and near.max() > 0.3 * loud:
                speaking.append(opening)
            elif len(around) and around.max() < 0.05 * loud:
                pause.append(opening)
        return speaking, pause

    # the picture runs delay_s plus the network's and the browser's jitter buffers behind the
    # microphone; that total is not known to the page, so it is found: the lag at which the
    # re-detected mouth best separates loud moments from pauses (a mouth that does not follow
    # the sound separates them at no lag)
    best = None
    for lag in np.arange(0.3, 1.01, 0.1):
        speaking, pause = split(lag)
        if len(speaking) >= 5 and len(pause) >= 3:
            gap = float(np.percentile(speaking, 75) - np.median(pause))
            if best is None or gap > best[0]:
                best = (gap, lag, speaking, pause)
    assert best is not None, "too few loud and quiet moments captured"
    print(f"webrtc: picture {best[1]:.1f} s behind the microphone, mouth gap {best[0]:.3f}")
    assert best[0] > 0.05, best
    # the server's session ends when the page closes the connection
    deadline = time.monotonic() + 15
    import json
    import urllib.request

    while time.monotonic() < deadline:
        with urllib.request.urlopen(server.url + "/v1/live", timeout=5) as r:
            if json.loads(r.read())["sessions"] == 0:
                break
        time.sleep(0.2)
    with urllib.request.urlopen(server.url + "/v1/live", timeout=5) as r:
        assert json.loads(r.read())["sessions"] == 0
