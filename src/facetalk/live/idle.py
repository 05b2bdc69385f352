"""Idle life for a stream of unknown length: blinks, sway and breathing at any time t.

The same motion as motion.idle (its constants, blink shapes and sway recipe), drawn from
a seed once and evaluated frame by frame, so it never ends, never jumps, and keeps no
more than the next few blinks in memory.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..motion import idle as base


class IdleStream:
    """blink(t) in [0, 1] and head(t) = (dx, dy, roll, scale) for increasing times t (s)."""

    def __init__(self, seed: int, fps: float, still: bool = False) -> None:
        self.still = still
        self.fps = float(fps)
        blink_rng, sway_rng, breath_rng = np.random.default_rng(seed).spawn(3)
        self._blink_rng = blink_rng
        self._events: deque[base.Blink] = deque()
        self._next_group = float(blink_rng.uniform(0.3, base.BLINK_GAP_S[1] / 2))
        self._sway = [self._components(sway_rng) for _ in range(3)]
        self._breath_rate = float(breath_rng.uniform(*base.BREATH_HZ))
        self._breath_phase = float(breath_rng.uniform(0, 2 * np.pi))
        self._breath_wander = self._components(breath_rng)

    @staticmethod
    def _components(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        freqs = rng.uniform(*base.SWAY_HZ, size=base.SWAY_COMPONENTS)
        phases = rng.uniform(0, 2 * np.pi, size=base.SWAY_COMPONENTS)
        amps = rng.uniform(0.5, 1.0, size=base.SWAY_COMPONENTS) / np.sqrt(freqs)
        return freqs, phases, amps, float(np.sqrt((amps**2).sum() / 2))

    @staticmethod
    def _noise(c, t: float) -> float:
        freqs, phases, amps, norm = c
        return float((amps * np.sin(2 * np.pi * freqs * t + phases)).sum() / norm)

    def _blinks_until(self, t: float) -> None:
        snap = 0.5 / self.fps
        rng = self._blink_rng
        while self._next_group < t + 1.0:  # events a little ahead of t
            group_start = s = self._next_group
            for _ in range(2 if rng.random() < base.DOUBLE_BLINK_P else 1):
                length = rng.uniform(*base.BLINK_LEN_S)
                peak = np.round((s + base.BLINK_CLOSE_PART * length) * self.fps) / self.fps
                blink = base.Blink(float(peak - base.BLINK_CLOSE_PART * length), float(length))
                self._events.append(blink)
                s = blink.start + blink.length + rng.uniform(*base.DOUBLE_BLINK_PAUSE_S)
            lo, hi = base.BLINK_GAP_S[0] + snap, base.BLINK_GAP_S[1] - snap
            self._next_group = group_start + lo + (hi - lo) * rng.beta(1.5, 2.5)
        while self._events and self._events[0].start + self._events[0].length < t - 1.0:
            self._events.popleft()

    def blink(self, t: float) -> float:
        if self.still:
            return 0.0
        self._blinks_until(t)
        return float(base.blink_curve(list(self._events), np.array([t]))[0])

    def head(self, t: float, speaking: float = 0.0) -> np.ndarray:
        """(4,) float32; speaking in [0, 1] grows the sway a little (as motion.idle does)."""
        if self.still:
            return np.array([0, 0, 0, 1], np.float32)
        gain = 1.0 + base.SPEAKING_GAIN * float(np.clip(speaking, 0, 1))
        out = np.empty(4, np.float32)
        out[0] = base._soft_limit(base.SWAY_STD[0] * gain * self._noise(self._sway[0], t), base.SWAY_MAX)
        out[1] = base._soft_limit(base.SWAY_STD[1] * gain * self._noise(self._sway[1], t), base.SWAY_MAX)
        out[2] = base._soft_limit(base.ROLL_STD_DEG * gain * self._noise(self._sway[2], t), base.ROLL_MAX_DEG)
        phase = 2 * np.pi * self._breath_rate * t + self._breath_phase + 0.3 * self._noise(self._breath_wander, t)
        out[3] = 1.0 + base.BREATH_DEPTH * np.sin(phase)
        return out
