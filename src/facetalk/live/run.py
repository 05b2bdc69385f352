"""Run a live session from a file: the audio is fed in 20 ms chunks at real-time pace (as a
microphone would) or as fast as frames are made, and what a viewer would have seen is
recorded: every frame at its pts, a skipped or half-rate frame shown as the one before it
held, with the audio muxed in sync (the viewer hears the sound delay_s late, like the
picture). This is what `facetalk live`, bench/bench_live.py and the tests use."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media.audio import load_audio
from ..media.encode import VideoWriter, check_output_path
from ..types import SAMPLE_RATE
from .session import LiveFrame, LiveSession, LiveStats

CHUNK = SAMPLE_RATE // 50  # 20 ms, a typical microphone packet


@dataclass
class FrameLog:
    """Per sent frame (arrays kept small: a few numbers a frame)."""

    index: list[int] = field(default_factory=list)
    pts: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # session clock when ready (pts + delay + lateness)
    open: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)

    def add(self, f: LiveFrame) -> None:
        self.index.append(f.index)
        self.pts.append(f.pts)
        self.sent.append(np.nan if f.sent is None else f.sent)
        self.open.append(f.open)
        self.scale.append(f.scale)


@dataclass
class LiveResult:
    output: Path | None
    frames: int  # frames in the recording (sent + held + skipped)
    duration: float
    stats: LiveStats
    log: FrameLog
    wall_s: float


def feed_file(session: LiveSession, samples: np.ndarray, realtime: bool = True,
              on_frame: Callable[[LiveFrame], None] | None = None, clock: Callable[[], float] | None = None,
              should_stop: Callable[[], bool] | None = None) -> float:
    """Feed samples (16 kHz mono float32) to session and take its frames until the
    stream is done; returns wall seconds. realtime: chunks at the pace of the sound and
    each frame handed on at its due time, pts + delay (clock: seconds since the start,
    default a monotonic wall clock), its `sent` set to that moment; otherwise every frame
    as soon as it is final, no pacing. session.workers frames are drawn at once."""
    t0 = time.monotonic()
    clock = clock or (lambda: time.monotonic() - t0)
    pos = 0
    n = len(samples)
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(session.workers, thread_name_prefix="facetalk-live") as pool:
        while True:
            if should_stop is not None and should_stop():
                for f in pending:
                    f.cancel()
                break
            now = clock() if realtime else None
            if realtime:
                want = min(n, int(now * SAMPLE_RATE) // CHUNK * CHUNK)
                if want > pos:
                    session.push(samples[pos:want])
                    pos = want
                if pos >= n and not session.mouth.ended:
                    session.end()
            # hand on finished frames, in order, each at its due time
            while pending and pending[0].done():
                if realtime and len(pending) > 1 and pending[1].done() \
                        and clock() >= pending[1].result().pts + session.delay:
                    pending.popleft()  # stale: the frame after it is due already
                    session.stats.frames -= 1
                    session.stats.skipped += 1
                    continue
                frame = pending[0].result()
                if realtime:
                    now = clock()
                    if now < frame.pts + session.delay:
                        break
                    frame.sent = now
                pending.popleft()
                if on_frame is not None:
                    on_frame(frame)
            if session.done and not pending:
                break
            if len(pending) < session.workers:
                plan = session.plan(now, ahead=session.delay)
                if plan is not None:
                    pending.append(pool.submit(session.draw, plan, now))
                    continue
            if realtime:
                due = pending[0].result().pts + session.delay if pending and pending[0].done() else None
                nxt = min(x for x in ((pos + CHUNK) / SAMPLE_RATE if pos < n else None, due) if x is not None) \
                    if (pos < n or due is not None) else clock() + 0.005
                pause = nxt - clock()
                if pause > 0:
                    time.sleep(min(pause, 0.005))
            elif len(pending) >= session.workers or (pending and pos >= n and session.mouth.ended):
                wait([pending[0]], return_when=FIRST_COMPLETED)
            elif pos < n:
                session.push(samples[pos:pos + CHUNK])
                pos += CHUNK
            elif not session.mouth.ended:
                session.end()
            elif pending:
                wait([pending[0]], return_when=FIRST_COMPLETED)
            else:  # pragma: no cover - a done stream with nothing pending leaves above
                break
    return time.monotonic() - t0


def run_file(session: LiveSession, audio_path: str | Path, output: str | Path | None = None,
             realtime: bool = True, crf: int = 20, on_frame: Callable[[LiveFrame], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> LiveResult:
    """Stream audio_path through session; record what a viewer would have seen to output
    (an MP4, written to a temporary name and renamed) when given."""
    if output is not None:
        output = check_output_path(output)
    audio = load_audio(audio_path)
    log = FrameLog()
    w, h = session.face.size
    writer = VideoWriter(output, w, h, session.fps, audio_path=audio_path, crf=crf,
                         metadata={"comment": "facetalk live recording (AI-generated)"}) if output else None
    state = {"last": None, "written": 0}

    def take(frame: LiveFrame) -> None:
        log.add(frame)
        if writer is not None:
            while state["written"] < frame.index:  # skipped or half-rate frames: the viewer kept the last one
                writer.write(state["last"] if state["last"] is not None else frame.image)
                state["written"] += 1
            writer.write(frame.image)
            state["written"] += 1
        state["last"] = frame.image
        if on_frame is not None:
            on_frame(frame)

    if writer is not None:
        with writer:
            wall = feed_file(session, audio.samples, realtime, take, should_stop=should_stop)
            total = session.total_frames or state["written"]
            while state["written"] < total and state["last"] is not None:
                writer.write(state["last"])
                state["written"] += 1
    else:
        wall = feed_file(session, audio.samples, realtime, take, should_stop=should_stop)
    frames = session.total_frames or (log.index[-1] + 1 if log.index else 0)
    return LiveResult(output=Path(output) if output else None, frames=frames, duration=frames / session.fps,
                      stats=session.stats, log=log, wall_s=wall)
