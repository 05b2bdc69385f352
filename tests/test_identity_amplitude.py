"""An identity's mouth amplitude for the learned lip motion is read off the person's own
footage (identity.shapes.footage_amplitude): the model's 1 becomes the opening they
reach, in the renderer's units, and the learned motion moves as far as they do."""

from __future__ import annotations

import numpy as np

from facetalk.identity.shapes import MIN_AMPLITUDE_FRAMES, footage_amplitude, gap_and_width
from facetalk.motion.learned import OPEN_GAIN, gains
from facetalk.render.mouth_shape import neutral_from, shape_canonical
from facetalk.types import MOUTH_PARAMS

from .retrieval_fixtures import talking_clip

OPEN = MOUTH_PARAMS.index("open")


def _wider(landmarks: np.ndarray, factor: float) -> np.ndarray:
    """The same frames with the lower lip and jaw dropped factor times as far from the
    upper lip (a person who opens wider for the same words)."""
    out = landmarks.copy()
    lower = [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 64, 65, 66, 67]
    top = out[:, [61, 62, 63], 1].mean(axis=1, keepdims=True)
    out[:, lower, 1] = top + factor * (out[:, lower, 1] - top)
    return out


def test_the_models_one_is_the_persons_own_wide_opening(media):
    clip = talking_clip(media)
    lm = np.asarray(clip.bank.landmarks, np.float64)  # canonical points of 150 real frames of the person
    neutral = neutral_from(clip.reference_lm)
    amp = footage_amplitude(lm, neutral)
    assert amp is not None
    # the renderer's shape at the model's 1 opens as far as the person's 95th percentile does
    vec = np.zeros(len(MOUTH_PARAMS))
    vec[OPEN] = amp[0]
    gap_at_one = gap_and_width(shape_canonical(neutral, vec))[0]
    gaps = gap_and_width(lm)[0]
    assert abs(gap_at_one - np.percentile(gaps, 95)) < 0.2 * np.percentile(gaps, 95)
    # and it is what the learned motion uses for this person
    assert gains(None, amp)[0] == np.clip(amp[0], 0.25 * OPEN_GAIN, 2.0 * OPEN_GAIN)


def test_a_person_who_opens_wider_gets_a_larger_amplitude_and_short_footage_none(media):
    clip = talking_clip(media)
    lm = np.asarray(clip.bank.landmarks, np.float64)
    neutral = neutral_from(clip.reference_lm)
    own = footage_amplitude(lm, neutral)
    wider = footage_amplitude(_wider(lm, 1.5), neutral)
    assert wider[0] > 1.2 * own[0]
    assert footage_amplitude(lm[: MIN_AMPLITUDE_FRAMES - 1], neutral) is None
    gone = lm.copy()
    gone[MIN_AMPLITUDE_FRAMES // 2:] = np.nan  # frames without a face do not count
    assert footage_amplitude(gone, neutral) is None
