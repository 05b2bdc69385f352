"""Mouth curves from the learned lip model (facetalk.lips): the default motion.

The model gives, 100 times a second, the opening and the width of a mouth in units of the
speaker's own range (lips.data). Here they become the renderer's parameters:
- open: the predicted opening times the face's amplitude: the generic OPEN_GAIN for a
  photo; for an identity the person's own, measured on their footage (identity.shapes.
  footage_amplitude: the opening they reach at their 95th percentile, which is what the
  model's 1 means), or failing that their shape table's D opening over the generic D;
- wide / round: the width above / below the speaker's usual, scaled the same way (per
  standard deviation of the person's width, or the table's B width and F rounding);
- upper, lower, teeth: from the rule path's cues (teeth on F/V, the lip raise of EE), which
  2-D landmarks cannot teach; round at least ROUND_FROM_CUES of the cues' (the pucker of
  "oo", which the model's 2-D width barely shows) where the model hears the mouth narrow
  (fully from ROUND_AGREE standard deviations below the speaker's usual width).
The mouth closes where there is no voice activity within a fraction of a second (the model
hears breaths and noise too), so silence renders a closed mouth; frames are read at their
centre time from the 100-per-second predictions.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter1d

from ..lips.model import LipModel, lip_model
from ..types import ANALYSIS_RATE, MOUTH_PARAMS, Shape, Speech
from .curves import _cue_segments, _interval_means, frame_edges, mouth_curves
from .shapes import target_table

OPEN_GAIN = 0.75  # renderer opening of a speaker's wide-open (their 95th percentile) mouth
WIDTH_GAIN = 0.3  # wide (or round) per standard deviation of the speaker's width
ROUND_FROM_CUES = 0.8  # share of the cues' rounding (F: "oo", "o", "w"; E) the lips take at least
ROUND_AGREE = 0.5  # ... where the model's width is this many standard deviations below usual
SILENCE_REACH_S = 0.15  # the mouth may open this long before voice starts and after it ends
_COL = {p: i for i, p in enumerate(MOUTH_PARAMS)}
_RULE_COLUMNS = ("upper", "lower", "teeth")


GAIN_RANGE = (0.25, 2.0)  # a person's gains, relative to the generic ones


def gains(table: np.ndarray | None, amplitude: tuple[float, float, float] | None = None) -> tuple[float, float, float]:
    """(open, wide, round) gains: a person's measured amplitude (open, wide, round, see
    learned_mouth) within GAIN_RANGE of the generic gains, else their shape table's
    against the generic one, else the generic gains."""
    if amplitude is not None:
        lo, hi = GAIN_RANGE
        return tuple(float(np.clip(a, lo * g, hi * g)) for a, g in zip(amplitude, (OPEN_GAIN, WIDTH_GAIN, WIDTH_GAIN)))
    if table is None:
        return OPEN_GAIN, WIDTH_GAIN, WIDTH_GAIN
    generic, own = target_table(), np.asarray(table, dtype=np.float64)
    rows = {s: i for i, s in enumerate(Shape)}

    def ratio(shape: Shape, col: str) -> float:
        g = generic[rows[shape], _COL[col]]
        return float(np.clip(own[rows[shape], _COL[col]] / g, *GAIN_RANGE)) if g > 0 else 1.0

    return OPEN_GAIN * ratio(Shape.D, "open"), WIDTH_GAIN * ratio(Shape.B, "wide"), WIDTH_GAIN * ratio(Shape.F, "round")


def voice_gate(speech: Speech, n_rows: int) -> np.ndarray:
    """(n_rows,) float in [0, 1] at 100 rows a second: 1 within SILENCE_REACH_S of voice
    activity, easing to 0 away from it."""
    voiced = np.zeros(n_rows, bool)
    v = np.asarray(speech.voiced, bool)[:n_rows]
    voiced[: len(v)] = v
    reach = int(round(SILENCE_REACH_S * ANALYSIS_RATE))
    near = binary_dilation(voiced, iterations=reach) if voiced.any() else voiced
    return np.clip(gaussian_filter1d(near.astype(np.float64), 3.0), 0.0, 1.0)


def bilabial_closure(speech: Speech, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) share of each frame's interval that the cues hold lips shut for M, B, P
    (Rhubarb's A), when the cues come from known phones (a transcript, or text spoken by
    facetalk); zeros when they were guessed from the sound."""
    if not speech.phones or n_frames <= 0:
        return np.zeros(max(n_frames, 0))
    breaks, seq = _cue_segments(speech)
    shut = np.array([[s == Shape.A] for s in seq], dtype=np.float64)
    return _interval_means(breaks, shut, frame_edges(fps, n_frames))[:, 0]


def learned_mouth(speech: Speech, fps: float, n_frames: int, table: np.ndarray | None = None,
                  model: LipModel | None = None, amplitude: tuple[float, float, float] | None = None) -> np.ndarray:
    """(n_frames, len(MOUTH_PARAMS)) float32 mouth targets in [0, 1] from the lip model.

    speech must carry its log-mel (Speech.mel, as analyse_speech gives it). table: a
    person's shape table; amplitude: the person's (open, wide, round) measured on their
    footage in the renderer's units: the opening at the model's 1 (their 95th percentile)
    and the wide-minus-round change per standard deviation of their width (it takes
    precedence over the table's, see gains); model: a loaded lip model (None: the one
    shipped with facetalk)."""
    if speech.mel is None:
        raise ValueError("this Speech has no log-mel features (Speech.mel); analyse the audio with analyse_speech")
    rules = mouth_curves(speech, fps, n_frames, table=table)
    if n_frames <= 0:
        return rules
    model = model or lip_model()
    pred = model.predict(speech.mel).astype(np.float64)  # (m, 2) at ANALYSIS_RATE
    gate = voice_gate(speech, len(pred))
    rows = np.arange(n_frames) / fps * ANALYSIS_RATE
    idx = np.arange(len(pred))
    opening = np.interp(rows, idx, pred[:, 0] * gate) if len(pred) else np.zeros(n_frames)
    width = np.interp(rows, idx, pred[:, 1] * gate) if len(pred) else np.zeros(n_frames)
    g_open, g_wide, g_round = gains(table, amplitude)
    out = np.zeros((n_frames, len(MOUTH_PARAMS)), np.float64)
    out[:, _COL["open"]] = g_open * np.clip(opening, 0.0, None)
    out[:, _COL["wide"]] = g_wide * np.clip(width, 0.0, None)
    # rounding: the model's narrowing, or the cues' where they round further. 2-D width
    # alone under-states a pucker (the lips go forward more than they come in: the model
    # gives ~0.07 on Rhubarb F, the cues' table 1.0)
    # (only as far as the model hears the mouth narrow at all: half a standard deviation
    # below the speaker's usual width lets the cues round fully)
    agree = np.clip(-width / ROUND_AGREE, 0.0, 1.0)
    out[:, _COL["round"]] = np.maximum(g_round * np.clip(-width, 0.0, None),
                                       ROUND_FROM_CUES * rules[:, _COL["round"]] * agree)
    for col in _RULE_COLUMNS:
        out[:, _COL[col]] = rules[:, _COL[col]]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
