"""Idle life: eye blinks, a slow head sway and breathing, seeded and reproducible.

Everything is a function of time (frame k shows k / fps), so the same seed gives the
same motion at any frame rate, only sampled differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..types import ANALYSIS_RATE

BLINK_GAP_S = (2.0, 6.0)  # start-to-start time between blinks (or double blinks)
BLINK_LEN_S = (0.15, 0.25)  # eyelid down and up again
BLINK_CLOSE_PART = 0.4  # share of a blink spent closing: fast close, slower open
DOUBLE_BLINK_P = 0.12
DOUBLE_BLINK_PAUSE_S = (0.04, 0.10)  # eyes open between the two blinks of a double

SWAY_STD = (0.006, 0.005)  # dx, dy standard deviation, fraction of inter-ocular distance
SWAY_MAX = 0.02  # soft limit on dx, dy
ROLL_STD_DEG, ROLL_MAX_DEG = 0.5, 1.5
SWAY_HZ = (0.04, 0.35)  # band of the sway components; no single dominant period
SWAY_COMPONENTS = 7
SPEAKING_GAIN = 0.6  # sway grows by up to this share while the voice is loud
BREATH_DEPTH = 0.003
BREATH_HZ = (0.2, 0.3)


@dataclass(frozen=True)
class Blink:
    start: float  # seconds when the lid starts to close
    length: float  # seconds until it is fully open again

    @property
    def peak(self) -> float:
        return self.start + BLINK_CLOSE_PART * self.length


def blink_events(duration: float, fps: float, rng: np.random.Generator) -> list[Blink]:
    """Blinks over [0, duration], each peak placed on a frame time so it shows fully closed."""
    snap = 0.5 / fps
    events: list[Blink] = []
    t = rng.uniform(0.3, BLINK_GAP_S[1] / 2)  # first blink early enough to be seen
    while t < duration:
        group_start = t
        for _ in range(2 if rng.random() < DOUBLE_BLINK_P else 1):
            length = rng.uniform(*BLINK_LEN_S)
            peak = np.round((t + BLINK_CLOSE_PART * length) * fps) / fps
            blink = Blink(float(peak - BLINK_CLOSE_PART * length), float(length))
            events.append(blink)
            t = blink.start + blink.length + rng.uniform(*DOUBLE_BLINK_PAUSE_S)
        # beta(1.5, 2.5) skews towards shorter gaps (mean ~3.5 s, ~17 blinks a minute);
        # the margin keeps the frame snapping from pushing a gap out of range
        lo, hi = BLINK_GAP_S[0] + snap, BLINK_GAP_S[1] - snap
        t = group_start + lo + (hi - lo) * rng.beta(1.5, 2.5)
    return events


def blink_curve(events: list[Blink], times: np.ndarray) -> np.ndarray:
    """(n,) float32 lid closure at the given times: 0 open, 1 closed."""
    out = np.zeros(len(times), dtype=np.float64)
    for b in events:
        close = BLINK_CLOSE_PART * b.length
        u = times - b.start
        down = (u >= 0) & (u <= close)
        up = (u > close) & (u <= b.length)
        val = np.zeros_like(out)
        val[down] = 0.5 - 0.5 * np.cos(np.pi * u[down] / close)
        val[up] = 0.5 + 0.5 * np.cos(np.pi * (u[up] - close) / (b.length - close))
        out = np.maximum(out, val)
    return out.astype(np.float32)


def _smooth_noise(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) unit-variance smooth noise: sinusoids at random incommensurate frequencies.

    Several components with random frequencies and phases have no visible period,
    and unlike filtered white noise the variance does not depend on the clip length.
    """
    freqs = rng.uniform(*SWAY_HZ, size=SWAY_COMPONENTS)
    phases = rng.uniform(0, 2 * np.pi, size=SWAY_COMPONENTS)
    amps = rng.uniform(0.5, 1.0, size=SWAY_COMPONENTS) / np.sqrt(freqs)  # slower = larger
    x = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * times[None, :] + phases[:, None])).sum(0)
    return x / np.sqrt((amps**2).sum() / 2)


def _speaking_gain(energy: np.ndarray | None, times: np.ndarray) -> np.ndarray:
    """(n,) 1 in silence up to 1 + SPEAKING_GAIN while loud, smoothed over ~0.3 s."""
    if energy is None or len(energy) == 0:
        return np.ones(len(times))
    smooth = gaussian_filter1d(np.clip(np.asarray(energy, np.float64), 0, 1), 0.3 * ANALYSIS_RATE)
    at = np.interp(times, np.arange(len(smooth)) / ANALYSIS_RATE, smooth, right=0.0)
    return 1.0 + SPEAKING_GAIN * at


def _soft_limit(x: np.ndarray, limit: float) -> np.ndarray:
    return limit * np.tanh(x / limit)


def idle_motion(
    n_frames: int,
    fps: float,
    seed: int,
    still: bool = False,
    energy: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blinks and head motion for n_frames frames at fps.

    energy: optional (m,) speech energy at ANALYSIS_RATE; the head sways a bit more
    while speaking. Returns blink (n_frames,) float32 in [0, 1] and head (n_frames, 4)
    float32 columns dx, dy (fraction of inter-ocular distance), roll (degrees),
    scale (1 + breathing). still=True gives no blinks, zero sway and scale 1.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = max(int(n_frames), 0)
    head = np.zeros((n, 4), dtype=np.float32)
    head[:, 3] = 1.0
    if still or n == 0:
        return np.zeros(n, dtype=np.float32), head
    times = np.arange(n, dtype=np.float64) / fps
    blink_rng, sway_rng, breath_rng = np.random.default_rng(seed).spawn(3)

    blink = blink_curve(blink_events(n / fps, fps, blink_rng), times)

    gain = _speaking_gain(energy, times)
    head[:, 0] = _soft_limit(SWAY_STD[0] * gain * _smooth_noise(times, sway_rng), SWAY_MAX)
    head[:, 1] = _soft_limit(SWAY_STD[1] * gain * _smooth_noise(times, sway_rng), SWAY_MAX)
    head[:, 2] = _soft_limit(ROLL_STD_DEG * gain * _smooth_noise(times, sway_rng), ROLL_MAX_DEG)
    rate = breath_rng.uniform(*BREATH_HZ)
    # a little phase wander so breaths are not metronome-regular
    phase = 2 * np.pi * rate * times + breath_rng.uniform(0, 2 * np.pi)
    phase += 0.3 * _smooth_noise(times, breath_rng)
    head[:, 3] = 1.0 + BREATH_DEPTH * np.sin(phase)
    return blink, head
