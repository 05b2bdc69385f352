"""Shared fixtures: test media beside the repo, speech made on the spot, loaded face models."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session", autouse=True)
def _facetalk_home(tmp_path_factory):
    """The whole session renders with its own FACETALK_HOME (job store, logs, identities),
    never the user's; a test or module that needs a clean one sets its own over it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACETALK_HOME", str(tmp_path_factory.mktemp("facetalk-home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def media() -> Path:
    """../shared/media: real faces, speech and talking clips (see its MANIFEST.md)."""
    if not (MEDIA / "MANIFEST.md").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"test media missing: {MEDIA} (CI must have ../shared beside the checkout)")
        pytest.skip(f"test media not found at {MEDIA}")
    return MEDIA


@pytest.fixture(scope="session")
def face_models():
    from facetalk.face.models import FaceModels

    return FaceModels()


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Speech with known words, synthesised by espeak-ng (22.05 kHz mono WAV)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (scripts/setup installs it)")
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


def write_wav(path: Path, samples: np.ndarray, sr: int) -> Path:
    import soundfile

    soundfile.write(str(path), samples.astype(np.float32), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def speech_with_pause(tmp_path_factory) -> dict:
    """Two spoken sentences with one second of silence between them.

    Returns the wav path, the transcript, and the silent interval (seconds).
    """
    d = tmp_path_factory.mktemp("speech")
    first = "Mom made a big apple pie for the whole family."
    second = "We ate it all before lunch today."
    a, sr = read_wav(espeak(first, d / "a.wav"))
    b, _ = read_wav(espeak(second, d / "b.wav"))
    lead = np.zeros(int(0.4 * sr), np.float32)
    gap = np.zeros(int(1.0 * sr), np.float32)
    rng = np.random.default_rng(0)
    samples = np.concatenate([lead, a, gap, b, lead])
    samples = samples + rng.normal(0, 1e-4, samples.shape).astype(np.float32)  # no exact digital silence
    path = write_wav(d / "speech.wav", samples, sr)
    silence = ((len(lead) + len(a)) / sr, (len(lead) + len(a) + len(gap)) / sr)
    return {"path": path, "transcript": f"{first} {second}", "silence": silence, "sr": sr, "samples": samples}


def decode_video(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, fps


def stream_durations(path: Path) -> dict:
    """Durations (seconds) of the video and audio streams, read back from the file."""
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        vdur = float(v.duration * v.time_base) if v.duration else None
        adur = float(a.duration * a.time_base) if a.duration else None
        meta = dict(c.metadata)
        fps = float(v.average_rate)
    return {"video": vdur, "audio": adur, "fps": fps, "metadata": meta}


@pytest.fixture(scope="module")
def monkeypatch_module():
    """monkeypatch for module-scoped fixtures (an environment a whole test module shares)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def photo_landmarks(models, img: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks of the largest face of an RGB photo of any size: found on a copy
    at most 1000 px on its long side (dlib's detector is slow on big photos), the points
    placed on the full-size photo."""
    import cv2

    from facetalk.face.detect import FaceBox, detect_faces, find_landmarks

    scale = min(1.0, 1000 / max(img.shape[:2]))
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    b = detect_faces(models, small)[0]
    box = FaceBox(int(b.x0 / scale), int(b.y0 / scale), int(b.x1 / scale), int(b.y1 / scale), b.score)
    return find_landmarks(models, img, box)
