"""Geometry on 68-point landmarks: canonical alignment and mouth measures.

Canonical face space: the midpoint between the eye centres at the origin, the eyes on
the x axis, inter-ocular distance 1. Every renderer defines mouth shapes there, so a
shape means the same on a 200 px face and a 900 px face.
"""

from __future__ import annotations

import numpy as np

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
RIGHT_EYE = slice(42, 48)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
MOUTH = slice(48, 68)
# inner-lip pairs (upper, lower) facing each other across the mouth opening
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


def eye_centers(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[LEFT_EYE].mean(axis=0), lm[RIGHT_EYE].mean(axis=0)


def interocular(lm: np.ndarray) -> float:
    left, right = eye_centers(lm)
    return float(np.linalg.norm(right - left))


def to_canonical(lm: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix mapping image points to canonical face space."""
    left, right = eye_centers(lm)
    d = right - left
    dist = float(np.hypot(*d))
    if dist < 1e-6:
        raise ValueError("degenerate landmarks: eyes coincide")
    c, s = d / dist**2  # rotation by -angle, scale 1/dist
    centre = (left + right) / 2
    m = np.array([[c, s], [-s, c]], dtype=np.float64)
    return np.hstack([m, (-m @ centre)[:, None]])


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = m[:, :2]
    inv = np.linalg.inv(a)
    return np.hstack([inv, (-inv @ m[:, 2])[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (n, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def mouth_openness(lm: np.ndarray) -> float | np.ndarray:
    """Mean inner-lip gap over inter-ocular distance; works on (68,2) or (n,68,2)."""
    lm = np.asarray(lm, dtype=np.float64)
    upper = lm[..., [p[0] for p in INNER_PAIRS], :]
    lower = lm[..., [p[1] for p in INNER_PAIRS], :]
    gap = np.linalg.norm(lower - upper, axis=-1).mean(axis=-1)
    iod = np.linalg.norm(
        lm[..., RIGHT_EYE, :].mean(axis=-2) - lm[..., LEFT_EYE, :].mean(axis=-2), axis=-1
    )
    out = gap / np.maximum(iod, 1e-6)
    return float(out) if np.ndim(out) == 0 else out


def mouth_width(lm: np.ndarray) -> float | np.ndarray:
    """Distance between the mouth corners over inter-ocular distance."""
    lm = np.asarray(lm, dtype=np.float64)
    width = np.linalg.norm(lm[..., 54, :] - lm[..., 48, :], axis=-1)
    iod = np.linalg.norm(
        lm[..., RIGHT_EYE, :].mean(axis=-2) - lm[..., LEFT_EYE, :].mean(axis=-2), axis=-1
    )
    out = width / np.maximum(iod, 1e-6)
    return float(out) if np.ndim(out) == 0 else out


def bbox(pts: np.ndarray, pad: float = 0.0, shape: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around points, grown by pad times its larger side,
    clipped to an image of shape (h, w) when given."""
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    grow = pad * max(x1 - x0, y1 - y0)
    x0, y0, x1, y1 = x0 - grow, y0 - grow, x1 + grow, y1 + grow
    if shape is not None:
        h, w = shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


# Points that move with the skull but not with speech or expression much: jaw top,
# brows, nose, eyes. Used to measure head pose and landmark jitter.
RIGID_POINTS: tuple[int, ...] = (0, 1, 2, 14, 15, 16, *range(17, 48))
# Eye contour point order per eye: corner, upper, upper, corner, lower, lower.
_EYES = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))


def eye_aspect_ratio(lm: np.ndarray) -> float | np.ndarray:
    """Mean eye aspect ratio of both eyes (Soukupova & Cech 2016) on (68,2) or (n,68,2).

    Lid gap over eye width: about 0.25-0.35 when open, under ~0.15 when closed.
    """
    lm = np.asarray(lm, dtype=np.float64)
    ears = []
    for c0, u1, u2, c1, l2, l1 in _EYES:
        gap = np.linalg.norm(lm[..., u1, :] - lm[..., l1, :], axis=-1) + np.linalg.norm(
            lm[..., u2, :] - lm[..., l2, :], axis=-1
        )
        width = np.linalg.norm(lm[..., c1, :] - lm[..., c0, :], axis=-1)
        ears.append(gap / np.maximum(2 * width, 1e-6))
    out = (ears[0] + ears[1]) / 2
    return float(out) if np.ndim(out) == 0 else out


def mouth_region_box(
    lm: np.ndarray, pad: float = 0.5, shape: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around the mouth and chin, padded by pad times the
    inter-ocular distance on every side, clipped to an image of shape (h, w) when given.

    Covers the lips (48-67) and the lower jaw (5-11), which moves when the mouth opens.
    """
    lm = np.asarray(lm, dtype=np.float64)
    pts = np.concatenate([lm[MOUTH], lm[5:12]])
    grow = pad * interocular(lm)
    x0, y0 = pts.min(axis=0) - grow
    x1, y1 = pts.max(axis=0) + grow
    if shape is not None:
        h, w = shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def rigid_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (..., 2) and scale (...,) of the rigid points of (68,2) or (n,68,2) landmarks:
    their centroid and RMS distance from it. Unaffected by mouth opening and roll."""
    pts = np.asarray(lm, dtype=np.float64)[..., list(RIGID_POINTS), :]
    centre = pts.mean(axis=-2)
    scale = np.sqrt(((pts - centre[..., None, :]) ** 2).sum(axis=-1).mean(axis=-1))
    return centre, scale


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, shift) mapping (k,2) src onto
    (k,2) dst (Umeyama without reflection)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    # complex-number form: d ~ z * s with z = a + ib
    denom = (s**2).sum()
    if denom < 1e-12:
        raise ValueError("degenerate points: all coincide")
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / denom
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / denom
    m = np.array([[a, -b], [b, a]])
    return np.hstack([m, (md - m @ ms)[:, None]])


def neutral_frame_index(landmarks: np.ndarray) -> int | None:
    """Index of the frame with the mouth nearest closed and the head nearest its usual
    pose, or None when no frame has a face.

    landmarks: (n, 68, 2), NaN rows where no face. Pose deviation is the nose direction
    (27 -> 30) away from its median over the frames, in inter-ocular distances.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(lm).all(axis=(1, 2)))
    if len(idx) == 0:
        return None
    pts = lm[idx]
    openness = mouth_openness(pts)
    iod = np.linalg.norm(pts[:, 45] - pts[:, 36], axis=1)
    nose = (pts[:, 30] - pts[:, 27]) / iod[:, None]
    pose = np.linalg.norm(nose - np.median(nose, axis=0), axis=1)
    return int(idx[int(np.argmin(openness + 0.5 * pose))])
