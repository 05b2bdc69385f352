"""A live session: speech in as it arrives, frames of the talking face out, each a fixed
time behind the sound it shows.

    session = LiveSession(prepare_face("portrait.jpg"), LiveOptions(fps=25))
    session.push(samples)                 # 16 kHz mono float32, any chunk size, any thread
    frame = session.next_frame(clock)     # None until the next frame is due (and final)
    ...
    session.end()                         # the speech is over; the last frames follow

Frame k shows the instant k / fps of the audio (its `pts`). Its mouth is final once the
audio reaches pts + LiveMouth's look-ahead (0.24 s, plus 17.5 ms of analysis window), so
with `clock` the seconds of audio received (or wall seconds since the start: the same in
real time) a frame is due at pts + delay_s and never later: the delay is fixed.

When rendering cannot keep up (Pacer), frames are skipped rather than queued (the stream
jumps to the newest due frame, the viewer sees the last one held), and the session steps
down: a smaller render scale (upscaled to the live size), then half the frame rate; it
steps back up when there is room again. Nothing waits in a queue, so the delay never grows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..composite import paste
from ..errors import InputError
from ..finish.label import Label
from ..finish.options import DEFAULT_LABEL_TEXT
from ..lips.model import LipModel, lip_model
from ..motion.learned import gains
from ..types import ANALYSIS_RATE, MOUTH_PARAMS, SAMPLE_RATE
from .audio import LiveMouth
from .face import LiveFace
from .idle import IdleStream

_COL = {p: i for i, p in enumerate(MOUTH_PARAMS)}
# (render scale, frame step): each step down renders smaller, the last one every other frame
LEVELS: tuple[tuple[float, int], ...] = ((1.0, 1), (0.75, 1), (0.5, 1), (0.5, 2))
MIN_DELAY_S = 0.28  # look-ahead 0.24 s + half an analysis window + one row of interpolation


@dataclass(frozen=True)
class LiveOptions:
    """fps: frames a second; delay_s: how far behind the audio each frame is sent (at
    least MIN_DELAY_S); seed: idle motion; still: no blinks, sway or breathing;
    adapt: step down (scale, then rate) when rendering is too slow, and back up;
    color_match: as render's; label, label_text: the visible AI-generated label drawn on
    every frame, as render draws it (finish.label)."""

    fps: float = 25.0
    delay_s: float = 0.32
    seed: int = 0
    still: bool = False
    adapt: bool = True
    color_match: str = "mean"
    label: bool = True
    label_text: str = DEFAULT_LABEL_TEXT

    def check(self) -> None:
        if not 1 <= self.fps <= 60:
            raise InputError(f"--fps {self.fps} is out of range for live (1 to 60)")
        if not MIN_DELAY_S <= self.delay_s <= 5.0:
            raise InputError(f"--delay {self.delay_s} is out of range ({MIN_DELAY_S} to 5 seconds)")
        if self.label and not self.label_text.strip():
            raise InputError("--label-text is empty: give the label's words, or --no-label")

    def label_description(self) -> str:
        """As FinishOptions.label_description: what the recording's metadata says of the label."""
        return f"{self.label_text} (bottom-right)" if self.label else "none"


@dataclass
class LiveFrame:
    """One frame out. index k; pts: the audio time it shows (k / fps); sent: the session
    clock when it was ready to send (None without a clock); image (H, W, 3) uint8 at the live size;
    scale/step: the level it was rendered at; skipped: frames dropped just before it (too
    late); open: the mouth opening drawn (0 closed .. 1); render_s: seconds it took."""

    index: int
    pts: float
    sent: float | None
    image: np.ndarray
    scale: float
    step: int
    skipped: int
    open: float
    render_s: float


class Pacer:
    """Chooses the render level from how long frames take against the frame interval.

    Down a level when the smoothed render time stays above 80% of the interval for 10
    frames, or at once when a frame had to be skipped (not again within SETTLE_S: frames
    planned before a step still arrive late); up a level after 5 s in which the
    time expected at the level above (scaled by its pixel count) stays under 50%."""

    DOWN_SHARE, UP_SHARE = 0.8, 0.5
    DOWN_AFTER, UP_AFTER_S = 10, 5.0
    SETTLE_S = 1.0  # after a step, skips (from frames planned before it) do not step again for this long

    def __init__(self, fps: float, adapt: bool = True) -> None:
        self.fps = fps
        self.adapt = adapt
        self.level = 0
        self.ema: float | None = None
        self._slow = 0
        self._fast_since: float | None = None
        self.changes: list[tuple[float, int]] = []  # (pts, new level)

    @property
    def scale(self) -> float:
        return LEVELS[self.level][0]

    @property
    def step(self) -> int:
        return LEVELS[self.level][1]

    def observe(self, pts: float, render_s: float, skipped: int) -> None:
        self.ema = render_s if self.ema is None else 0.8 * self.ema + 0.2 * render_s
        if not self.adapt:
            return
        interval = self.step / self.fps
        self._slow = self._slow + 1 if self.ema > self.DOWN_SHARE * interval else 0
        settled = not self.changes or pts - self.changes[-1][0] >= self.SETTLE_S  # one skip is not a trend
        if ((skipped and settled) or self._slow >= self.DOWN_AFTER) and self.level < len(LEVELS) - 1:
            self._move(pts, +1)
            return
        if self.level > 0:
            up_scale, up_step = LEVELS[self.level - 1]
            expected = self.ema * (up_scale / self.scale) ** 2
            if expected < self.UP_SHARE * up_step / self.fps:
                if self._fast_since is None:
                    self._fast_since = pts
                elif pts - self._fast_since >= self.UP_AFTER_S:
                    self._move(pts, -1)
            else:
                self._fast_since = None

    def _move(self, pts: float, by: int) -> None:
        old_scale = self.scale
        self.level += by
        self.ema = None if self.ema is None else self.ema * (self.scale / old_scale) ** 2
        self._slow, self._fast_since = 0, None
        self.changes.append((pts, self.level))


@dataclass(frozen=True)
class FramePlan:
    """What frame `index` shows, decided in order; drawn later, possibly on another thread."""

    index: int
    pts: float
    mouth: np.ndarray
    head: np.ndarray
    blink: float
    scale: float
    step: int
    skipped: int


@dataclass
class LiveStats:
    frames: int = 0  # frames drawn and sent
    skipped: int = 0  # frames dropped because they were late
    held: int = 0  # frames not drawn at half rate (the one before is shown)
    render_s: float = 0.0
    max_late_s: float = 0.0  # how far past its due time a frame was sent, at most
    levels: list[tuple[float, int]] = field(default_factory=list)


class LiveSession:
    """See the module docstring. One session per viewer; nothing is shared between
    sessions but the read-only lip model."""

    def __init__(self, face: LiveFace, options: LiveOptions | None = None, lips: LipModel | None = None,
                 workers: int = 1) -> None:
        """workers: how many frames the caller draws at once (the pacer's budget per frame
        is workers frame intervals)."""
        self.workers = max(1, int(workers))
        self.options = options or LiveOptions()
        self.options.check()
        self.face = face
        self.fps = float(self.options.fps)
        self.delay = float(self.options.delay_s)
        self.mouth = LiveMouth(lips or lip_model())
        self.idle = IdleStream(self.options.seed, self.fps, still=self.options.still)
        self.pacer = Pacer(self.fps, self.options.adapt)
        self.stats = LiveStats()
        self._gains = gains(face.shapes, face.amplitude)
        self._label = Label(self.options.label_text, *face.size) if self.options.label else None
        self._lock = threading.Lock()
        self._rows: deque[np.ndarray] = deque()  # gated (open, width) rows from row _row0 on
        self._row0 = 0
        self._next = 0  # next frame index
        self._speaking = 0.0
        self._warm()

    def _warm(self) -> None:
        """Prepare the full-size level and draw one frame off the record, so the first real
        frame does not pay for first-call set-up (and the pacer does not step down for it)."""
        level = self.face.level(1.0)
        mouth = np.zeros(len(MOUTH_PARAMS), np.float32)
        mouth[_COL["open"]] = 0.3
        level.renderer.render(level.image, level.landmarks, mouth, 0.0)

    # -- audio ---------------------------------------------------------------------------

    def push(self, samples: np.ndarray) -> None:
        """16 kHz mono float32 samples in [-1, 1], as they arrive."""
        with self._lock:
            self.mouth.push(samples)
            self._collect()

    def push_pcm16(self, data: bytes) -> None:
        """Little-endian signed 16-bit mono PCM at 16 kHz."""
        if len(data) % 2:
            raise InputError("PCM data must be whole 16-bit samples (an even number of bytes)")
        self.push(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0)

    def end(self) -> None:
        """No more audio: the remaining frames become final (silence after the end)."""
        with self._lock:
            self.mouth.end()
            self._collect()

    @property
    def audio_seconds(self) -> float:
        return self.mouth.samples / SAMPLE_RATE

    @property
    def total_frames(self) -> int | None:
        """Frames of the whole stream once it has ended (as render counts them), else None."""
        if not self.mouth.ended:
            return None
        return max(1, int(round(self.mouth.samples / SAMPLE_RATE * self.fps)))

    @property
    def done(self) -> bool:
        total = self.total_frames
        return total is not None and self._next >= total

    def _collect(self) -> None:
        start, rows = self.mouth.rows()
        if not self._rows:
            self._row0 = start
        self._rows.extend(rows)

    # -- frames --------------------------------------------------------------------------

    def _final(self, k: int) -> bool:
        """Is frame k's mouth final (both rows it is read between)?"""
        total = self.total_frames
        if total is not None:
            return k < total
        need = int(np.floor(k / self.fps * ANALYSIS_RATE)) + 1
        return need < self._row0 + len(self._rows)

    def _mouth_at(self, k: int) -> np.ndarray:
        r = k / self.fps * ANALYSIS_RATE
        i = int(np.floor(r))
        end = self._row0 + len(self._rows)
        a = self._rows[min(max(i - self._row0, 0), len(self._rows) - 1)] if self._rows else np.zeros(2)
        b = self._rows[min(max(i + 1 - self._row0, 0), len(self._rows) - 1)] if self._rows else np.zeros(2)
        if i + 1 >= end:
            b = a
        u = r - i
        opening, width = (1 - u) * a + u * b
        while len(self._rows) > 1 and self._row0 < i:  # rows before this frame are no longer needed
            self._rows.popleft()
            self._row0 += 1
        g_open, g_wide, g_round = self._gains
        m = np.zeros(len(MOUTH_PARAMS), np.float32)
        m[_COL["open"]] = g_open * max(opening, 0.0)
        m[_COL["wide"]] = g_wide * max(width, 0.0)
        m[_COL["round"]] = g_round * max(-width, 0.0)
        # no phone cues live: teeth and the upper-lip raise follow the opening (shapes B-D)
        m[_COL["teeth"]] = 0.45 * min(1.0, m[_COL["open"]] / 0.15)
        m[_COL["upper"]] = 0.2 * min(1.0, m[_COL["open"]] / 0.3)
        return np.clip(m, 0.0, 1.0)

    def next_frame(self, clock: float | None = None) -> LiveFrame | None:
        """The next frame, rendered now, or None when none is due yet (or the stream is done).

        clock: seconds of session time now (audio received, or wall time since the start in
        real time); a frame is due at pts + delay. None: no pacing, every frame as soon as
        its mouth is final (a file run as fast as possible)."""
        plan = self.plan(clock, ahead=0.0)
        return None if plan is None else self.draw(plan, clock)

    def plan(self, clock: float | None = None, ahead: float = 0.0) -> FramePlan | None:
        """What the next frame shows (its mouth, head and blink), or None when there is
        none to start yet: its mouth is not final, or (with clock) it is not due within
        `ahead` seconds. A frame already past its due time by a frame interval is skipped
        for the newest due one. draw() renders a plan (from any thread)."""
        with self._lock:
            k = self._next
            if self.done or not self._final(k):
                return None
            skipped = 0
            total = self.total_frames
            if clock is not None:
                if clock + ahead < k / self.fps + self.delay:
                    return None
                newest = int(np.floor((clock - self.delay) * self.fps + 1e-9))
                if total is not None:
                    newest = min(newest, total - 1)
                while newest > k and not self._final(newest):
                    newest -= 1
                if newest > k:  # late by a frame or more: jump to the newest due frame
                    skipped = newest - k
                    k = newest
            step = self.pacer.step
            if step > 1 and k % step and clock is not None:
                # half rate: odd frames are not drawn; the viewer keeps the one before
                nxt = k + (step - k % step)
                if (total is None or nxt < total) and self._final(nxt):
                    self.stats.held += nxt - k
                    k = nxt
            mouth = self._mouth_at(k)
            self._next = k + 1
            pts = k / self.fps
            self._speaking = 0.9 * self._speaking + 0.1 * min(1.0, float(mouth[_COL["open"]]) / 0.3)
            head = self.idle.head(pts, self._speaking)
            blink = self.idle.blink(pts)
            self.stats.skipped += skipped
            return FramePlan(k, pts, mouth, head, blink, self.pacer.scale, self.pacer.step, skipped)

    def draw(self, plan: FramePlan, clock: float | None = None) -> LiveFrame:
        """Render a plan (thread-safe: two plans may be drawn at once). clock: the session
        time when drawing started (for the frame's `sent` and the pacer)."""
        t0 = time.perf_counter()
        level = self.face.level(plan.scale)
        frame, lm = level.head.apply(plan.head)
        patch = level.renderer.render(frame, lm, plan.mouth, plan.blink)
        out = paste(frame, patch, self.options.color_match) if patch is not None else np.array(frame)
        w, h = self.face.size
        if out.shape[1] != w or out.shape[0] != h:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        if self._label is not None:  # out is always a new array (paste, np.array or resize made it)
            self._label.apply(out)
        render_s = time.perf_counter() - t0
        sent = None if clock is None else clock + render_s
        with self._lock:
            if clock is not None:  # without a clock (a file as fast as possible) nothing is late: no steps
                self.pacer.observe(plan.pts, render_s / self.workers, plan.skipped)
            self.stats.frames += 1
            self.stats.render_s += render_s
            if sent is not None:
                self.stats.max_late_s = max(self.stats.max_late_s, sent - (plan.pts + self.delay))
            self.stats.levels = list(self.pacer.changes)
        return LiveFrame(index=plan.index, pts=plan.pts, sent=sent, image=out, scale=plan.scale, step=plan.step,
                         skipped=plan.skipped, open=float(plan.mouth[_COL["open"]]), render_s=render_s)

    def count_dropped(self) -> None:
        """A drawn frame was not sent (its successor was already due): count it as skipped."""
        with self._lock:
            self.stats.frames -= 1
            self.stats.skipped += 1

    def next_due(self) -> float:
        """Session time at which the next frame falls due."""
        return self._next / self.fps + self.delay
