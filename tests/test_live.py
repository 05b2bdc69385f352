"""Live (facetalk.live): the streaming mouth equals the whole-file model, closes in pauses,
keeps constant memory; the pacer steps down and up; a late clock skips frames instead of
queueing them; `facetalk live` records a video whose re-detected mouth opens with the
speech and closes in the pause, with regular timestamps, each frame sent no earlier than
its fixed delay."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from facetalk.face import geometry
from facetalk.face.detect import detect_landmarks
from facetalk.face.models import FaceModels
from facetalk.lips.features import log_mel
from facetalk.lips.model import lip_model
from facetalk.live import LEVELS, LiveOptions, LiveSession, Pacer, prepare_face
from facetalk.live.audio import LiveMouth
from facetalk.live.idle import IdleStream
from facetalk.media.audio import load_audio
from facetalk.types import MOUTH_PARAMS

from .cli_helpers import assert_one_line_error, run_cli
from .conftest import decode_video, stream_durations
from .web_fixtures import face_photo

FPS = 25.0


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return face_photo(tmp_path_factory.mktemp("live") / "astronaut.png", long_side=256)


@pytest.fixture(scope="module")
def face(photo):
    return prepare_face(str(photo), size=256)


def _chunks(samples: np.ndarray, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < len(samples):
        n = int(rng.integers(1, 1200))
        yield samples[pos:pos + n]
        pos += n


def test_streamed_mouth_is_the_whole_file_model(speech_with_pause):
    """Any chunking gives the lip model's whole-file predictions, row for row."""
    samples = load_audio(speech_with_pause["path"]).samples
    model = lip_model()
    mouth = LiveMouth(model, gate=False)
    parts = []
    for chunk in _chunks(samples):
        mouth.push(chunk)
        parts.append(mouth.rows()[1])
    mouth.end()
    parts.append(mouth.rows()[1])
    live = np.concatenate(parts)
    whole = model.predict(log_mel(samples))
    assert live.shape == whole.shape
    np.testing.assert_allclose(live, whole, atol=2e-3)


def test_streamed_mouth_closes_in_the_pause_and_opens_in_speech(speech_with_pause):
    samples = load_audio(speech_with_pause["path"]).samples
    mouth = LiveMouth(lip_model())
    starts, parts = [], []
    for chunk in _chunks(samples, seed=1):
        mouth.push(chunk)
        s, rows = mouth.rows()
        starts.append(s)
        parts.append(rows)
    mouth.end()
    parts.append(mouth.rows()[1])
    opening = np.concatenate(parts)[:, 0]
    a, b = speech_with_pause["silence"]
    pause = opening[int((a + 0.3) * 100):int((b - 0.3) * 100)]
    speech = opening[int(0.6 * 100):int((a - 0.1) * 100)]
    assert np.abs(pause).max() < 0.02, "the mouth must be shut in the pause"
    assert np.percentile(speech, 90) > 0.3, "the mouth must open while speaking"
    # rows come out in order, no gap, no repeat
    assert all(s2 >= s1 for s1, s2 in zip(starts, starts[1:]))


def test_rows_become_final_a_fixed_time_behind_the_audio():
    mouth = LiveMouth(lip_model())
    rng = np.random.default_rng(3)
    given = 0
    for _ in range(50):
        mouth.push(rng.normal(0, 0.05, 800).astype(np.float32))
        mouth.rows()
        given += 800
        final = mouth._out_row  # rows < this are final
        cut = (given - 280) // 160 + 1  # rows whose 25 ms window the audio covers
        assert final == max(0, cut - mouth.delay_rows)  # the look-ahead behind them, never more


def test_session_memory_stays_flat(face):
    """A minute of sound through a session (frames planned, as a stream does; drawing is
    per frame and keeps nothing): what it keeps does not grow with the length."""
    session = LiveSession(face, LiveOptions(fps=FPS))
    rng = np.random.default_rng(0)
    sizes = []
    for i in range(60 * 50):  # 60 s in 20 ms chunks
        session.push(rng.normal(0, 0.05 if (i // 100) % 2 else 0.0005, 320).astype(np.float32))
        while session.plan(None) is not None:
            pass
        if i % 500 == 499:
            sizes.append((len(session._rows), len(session.mouth._pred), len(session.mouth._voiced),
                          len(session.mouth._buf), len(session.idle._events)))
    assert session._next == pytest.approx(60 * FPS, abs=12)
    rows = [(r, p, v, e) for r, p, v, _, e in sizes]
    assert max(max(s) for s in rows) < 100, sizes  # rows and blinks: a fraction of a second's worth
    assert max(s[3] for s in sizes) < 400 + 320, sizes  # samples: under one window plus one chunk


def test_pacer_steps_down_when_slow_and_back_up_when_there_is_room():
    p = Pacer(FPS)
    interval = 1 / FPS
    t = 0.0
    for _ in range(12):
        p.observe(t, 1.2 * interval, 0)
        t += interval
    assert p.level == 1
    p.observe(t, 0.5 * interval, skipped=3)  # right after a step: frames planned before it, no new step
    assert p.level == 1
    t += 1.1
    p.observe(t, 0.5 * interval, skipped=3)  # a skip once settled steps down at once
    assert p.level == 2
    for _ in range(int(6 * FPS)):
        t += interval
        p.observe(t, 0.05 * interval, 0)
    assert p.level < 2
    q = Pacer(FPS, adapt=False)
    for _ in range(30):
        q.observe(0.0, 5 * interval, 2)
    assert q.level == 0
    assert LEVELS[-1][1] == 2  # the last step halves the rate


def test_a_late_clock_skips_to_the_newest_due_frame_never_queues(face):
    session = LiveSession(face, LiveOptions(fps=FPS, delay_s=0.32, adapt=False))
    rng = np.random.default_rng(0)
    session.push(rng.normal(0, 0.05, 16000 * 3).astype(np.float32))  # 3 s of sound at once
    assert session.plan(0.1) is None  # frame 0 is not due before 0.32 s
    first = session.plan(0.33)
    assert first.index == 0 and first.skipped == 0
    late = session.plan(2.0)  # a stall: frames 1..41 are past due
    assert late.index == int((2.0 - 0.32) * FPS) and late.skipped == late.index - 1
    frame = session.draw(late, 2.0)
    assert frame.image.shape == (*face.image.shape[:2], 3)
    assert frame.sent >= frame.pts + session.delay
    # a frame is never handed out before its mouth is final: the audio stops at 3 s
    nxt = session.plan(100.0)
    assert nxt is None or nxt.pts <= 3.0 - 0.26


def test_idle_stream_blinks_and_breathes_without_end():
    idle = IdleStream(seed=4, fps=FPS)
    times = np.arange(0, 120, 1 / FPS)
    blinks = np.array([idle.blink(t) for t in times])
    heads = np.array([idle.head(t) for t in times])
    closed = np.flatnonzero(np.diff((blinks > 0.5).astype(int)) == 1)
    assert 15 <= len(closed) <= 70, "about 17 blinks a minute"
    assert blinks.max() > 0.9
    assert np.ptp(heads[:, 3]) > 0.002 and np.abs(np.diff(heads[:, 0])).max() < 0.01  # breathing; smooth sway
    still = IdleStream(seed=4, fps=FPS, still=True)
    assert still.blink(3.0) == 0.0 and list(still.head(3.0)) == [0, 0, 0, 1]


def _mouth_openness(path) -> np.ndarray:
    frames, _ = decode_video(path)
    models = FaceModels()
    out = []
    for rgb in frames:
        lm = detect_landmarks(models, rgb)
        out.append(np.nan if lm is None else float(geometry.mouth_openness(lm)))
    return np.array(out)


def test_live_cli_records_a_mouth_that_opens_with_speech_and_shuts_in_the_pause(tmp_path, capsys, photo, face,
                                                                                 speech_with_pause):
    out, report = tmp_path / "live.mp4", tmp_path / "live.json"
    code, _, err = run_cli(capsys, "live", "--face", photo, "--audio", speech_with_pause["path"], "-o", out,
                           "--size", 256, "--fast", "--report", report)
    assert code == 0, err
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))
    info = stream_durations(out)
    duration = len(load_audio(speech_with_pause["path"]).samples) / 16000
    rep = json.loads(report.read_text())
    assert rep["frames"] == round(duration * FPS)
    assert info["audio"] == pytest.approx(duration, abs=0.1) and info["video"] == pytest.approx(duration, abs=0.05)
    # fast: every frame drawn, in order, pts exactly k / fps
    log = rep["log"]
    assert log["index"] == list(range(rep["frames"])) and rep["skipped"] == 0 and rep["held"] == 0
    assert set(log["scale"]) == {1.0} and rep["levels"] == []  # nothing is late without a clock: full size
    np.testing.assert_allclose(np.diff(log["pts"]), 1 / FPS, atol=1e-3)

    openness = _mouth_openness(out)
    assert np.isfinite(openness).mean() > 0.95, "the face must stay detectable"
    a, b = speech_with_pause["silence"]
    t = np.arange(len(openness)) / FPS
    pause = openness[(t > a + 0.35) & (t < b - 0.35)]
    speech = openness[(t > 0.6) & (t < a - 0.1)]
    # the photo smiles with teeth (dlib puts the inner lips on the teeth): in the pause the
    # mouth is as closed as the photo's or more, never opened (test_render_e2e's rule)
    rest = geometry.mouth_openness(detect_landmarks(FaceModels(), face.image))
    assert np.nanmax(pause) < min(rest, 0.08) + 0.03, f"mouth open in the pause: {np.nanmax(pause):.3f}"
    assert np.nanpercentile(speech, 80) > np.nanmedian(pause) + 0.08, "mouth must open while speaking"
    drawn = np.array(log["open"])
    assert drawn[(t > a + 0.35) & (t < b - 0.35)].max() < 0.02


def test_live_cli_real_time_sends_each_frame_at_its_fixed_delay(tmp_path, capsys, photo, speech_with_pause):
    """At real-time pace: no frame before pts + delay; the recording has every frame index
    (skipped ones held) and its timestamps step by 1 / fps. Speed is the bench's business."""
    out, report = tmp_path / "rt.mp4", tmp_path / "rt.json"
    code, _, err = run_cli(capsys, "live", "--face", photo, "--audio", speech_with_pause["path"], "-o", out,
                           "--size", 192, "--fps", 12.5, "--report", report)
    assert code == 0, err
    rep = json.loads(report.read_text())
    log = rep["log"]
    sent, pts = np.array(log["sent"]), np.array(log["pts"])
    assert np.all(sent >= pts + 0.32 - 1e-3), "a frame was sent before its mouth was final"
    assert np.all(np.diff(log["index"]) >= 1) and np.all(np.diff(sent) >= -1e-6)
    np.testing.assert_allclose(pts, np.array(log["index"]) / 12.5, atol=1e-6)
    assert rep["sent"] + rep["skipped"] + rep["held"] == rep["frames"]
    frames, fps = decode_video(out)
    assert len(frames) == rep["frames"] and fps == pytest.approx(12.5)


@pytest.mark.parametrize("args, words", [
    (("--face", "missing.png"), ("--face", "no such file")),
    (("--fps", "0"), ("--fps", "out of range")),
    (("--size", "50"), ("--size", "out of range")),
    (("--delay", "0.1"), ("--delay", "0.28")),
])
def test_live_cli_bad_input_is_one_line(tmp_path, capsys, photo, speech_with_pause, args, words):
    base = {"--face": str(photo)}
    extra = list(args)
    if "--face" not in extra:
        extra = ["--face", base["--face"], *extra]
    code, _, err = run_cli(capsys, "live", "--audio", speech_with_pause["path"], "-o", tmp_path / "x.mp4", *extra)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "x.mp4").exists()


def test_live_cli_no_face(tmp_path, capsys, speech_with_pause):
    from .web_fixtures import blank_photo

    code, _, err = run_cli(capsys, "live", "--face", blank_photo(tmp_path / "blank.png"), "--audio",
                           speech_with_pause["path"], "-o", tmp_path / "x.mp4")
    assert_one_line_error(code, err, "no face")


def test_an_identitys_own_amplitude_scales_the_live_mouth(face, speech_with_pause):
    """A person measured to open twice as far (LiveFace.amplitude, read off an identity's
    footage as a render reads it) opens the live mouth twice as far for the same sound."""
    samples = load_audio(speech_with_pause["path"]).samples
    opened = {}
    for amp in (0.25, 0.5):
        person = dataclasses.replace(face, amplitude=(amp, 0.2, 0.2), _levels={})
        session = LiveSession(person, LiveOptions(fps=FPS))
        session.push(samples)
        session.end()
        plans = iter(lambda: session.plan(None), None)
        opened[amp] = np.array([p.mouth[MOUTH_PARAMS.index("open")] for p in plans])
    assert len(opened[0.25]) == len(opened[0.5]) > 50
    speaking = opened[0.25] > 0.02
    assert speaking.sum() > 10
    np.testing.assert_allclose(opened[0.5][speaking], 2 * opened[0.25][speaking], rtol=0.02, atol=2e-3)


def test_live_recording_shows_the_label_and_says_what_made_it(tmp_path, capsys, photo, speech_with_pause):
    """Like a render: the visible AI-generated label on every frame (only its corner box
    changes), --no-label leaves it off, and the MP4's tags say which."""
    import av

    from facetalk.finish.label import Label
    from facetalk.finish.options import DEFAULT_LABEL_TEXT

    got = {}
    for flag in ("--label", "--no-label"):
        out = tmp_path / f"{flag}.mp4"
        code, _, err = run_cli(capsys, "live", "--face", photo, "--audio", speech_with_pause["path"], "-o", out,
                               "--size", 256, "--fast", "--still", flag)
        assert code == 0, err
        with av.open(str(out)) as c:
            tags = dict(c.metadata)
        got[flag] = (decode_video(out)[0], tags)
    (labelled, tags), (bare, bare_tags) = got["--label"], got["--no-label"]
    h, w = labelled[0].shape[:2]
    x0, y0, x1, y1 = Label(DEFAULT_LABEL_TEXT, w, h).box
    for a, b in zip(labelled[::10], bare[::10]):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
        assert diff[y0:y1, x0:x1].mean() > 15  # the label is there
        assert diff[: y0 - 16].mean() < 2  # and the picture above it is the same
    assert tags["ai_generated"] == "true" and "AI-generated" in tags["label"] and tags["renderer"] == "warp (live)"
    assert bare_tags["ai_generated"] == "true" and bare_tags["label"] == "none"
