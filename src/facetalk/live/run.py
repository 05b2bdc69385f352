"""Run a live session from a file: the audio is fed in 20 ms chunks at real-time pace (as a
microphone would) or as fast as frames are made, and what a viewer would have seen is
recorded: every frame at its pts, a skipped or half-rate frame shown as the one before it
held, with the audio muxed in sync (the viewer hears the sound delay_s late, like the
picture). This is what `facetalk live`, bench/bench_live.py and the tests use."""

from __future__ import annotations

import threading
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


def pump_frames(session: LiveSession, on_frame: Callable[[LiveFrame], None], clock: Callable[[], float],
                stop: threading.Event | None = None, tick: Callable[[float], None] | None = None,
                idle_s: float = 0.005) -> None:
    """Make session's frames as they fall due and hand each to on_frame at its due time
    (pts + delay on clock, the session's seconds), `sent` set to that moment, in order,
    until the stream is done or stop is set. session.workers frames are drawn at once; a
    finished frame whose successor is already due is dropped (counted as skipped) rather
    than sent late. tick(now), if given, runs every turn (a file feeds its audio there);
    otherwise audio arrives through session.push from another thread."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(session.workers, thread_name_prefix="facetalk-live") as pool:
        try:
            while stop is None or not stop.is_set():
                if tick is not None:
                    tick(clock())
                while pending and pending[0].done():
                    if len(pending) > 1 and pending[1].done() and clock() >= pending[1].result().pts + session.delay:
                        pending.popleft()  # stale: the frame after it is due already
                        session.count_dropped()
                        continue
                    frame = pending[0].result()
                    now = clock()
                    if now < frame.pts + session.delay:
                        break
                    frame.sent = now
                    pending.popleft()
                    on_frame(frame)
                if session.done and not pending:
                    break
                if len(pending) < session.workers:
                    now = clock()
                    plan = session.plan(now, ahead=session.delay)
                    if plan is not None:
                        pending.append(pool.submit(session.draw, plan, now))
                        continue
                due = pending[0].result().pts + session.delay if pending and pending[0].done() else None
                pause = idle_s if due is None else min(idle_s, due - clock())
                if pause > 0:
                    time.sleep(pause)
        finally:
            for f in pending:
                f.cancel()


def feed_file(session: LiveSession, samples: np.ndarray, realtime: bool = True,
              on_frame: Callable[[LiveFrame], None] | None = None, clock: Callable[[], float] | None = None,
              should_stop: Callable[[], bool] | None = None) -> float:
    """Feed samples (16 kHz mono float32) to session and take its frames until the
    stream is done; returns wall seconds. realtime: 20 ms chunks at the pace of the sound
    and frames handed on at their due time (pump_frames; clock: seconds since the start,
    default a monotonic wall clock); otherwise every frame as soon as it is final, no
    pacing, session.workers drawn at once."""
    t0 = time.monotonic()
    clock = clock or (lambda: time.monotonic() - t0)
    on_frame = on_frame or (lambda f: None)
    n = len(samples)
    fed = [0]
    if realtime:
        stop = threading.Event()

        def tick(now: float) -> None:
            if should_stop is not None and should_stop():
                stop.set()
            want = min(n, int(now * SAMPLE_RATE) // CHUNK * CHUNK)
            if want > fed[0]:
                session.push(samples[fed[0]:want])
                fed[0] = want
            if fed[0] >= n and not session.mouth.ended:
                session.end()

        pump_frames(session, on_frame, clock, stop, tick)
        return time.monotonic() - t0
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(session.workers, thread_name_prefix="facetalk-live") as pool:
        while True:
            if should_stop is not None and should_stop():
                for f in pending:
                    f.cancel()
                break
            while pending and pending[0].done():
                on_frame(pending.popleft().result())
            if session.done and not pending:
                break
            if len(pending) < session.workers:
                plan = session.plan(None)
                if plan is not None:
                    pending.append(pool.submit(session.draw, plan, None))
                    continue
            if len(pending) >= session.workers:
                wait([pending[0]], return_when=FIRST_COMPLETED)
            elif fed[0] < n:
                session.push(samples[fed[0]:fed[0] + CHUNK])
                fed[0] += CHUNK
            elif not session.mouth.ended:
                session.end()
            elif pending:
                wait([pending[0]], return_when=FIRST_COMPLETED)
            else:  # pragma: no cover - a done stream with nothing pending leaves above
                break
    return time.monotonic() - t0


def _recording_metadata(session: LiveSession) -> dict[str, str]:
    """The container tags a render writes (finish.provenance), for a live recording."""
    from ..finish.provenance import provenance_metadata

    return provenance_metadata(renderer="warp (live)", identity=session.face.identity,
                               label=session.options.label_description())


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
                         metadata=_recording_metadata(session)) if output else None
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
