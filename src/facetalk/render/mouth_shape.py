"""Target landmarks for a mouth vector, and a closed neutral mouth from any face.

All shape rules work in canonical face space (eye midpoint at the origin, inter-ocular
distance 1, y down), so the same mouth vector gives the same shape on every face size;
the result is mapped back through the frame's own similarity transform, which keeps the
head motion of a video.
"""

from __future__ import annotations

import numpy as np

from ..face.geometry import apply, invert, to_canonical
from ..types import MOUTH_PARAMS

# Jaw drop at open=1, canonical units; the inner-lip gap (mouth_openness) ends up about
# the same. Conversational speech opens the lips 10-18 mm at its widest vowels against
# ~63 mm between the eyes, i.e. 0.16-0.28 IOD: a bigger drop (0.4 was tried) reads as
# shouting and, in eval on real footage, opened ~3x wider than the people filmed.
JAW_DROP = 0.28
# Rounding: the corners come in by this share of the mouth's half width at round=1, the
# inner corners (60, 64) and the inner points beside the centre by these multiples of it.
ROUND_IN = 0.42
ROUND_INNER = 1.6
ROUND_INNER_MID = 1.2
# Share of the jaw drop that each jaw contour point 4..12 follows: the chin moves most,
# the points near the ear hardly (the jaw rotates about the joint in front of the ear).
JAW_FOLLOW = np.array([0.18, 0.45, 0.75, 0.93, 1.0, 0.93, 0.75, 0.45, 0.18])
# Even closed lips keep a hairline between their target points: it keeps the warp from
# mapping one target point to two source points (a fold). The lip layer draws over it
# (the lips meet; see hairline).
MIN_GAP = 0.012


def hairline(gap):
    """The part of an inner-lip gap (canonical units, scalar or array) that is the closed
    lips' hairline, not an opening: all of it up to MIN_GAP, none from twice MIN_GAP (so
    the drawn opening, gap - hairline(gap), grows smoothly from 0)."""
    g = np.maximum(gap, 0.0)
    return np.minimum(g, MIN_GAP * np.clip(2.0 - g / MIN_GAP, 0.0, 1.0))


UPPER_OUTER = [49, 50, 51, 52, 53]
UPPER_INNER = [61, 62, 63]
LOWER_OUTER = [55, 56, 57, 58, 59]
LOWER_INNER = [65, 66, 67]
CORNERS = [48, 54, 60, 64]


def _params(mouth: np.ndarray) -> dict[str, float]:
    vec = np.clip(np.asarray(mouth, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if vec.size != len(MOUTH_PARAMS):
        raise ValueError(f"mouth vector must have {len(MOUTH_PARAMS)} values, got {vec.size}")
    return dict(zip(MOUTH_PARAMS, vec.tolist()))


def _inner_gap(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap profile of the inner lips: (x positions, vertical gaps), both (5,), corners 0."""
    xs = np.array([c[60, 0], (c[61, 0] + c[67, 0]) / 2, (c[62, 0] + c[66, 0]) / 2,
                   (c[63, 0] + c[65, 0]) / 2, c[64, 0]])
    gaps = np.array([0.0, c[67, 1] - c[61, 1], c[66, 1] - c[62, 1], c[65, 1] - c[63, 1], 0.0])
    order = np.argsort(xs)
    return xs[order], np.maximum(gaps[order], 0.0)


def neutral_from(landmarks: np.ndarray) -> np.ndarray:
    """Closed neutral mouth of a face, in canonical space.

    landmarks: (68, 2) image points of a face whose mouth may be open (smiling with
    teeth, talking). Returns (68, 2) float64 canonical points where the inner lips meet
    at their midline: the lower lip and the jaw rise by most of the opening (it is the
    jaw that opened it) and the upper lip comes down by the rest.
    """
    c = apply(to_canonical(landmarks), landmarks)
    xs, gaps = _inner_gap(c)
    if gaps.max() <= 1e-6:
        return c
    gap_at = lambda idx: np.interp(c[idx, 0], xs, gaps)  # noqa: E731
    lower_share = 0.7
    for i in LOWER_INNER + LOWER_OUTER:
        c[i, 1] -= lower_share * gap_at(i)
    for i in UPPER_INNER:
        c[i, 1] += (1 - lower_share) * gap_at(i)
    for i in UPPER_OUTER:
        c[i, 1] += 0.5 * (1 - lower_share) * gap_at(i)
    centre_gap = float(np.interp((c[48, 0] + c[54, 0]) / 2, xs, gaps))
    for k, i in enumerate(range(4, 13)):
        c[i, 1] -= lower_share * centre_gap * JAW_FOLLOW[k]
    # inner lips meet exactly on their common midline
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        mid = (c[up, 1] + c[lo, 1]) / 2
        c[up, 1] = c[lo, 1] = mid
    return c


# A relaxed closed mouth (canonical units, measured on the shared portraits): corners
# about level with the lip seam (dlib's 48/54 sit up to ~0.05 above it at rest, 0.08-0.14
# in a smile) and a width up to ~0.9 IOD (1.0-1.25 in a smile).
REST_CORNER_LIFT = 0.02
SMILE_LIFT = (0.05, 0.10)  # corner lift where a smile starts to count, and where it is full
REST_WIDTH = 0.85


def smile_amount(neutral: np.ndarray) -> float:
    """How much a closed canonical mouth (neutral_from) smiles, 0 (at rest) to 1: from how
    far its corners sit above the seam's centre."""
    c = np.asarray(neutral, dtype=np.float64)
    lift = c[62, 1] - 0.5 * (c[48, 1] + c[54, 1])
    return float(np.clip((lift - SMILE_LIFT[0]) / (SMILE_LIFT[1] - SMILE_LIFT[0]), 0.0, 1.0))


def relax_expression(neutral: np.ndarray) -> np.ndarray:
    """A closed canonical mouth brought to rest: a smile's corners come down to about the
    seam's level and in towards a resting width, the lips between following smoothly
    (by the square of their distance from the centre). A mouth at rest is returned as it
    is. neutral: (68, 2) canonical (neutral_from); returns a new (68, 2) array."""
    c = np.array(neutral, dtype=np.float64, copy=True)
    s = smile_amount(c)
    if s <= 0.0:
        return c
    mid = 0.5 * (c[48, 0] + c[54, 0])
    half = max(0.5 * (c[54, 0] - c[48, 0]), 1e-3)
    width = 2 * half
    new_width = width - s * float(np.clip(width - REST_WIDTH, 0.0, 0.3))
    mouth = np.arange(48, 68)
    u = (c[mouth, 0] - mid) / half  # -1 left corner, +1 right corner
    seam = c[62, 1]
    drop_l = s * max(seam - REST_CORNER_LIFT - c[48, 1], 0.0)
    drop_r = s * max(seam - REST_CORNER_LIFT - c[54, 1], 0.0)
    w = np.clip(np.abs(u), 0.0, 1.0) ** 2
    c[mouth, 1] += w * np.where(u < 0, drop_l, drop_r)
    c[mouth, 0] = mid + (c[mouth, 0] - mid) * (new_width / width)
    return c


def _profile(x: np.ndarray, mid: float, half: float) -> np.ndarray:
    """1 at the mouth centre, 0 at the corners, smooth (cosine) between. x: (n,)."""
    u = np.clip((x - mid) / max(half, 1e-6), -1.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * u)


def shape_canonical(neutral: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Deform the mouth and jaw points (4..12, 48..67) of a canonical neutral face.

    neutral: (68, 2) canonical points with a closed mouth; mouth: (len(MOUTH_PARAMS),).
    Returns (68, 2) canonical points.
    """
    p = _params(mouth)
    c = np.array(neutral, dtype=np.float64, copy=True)
    mid = (c[48, 0] + c[54, 0]) / 2
    half = max((c[54, 0] - c[48, 0]) / 2, 0.2)
    u = np.clip((c[:, 0] - mid) / half, -1.2, 1.2)  # -1 left corner, +1 right corner
    prof = _profile(c[:, 0], mid, half * 1.05)
    dx = np.zeros(68)
    dy = np.zeros(68)

    # open: the jaw drops; the lower lip follows it, most at the centre; corners go a
    # little down and in; the upper inner lip lifts slightly off the teeth.
    drop = JAW_DROP * p["open"]
    for i in LOWER_OUTER + LOWER_INNER:
        dy[i] += drop * (0.45 + 0.55 * prof[i])
    for i in CORNERS:
        dy[i] += 0.22 * drop
        dx[i] -= 0.10 * drop * np.sign(u[i])
    for i in UPPER_INNER:
        dy[i] -= 0.08 * drop * prof[i]
    for i in UPPER_OUTER:
        dy[i] -= 0.02 * drop * prof[i]
    for k, i in enumerate(range(4, 13)):
        dy[i] += drop * 1.05 * JAW_FOLLOW[k]

    # wide: corners out and slightly up, lips thin a little.
    wide = p["wide"] * (1 - 0.6 * p["round"])
    for i in range(48, 68):
        dx[i] += 0.10 * wide * u[i]
        dy[i] -= 0.035 * wide * abs(u[i]) ** 2
    for i in UPPER_OUTER:
        dy[i] += 0.012 * wide * prof[i]
    for i in LOWER_OUTER:
        dy[i] -= 0.015 * wide * prof[i]

    # round: corners drawn in (an "oo" mouth is ~60 % of its resting width), the lips
    # pushed forward, which from the front shows as fuller lips (the outer edges move
    # out), and the opening drawn together into a small round hole: the inner corners
    # come in further than the outer ones, so the lips are thick at the sides.
    rnd = p["round"]
    for i in range(48, 68):
        k = ROUND_INNER if i in (60, 64) else (ROUND_INNER_MID if i in (61, 63, 65, 67) else 1.0)
        dx[i] -= ROUND_IN * rnd * half * u[i] * k
    for i in UPPER_OUTER:
        dy[i] -= 0.045 * rnd * prof[i]
    for i in LOWER_OUTER:
        dy[i] += 0.055 * rnd * prof[i]
    for i in (48, 54):  # the corners come a little forward and down with the pucker
        dy[i] += 0.01 * rnd
    for i in UPPER_INNER:
        dy[i] -= 0.025 * rnd * (0.5 + 0.5 * prof[i])
    for i in LOWER_INNER:
        dy[i] += 0.035 * rnd * (0.5 + 0.5 * prof[i])

    # upper: the upper lip rises and shows the upper teeth.
    up = p["upper"]
    for i in UPPER_OUTER:
        dy[i] -= 0.045 * up * (0.5 + 0.5 * prof[i])
    for i in UPPER_INNER:
        dy[i] -= 0.06 * up * (0.5 + 0.5 * prof[i])

    c[:, 0] += dx
    c[:, 1] += dy

    # lower: the lower lip comes up and tucks under the upper teeth (F, V); it overrides
    # the jaw for the lip only, so the upper teeth rest on it.
    lo = p["lower"]
    if lo > 0:
        upper_edge = {67: 61, 66: 62, 65: 63}
        for i, j in upper_edge.items():
            tuck = c[j, 1] + 0.05 * (0.4 + 0.6 * prof[i])
            c[i, 1] = (1 - lo) * c[i, 1] + lo * min(c[i, 1], tuck)
        for i, j in ((55, 65), (56, 65), (57, 66), (58, 67), (59, 67)):
            thickness = max(neutral[i, 1] - neutral[j, 1], 0.05)
            target = c[j, 1] + 0.85 * thickness
            c[i, 1] = (1 - lo) * c[i, 1] + lo * min(c[i, 1], target)

    # keep the lips from crossing: each lower inner point stays below its upper partner,
    # each outer lip outside its inner lip.
    for up_i, lo_i in ((61, 67), (62, 66), (63, 65)):
        c[lo_i, 1] = max(c[lo_i, 1], c[up_i, 1] + MIN_GAP)
    for out_i, in_i in ((50, 61), (51, 62), (52, 63)):
        c[out_i, 1] = min(c[out_i, 1], c[in_i, 1] - 0.01)
    for out_i, in_i in ((58, 67), (57, 66), (56, 65)):
        c[out_i, 1] = max(c[out_i, 1], c[in_i, 1] + 0.01)
    return c


def mouth_geometry(
    landmarks: np.ndarray, neutral_canon: np.ndarray, mouth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed and shaped mouth of a frame in its canonical space.

    landmarks: (68, 2) frame points; neutral_canon: (68, 2) canonical neutral face;
    mouth: (len(MOUTH_PARAMS),). Returns (closed, shaped, to_canon): closed (68, 2)
    canonical points with the person's neutral closed mouth placed on this frame (where
    the teeth sit: they are fixed to the skull), shaped (68, 2) the same deformed by the
    mouth vector, and to_canon the 2x3 frame-to-canonical similarity.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    to_c = to_canonical(lm)
    closed = neutral_from(lm)
    neutral = np.asarray(neutral_canon, dtype=np.float64)
    # The reference mouth may sit a little off this frame's (head turned, landmark
    # jitter): move it so its upper lip lies where this frame's upper lip is.
    # (the upper lip without its corners, which a relaxed smile has moved: relax_expression)
    shift = closed[49:54].mean(axis=0) - neutral[49:54].mean(axis=0)
    closed[48:68] = neutral[48:68] + shift
    return closed, shape_canonical(closed, mouth), to_c


MOVED = list(range(4, 13)) + list(range(48, 68))  # points a mouth vector may move


def target_landmarks(landmarks: np.ndarray, neutral_canon: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Landmarks a frame should show for a mouth vector.

    landmarks: (68, 2) the frame's landmarks (any head pose and scale);
    neutral_canon: (68, 2) the person's closed neutral face in canonical space
    (neutral_from of the reference); mouth: (len(MOUTH_PARAMS),) in [0, 1].
    Returns (68, 2) float32 frame points: the mouth (48..67) from the neutral mouth,
    deformed, and the jaw (4..12) from the frame's own closed jaw plus the jaw drop;
    every other point as in the frame.
    """
    _, shaped, to_c = mouth_geometry(landmarks, neutral_canon, mouth)
    out = np.array(landmarks, dtype=np.float64, copy=True)
    out[MOVED] = apply(invert(to_c), shaped[MOVED])
    return out.astype(np.float32)
