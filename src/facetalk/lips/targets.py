"""Mouth targets of real footage, the lip model's training labels.

Per video frame, from its 68 landmarks in canonical face space (eyes level, inter-ocular
distance 1, face.geometry): the inner-lip gap ("open") and the corner-to-corner width,
both in units of the inter-ocular distance, plus the 20 mouth points. A frame is usable
when its face was found, faces the camera, its lip fit is steady and its mouth is sharp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from ..face import geometry as geo

MAX_TURN = 0.25  # nose off the cheek midline (share of the half face width) against the clip's usual pose
MAX_YAW = 0.85  # ... or this far off in any clip: near profile, where the 68-point fit of the lips fails
MAX_LIP_JUMP = 0.06  # raw lip points off the smoothed track (IOD): a hand, a microphone, a bad fit
BLUR_RATIO = 0.35  # mouth sharpness under this share of the clip's median: motion blur, a cut
MIN_IOD_PX = 18.0  # below this the 68-point fit of the lips is mostly noise


@dataclass(frozen=True)
class MouthTargets:
    """(n,) open and width (IOD units), (n, 20, 2) canonical mouth points, (n,) usable."""

    open: np.ndarray
    width: np.ndarray
    mouth: np.ndarray
    usable: np.ndarray


def mouth_targets(landmarks: np.ndarray, raw: np.ndarray, present: np.ndarray,
                  sharpness: np.ndarray | None = None) -> MouthTargets:
    """Targets of one clip from its smoothed and raw tracked landmarks ((n, 68, 2), NaN
    where absent), which frames had the face, and optionally each frame's mouth sharpness.

    Landmarks of small faces jitter by a pixel or two from frame to frame: the tracker's
    zero-phase smoothing (face.track, lips sigma 20 ms) already removes most of it, and a
    3-frame median here removes single-frame fit spikes without moving any edge in time.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    n = len(lm)
    usable = np.asarray(present, bool) & np.isfinite(lm).all(axis=(1, 2))
    opening = np.full(n, np.nan)
    width = np.full(n, np.nan)
    mouth = np.full((n, 20, 2), np.nan, np.float32)
    idx = np.flatnonzero(usable)
    if len(idx):
        canon = np.stack([geo.apply(geo.to_canonical(lm[i]), lm[i]) for i in idx])
        opening[idx] = np.mean([canon[:, lo, 1] - canon[:, up, 1] for up, lo in geo.INNER_PAIRS], axis=0)
        width[idx] = np.linalg.norm(canon[:, 54] - canon[:, 48], axis=1)
        mouth[idx] = canon[:, 48:68]
        iod = np.array([geo.interocular(lm[i]) for i in idx])
        p = lm[idx]
        mid = (p[:, 2, 0] + p[:, 14, 0]) / 2
        half = np.maximum(np.abs(p[:, 14, 0] - p[:, 2, 0]) / 2, 1e-6)
        turn = (p[:, 30, 0] - mid) / half
        turned = (np.abs(turn - np.median(turn)) > MAX_TURN) | (np.abs(turn) > MAX_YAW)
        r = np.asarray(raw, dtype=np.float64)[idx, 48:68]
        jump = np.linalg.norm(r - p[:, 48:68], axis=2).mean(axis=1) / np.maximum(iod, 1e-6)
        bad = turned | ~(jump <= MAX_LIP_JUMP) | (iod < MIN_IOD_PX)
        if sharpness is not None:
            s = np.asarray(sharpness, dtype=np.float64)[idx]
            bad |= s < BLUR_RATIO * np.nanmedian(s)
        usable[idx[bad]] = False
    # a 3-frame median inside runs of usable frames (edges of a run keep their value)
    for a, b in _runs(usable):
        if b - a >= 3:
            opening[a:b] = median_filter(opening[a:b], size=3, mode="nearest")
            width[a:b] = median_filter(width[a:b], size=3, mode="nearest")
    opening[~usable] = np.nan
    width[~usable] = np.nan
    mouth[~usable] = np.nan
    return MouthTargets(opening.astype(np.float32), width.astype(np.float32), mouth, usable)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a (n,) bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
