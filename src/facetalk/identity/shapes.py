"""A person's own mouth shapes, learnt from their footage.

Two steps. First every usable frame's landmarks are read as a mouth vector: the renderer's
own shape model (render.mouth_shape.shape_canonical) is run over a grid of (open,
wide-or-round) on the person's neutral mouth, and each frame takes the grid point whose
inner-lip gap and mouth width match it best. Then the shape table (open, wide and round of
each Rhubarb shape) is fitted so that the motion stage, driven by the footage's own mouth
cues, reproduces those per-frame vectors: least squares through motion.curves.mouth_curves
itself, so coarticulation, loudness scaling and smoothing are accounted for exactly, with a
pull towards the generic table for shapes the footage says little about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..face.geometry import apply, to_canonical
from ..motion.curves import mouth_curves
from ..motion.shapes import CLOSED_SHAPES, target_table
from ..render.mouth_shape import shape_canonical
from ..types import MOUTH_PARAMS, Shape, Speech

FITTED = ("open", "wide", "round")  # parameters a face's 2-D landmarks can show
_COL = {p: MOUTH_PARAMS.index(p) for p in FITTED}
_PAIRS = ((61, 67), (62, 66), (63, 65))
PRIOR_WEIGHT = 0.05  # pull of the generic table, against the mean squared frame residual
MAX_LAG = 3  # frames the face may lead or lag its soundtrack, searched before fitting


def gap_and_width(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip gap and corner-to-corner width of (..., 68, 2) canonical landmarks."""
    c = np.asarray(canon, dtype=np.float64)
    gap = np.mean([c[..., lo, 1] - c[..., up, 1] for up, lo in _PAIRS], axis=0)
    width = np.linalg.norm(c[..., 54, :] - c[..., 48, :], axis=-1)
    return gap, width


@dataclass(frozen=True)
class ShapeReader:
    """Reads mouth vectors off landmarks through a grid of the renderer's shape model
    on one person's neutral mouth. grid: (m, 3) (open, wide, round); gap, width: (m,)."""

    grid: np.ndarray
    gap: np.ndarray
    width: np.ndarray

    @classmethod
    def for_neutral(cls, neutral: np.ndarray, steps: int = 21) -> "ShapeReader":
        rows = []
        for o in np.linspace(0.0, 1.0, steps):
            for side in np.linspace(-1.0, 1.0, 2 * steps - 1):
                rows.append((o, max(side, 0.0), max(-side, 0.0)))
        grid = np.asarray(rows)
        vec = np.zeros((len(grid), len(MOUTH_PARAMS)))
        for j, p in enumerate(FITTED):
            vec[:, _COL[p]] = grid[:, j]
        shaped = np.stack([shape_canonical(neutral, v) for v in vec])
        gap, width = gap_and_width(shaped)
        _, w0 = gap_and_width(neutral)
        return cls(grid, gap, width / max(float(w0), 1e-6))

    def read(self, gap: np.ndarray, width_ratio: np.ndarray) -> np.ndarray:
        """(n, 3) open, wide, round of frames with inner-lip gap (canonical units) and
        width relative to the person's closed mouth."""
        gap, ratio = np.atleast_1d(gap), np.atleast_1d(width_ratio)
        # a gap error of 0.02 IOD weighs like a width error of 3%
        d = ((gap[:, None] - self.gap[None]) / 0.02) ** 2 + ((ratio[:, None] - self.width[None]) / 0.03) ** 2
        return self.grid[np.argmin(d, axis=1)]


def frame_vectors(landmarks: np.ndarray, usable: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(n, 3) open, wide, round read off each frame, NaN rows where not usable.

    landmarks: (n, 68, 2) image points; usable: (n,) bool; neutral: (68, 2) canonical
    closed neutral mouth of the person.
    """
    out = np.full((len(landmarks), 3), np.nan)
    idx = np.flatnonzero(usable)
    if len(idx) == 0:
        return out
    canon = np.stack([apply(to_canonical(landmarks[i]), landmarks[i]) for i in idx])
    gap, width = gap_and_width(canon)
    closed = gap < np.percentile(gap, 20) + 1e-6
    w_closed = float(np.median(width[closed]))  # the person's own closed width in this footage
    out[idx] = ShapeReader.for_neutral(neutral).read(gap, width / w_closed)
    return out


MIN_AMPLITUDE_FRAMES = 50  # usable frames (2 s at 25 fps) below which footage_amplitude says nothing


def footage_amplitude(landmarks: np.ndarray, neutral: np.ndarray) -> tuple[float, float, float] | None:
    """The person's mouth amplitude for the learned lip motion (motion.learned), read off
    their footage in the renderer's own units (frame_vectors): (open, wide, round) =
    (their 95th-percentile opening, the standard deviation of wide minus round twice).

    The lip model predicts opening in units of a speaker's own range (0 at their 5th
    percentile, 1 at their 95th) and width in their standard deviations (lips.data), so
    these are exactly what its 1 means for this person. The shape table's ratios (fitted
    through the rule path's cues) under-state it: on the news anchor's footage they gave
    0.35 and 0.08 against 0.45 and 0.19 measured here, and the rendered mouth moved at 0.57
    of the real one's spread (README, identities).

    landmarks: (n, 68, 2) image points, NaN rows where no face (an identity's
    clip_landmarks); neutral: (68, 2) canonical closed mouth. None with fewer than
    MIN_AMPLITUDE_FRAMES usable frames."""
    lm = np.asarray(landmarks, dtype=np.float64)
    usable = np.isfinite(lm).all(axis=(1, 2)) if lm.ndim == 3 else np.zeros(0, bool)
    if usable.sum() < MIN_AMPLITUDE_FRAMES:
        return None
    v = frame_vectors(lm, usable, np.asarray(neutral, dtype=np.float64))
    v = v[np.isfinite(v).all(axis=1)]
    side = v[:, 1] - v[:, 2]
    return float(np.percentile(v[:, 0], 95)), float(np.std(side)), float(np.std(side))


def best_lag(model: np.ndarray, measured: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """Shift (frames) of measured against model that correlates best; positive: the face lags."""
    best, best_r = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        a = model[max(0, -lag): len(model) - max(0, lag)]
        b = measured[max(0, lag): len(measured) - max(0, -lag)]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        r = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if r > best_r:
            best, best_r = lag, r
    return best


@dataclass(frozen=True)
class ShapeFit:
    table: np.ndarray  # (len(Shape), len(MOUTH_PARAMS)) float32
    frames: int  # frames the fit used
    per_shape: dict[str, int]  # frames spent mostly in each shape's cues
    lag: int  # frames the face lagged its soundtrack in the footage
    rms_before: float  # residual of the generic table on the measured vectors
    rms_after: float  # residual of the fitted table


MAX_RANGE_GAIN = 2.0  # how far the opening may be scaled back up towards the footage's range


def _restore_range(table: np.ndarray, prepared: list) -> np.ndarray:
    """Scale the openings so the motion's spread matches the footage's.

    A least-squares fit through imperfect cue timing shrinks towards the mean (where the
    cues and the lips disagree, half-open is the safest guess): the fitted mouth moves
    less than the person's. The open column is scaled so the standard deviation of the
    modelled opening equals the measured one (at most MAX_RANGE_GAIN, never below 1)."""
    model, measured = [], []
    for speech, m, fps, _ in prepared:
        curve = mouth_curves(speech, fps, len(m), table=table)[:, _COL["open"]]
        ok = np.isfinite(m[:, 0])
        model.append(curve[ok])
        measured.append(m[ok, 0])
    sd_model, sd_real = float(np.std(np.concatenate(model))), float(np.std(np.concatenate(measured)))
    gain = float(np.clip(sd_real / sd_model, 1.0, MAX_RANGE_GAIN)) if sd_model > 1e-6 else 1.0
    out = table.copy()
    out[:, _COL["open"]] = np.clip(out[:, _COL["open"]] * gain, 0.0, 1.0)
    return out


def fit_shapes(clips: list[tuple[Speech, np.ndarray, float]]) -> ShapeFit:
    """Fit the person's shape table to footage.

    clips: (speech of the footage, (n, 3) measured vectors from frame_vectors, fps) each.
    Closed shapes keep open at 0 (lips must meet on M, B, P and at rest); upper, lower
    and teeth stay generic (2-D landmarks do not show them).
    """
    generic = target_table().astype(np.float64)
    shapes = list(Shape)
    free = [(i, j) for i, s in enumerate(shapes) for j, p in enumerate(FITTED)
            if not (p == "open" and s in CLOSED_SHAPES)]
    prepared, counts = [], {s.value: 0 for s in shapes}
    for speech, measured, fps in clips:
        n = len(measured)
        if n == 0 or not np.isfinite(measured[:, 0]).any():
            continue
        lag = best_lag(mouth_curves(speech, fps, n)[:, _COL["open"]], measured[:, 0])
        shifted = np.full_like(measured, np.nan)
        if lag >= 0:
            shifted[: n - lag] = measured[lag:]
        else:
            shifted[-lag:] = measured[: n + lag]
        prepared.append((speech, shifted, fps, lag))
        times = np.arange(n) / fps
        for cue in speech.cues:
            inside = (times >= cue.start) & (times < cue.end) & np.isfinite(shifted[:, 0])
            counts[Shape(cue.shape).value] += int(inside.sum())
    if not prepared:
        return ShapeFit(generic.astype(np.float32), 0, counts, 0, float("nan"), float("nan"))

    def table_of(theta: np.ndarray) -> np.ndarray:
        t = generic.copy()
        for k, (i, j) in enumerate(free):
            t[i, _COL[FITTED[j]]] = theta[k]
        return t

    def frame_residuals(table: np.ndarray) -> np.ndarray:
        res = []
        for speech, measured, fps, _ in prepared:
            curves = mouth_curves(speech, fps, len(measured), table=table)
            cols = [_COL[p] for p in FITTED]
            r = curves[:, cols] - measured
            res.append(r[np.isfinite(r).all(axis=1)].ravel())
        return np.concatenate(res)

    theta0 = np.array([generic[i, _COL[FITTED[j]]] for i, j in free])
    n_res = len(frame_residuals(generic))

    def residuals(theta: np.ndarray) -> np.ndarray:
        prior = np.sqrt(PRIOR_WEIGHT * n_res / len(theta)) * (theta - theta0)
        return np.concatenate([frame_residuals(table_of(theta)), prior])

    fit = least_squares(residuals, theta0, bounds=(0.0, 1.0), diff_step=1e-3, max_nfev=60)
    table = _restore_range(table_of(fit.x), prepared)
    rms = lambda t: float(np.sqrt(np.mean(frame_residuals(t) ** 2)))  # noqa: E731
    return ShapeFit(table.astype(np.float32), n_res // len(FITTED), counts, int(prepared[0][3]),
                    rms(generic), rms(table))
