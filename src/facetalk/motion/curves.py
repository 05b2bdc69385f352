"""Mouth motion curves: the cue timeline of a Speech sampled at the output frame rate.

Frame k shows time k / fps and stands for the interval [(k - 1/2)/fps, (k + 1/2)/fps].
Each frame gets the exact time-average of the shape targets over its interval, so a
cue shorter than a frame still shows (partly) and the half-way point of a transition
lands on the frame nearest to it. A small symmetric Gaussian then softens the steps
without moving them in time; a short release on "open" gives the hand-animated
"pop open, close slowly" feel while the opening onset stays where the audio puts it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..types import ANALYSIS_RATE, MOUTH_PARAMS, Shape, Speech
from .shapes import CLOSED_SHAPES, OPEN, target_table

_ROW = {s: i for i, s in enumerate(Shape)}  # table row of each shape

SMOOTH_SIGMA_S = 0.02  # symmetric smoothing; well under a frame at 25-30 fps
RELEASE_TAU_S = 0.04  # decay time of a closing mouth; half-way within ~28 ms
ENERGY_GAIN = (0.6, 0.6)  # open *= 0.6 + 0.6 * energy: quiet 0.6x, loud 1.2x


def frame_edges(fps: float, n_frames: int) -> np.ndarray:
    """(n_frames + 1,) float64 interval edges in seconds; frame 0 starts at time 0."""
    edges = (np.arange(n_frames + 1, dtype=np.float64) - 0.5) / fps
    edges[0] = 0.0
    return edges


def _interval_means(breaks: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of a piecewise-constant function over each interval between edges.

    breaks: (m + 1,) increasing segment bounds; values: (m, d) value on each segment,
    the last value also holds after breaks[-1]. Returns (len(edges) - 1, d) float64.
    """
    end = max(float(edges[-1]), float(breaks[-1])) + 1.0
    breaks = np.append(breaks, end)
    values = np.vstack([values, values[-1:]])
    cum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values * np.diff(breaks)[:, None], axis=0)])
    at = np.stack([np.interp(edges, breaks, cum[:, j]) for j in range(values.shape[1])], axis=1)
    width = np.maximum(np.diff(edges), 1e-12)[:, None]
    return np.diff(at, axis=0) / width


def _cue_segments(speech: Speech) -> tuple[np.ndarray, list[Shape]]:
    """Segment bounds (m+1,) and shapes (m) from the cues, gaps and the tail filled with X."""
    bounds, shapes = [0.0], []
    for cue in sorted(speech.cues, key=lambda c: c.start):
        start, end = max(cue.start, bounds[-1]), cue.end
        if end <= start:
            continue
        if start > bounds[-1]:  # a gap between cues: rest
            shapes.append(Shape.X)
            bounds.append(start)
        shapes.append(Shape(cue.shape))
        bounds.append(end)
    shapes.append(Shape.X)  # after the last cue: rest
    bounds.append(bounds[-1] + 1e-3)
    return np.asarray(bounds, dtype=np.float64), shapes


def energy_per_frame(energy: np.ndarray, edges: np.ndarray) -> np.ndarray | None:
    """(n,) mean of the 100 fps energy over each frame interval; None without energy.

    Energy sample i stands for [(i - 1/2), (i + 1/2)) / ANALYSIS_RATE; past its end 0.
    """
    energy = np.asarray(energy, dtype=np.float64).ravel()
    if energy.size == 0:
        return None
    breaks = (np.arange(energy.size + 2) - 0.5) / ANALYSIS_RATE  # + a trailing 0 segment
    breaks[0] = 0.0
    values = np.append(np.clip(energy, 0.0, 1.0), 0.0)[:, None]
    return _interval_means(breaks, values, edges)[:, 0]


def _release(x: np.ndarray, alpha: float) -> np.ndarray:
    """Rises follow x at once; falls decay towards x by alpha per frame."""
    y = x.copy()
    for k in range(1, len(y)):
        if y[k] < y[k - 1]:
            y[k] = x[k] + alpha * (y[k - 1] - x[k])
    return y


def mouth_curves(speech: Speech, fps: float, n_frames: int, table: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, len(MOUTH_PARAMS)) float32 mouth targets in [0, 1], one row per frame.

    table: (len(Shape), len(MOUTH_PARAMS)) target table, rows in Shape order (a
    person's own, learnt by an identity); None: the generic motion.shapes table.

    "open" is scaled by the speech energy so loud syllables open wider; frames lying
    mostly in an A or X cue never open more than their own time-average (0 for a frame
    wholly inside), so lips meet on M/B/P and rest closed in silence.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if n_frames <= 0:
        return np.zeros((0, len(MOUTH_PARAMS)), dtype=np.float32)
    edges = frame_edges(fps, n_frames)
    breaks, seq = _cue_segments(speech)
    table = target_table() if table is None else np.asarray(table, dtype=np.float64)
    targets = table[[_ROW[s] for s in seq]].astype(np.float64)
    closed = np.array([[s in CLOSED_SHAPES] for s in seq], dtype=np.float64)
    means = _interval_means(breaks, np.hstack([targets, closed]), edges)
    raw, closed_frac = means[:, :-1], means[:, -1]

    energy = energy_per_frame(speech.energy, edges)
    if energy is not None:
        gain = ENERGY_GAIN[0] + ENERGY_GAIN[1] * energy
        raw[:, OPEN] = np.clip(raw[:, OPEN] * gain, 0.0, 1.0)

    sigma = SMOOTH_SIGMA_S * fps
    smooth = gaussian_filter1d(raw, sigma, axis=0, mode="nearest") if sigma >= 0.25 else raw.copy()
    smooth[:, OPEN] = _release(smooth[:, OPEN], float(np.exp(-1.0 / (RELEASE_TAU_S * fps))))

    shut = closed_frac >= 0.5  # the frame shows mostly a closed shape
    smooth[shut, OPEN] = np.minimum(smooth[shut, OPEN], raw[shut, OPEN])
    return np.clip(smooth, 0.0, 1.0).astype(np.float32)
