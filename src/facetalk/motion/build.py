"""Assemble the per-frame Motion that drives a renderer."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..lips.model import LipModel
from ..types import ANALYSIS_RATE, MOUTH_PARAMS, Motion, Speech
from .curves import mouth_curves
from .idle import idle_motion
from .learned import learned_mouth

MouthMode = Literal["learned", "rules", "energy", "frozen"]
MOUTH_MODES: tuple[str, ...] = ("learned", "rules", "energy", "frozen")
# "speech" was the name of the cue-driven default before the learned model: requests
# stored under it (queued jobs) get today's default
_ALIASES = {"speech": "learned"}


def build_motion(
    speech: Speech, fps: float, n_frames: int, seed: int = 0, still: bool = False, mouth: MouthMode = "learned",
    shapes: np.ndarray | None = None, lips: LipModel | None = None,
    amplitude: tuple[float, float, float] | None = None,
) -> Motion:
    """Mouth curves from the speech cues plus seeded idle blinks, sway and breathing.

    Returns Motion with mouth (n_frames, 6), blink (n_frames,), head (n_frames, 4).
    still=True keeps the head and eyes as in the source (only the mouth moves).
    mouth selects the lip motion: "learned" (the lip model, motion.learned), "rules" (the
    mouth cues through the shape table), or one of the two baselines that `facetalk eval`
    compares against: "energy" (openness proportional to loudness only) and "frozen" (the
    mouth never moves). shapes: a person's own shape table (an identity's), in place of
    the generic one. lips: the lip model for "learned" (None: the shipped one);
    amplitude: the person's own mouth amplitude for "learned" (motion.learned.learned_mouth;
    identity.shapes.footage_amplitude measures it).
    """
    mouth = _ALIASES.get(mouth, mouth)
    if mouth == "learned":
        curves = learned_mouth(speech, fps, n_frames, table=shapes, model=lips, amplitude=amplitude)
    elif mouth == "rules":
        curves = mouth_curves(speech, fps, n_frames, table=shapes)
    elif mouth == "energy":
        curves = energy_mouth(speech, fps, n_frames)
    elif mouth == "frozen":
        curves = np.zeros((n_frames, len(MOUTH_PARAMS)), np.float32)
    else:
        raise ValueError(f"unknown mouth mode {mouth!r}; use one of {MOUTH_MODES}")
    blink, head = idle_motion(n_frames, fps, seed, still=still, energy=speech.energy)
    return Motion(fps=float(fps), mouth=curves, blink=blink, head=head)


def energy_mouth(speech: Speech, fps: float, n_frames: int) -> np.ndarray:
    """Baseline: the jaw opens in proportion to loudness, nothing else moves."""
    times = np.arange(n_frames) / fps
    src = np.arange(len(speech.energy)) / ANALYSIS_RATE
    energy = np.interp(times, src, speech.energy, left=0.0, right=0.0) if len(src) else np.zeros(n_frames)
    curves = np.zeros((n_frames, len(MOUTH_PARAMS)), np.float32)
    curves[:, MOUTH_PARAMS.index("open")] = 0.8 * np.clip(energy, 0, 1)
    curves[:, MOUTH_PARAMS.index("teeth")] = 0.5
    return curves
