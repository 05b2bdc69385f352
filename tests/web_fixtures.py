"""Media and helpers for the web tests: a small photo with a face, a short spoken phrase,
a photo with no face, a tiny video, a worker thread, a free loopback port."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import espeak

PHRASE = "Hello from the studio."


def face_photo(path: Path, long_side: int = 200) -> Path:
    import skimage.data

    im = Image.fromarray(np.asarray(skimage.data.astronaut()))
    im.thumbnail((long_side, long_side))
    im.save(path)
    return path


def blank_photo(path: Path) -> Path:
    """A photo with no face: a smooth gradient."""
    y, x = np.mgrid[0:160, 0:200]
    rgb = np.stack([x * 255 // 200, y * 255 // 160, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def speech(path: Path, text: str = PHRASE) -> Path:
    return espeak(text, path)


def audio_seconds(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def tiny_video(path: Path, frames: int = 10, size: int = 64) -> Path:
    """A few frames of noise (no face), H.264."""
    from facetalk.media.encode import VideoWriter

    rng = np.random.default_rng(0)
    with VideoWriter(path, size, size, 25.0) as w:
        for _ in range(frames):
            w.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return path


def video_duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.duration) / 1e6


@contextmanager
def worker_thread(home: Path):
    """A real job worker (facetalk.jobs.worker.Worker) running in this process."""
    from facetalk.jobs.worker import Worker

    worker = Worker(home, poll_s=0.1, name="test-web-worker")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
