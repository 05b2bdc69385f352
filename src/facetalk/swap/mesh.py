"""The face mesh a swap warps along: dlib's 68 points plus a forehead arc, and one fixed
triangulation of them per source face.

dlib stops at the eyebrows; a swap that stops there leaves the target's own forehead
and brow ridge above the source's eyes (a double brow). The forehead arc is estimated
from the brows and the face's vertical axis (perpendicular to the eye line), at a
fraction of the brow-to-nose distance: high enough to carry the brow ridge, low enough
to stay under most hairlines.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from ..face import geometry as geo

BROW_POINTS = tuple(range(17, 27))
N_POINTS = 68 + len(BROW_POINTS)
# Height of the forehead point above each brow point, in brow-to-nose-base distances:
# highest over the brows' middle, lower at the temples (the forehead is rounded).
FOREHEAD_PROFILE = np.array([0.30, 0.42, 0.50, 0.55, 0.57, 0.57, 0.55, 0.50, 0.42, 0.30])
# Outline of the swapped region: jaw left to right, then the forehead arc right to left.
OUTLINE = (*range(17), *range(68 + len(BROW_POINTS) - 1, 67, -1))
# inner-lip point -> the outer-lip point it faces (to open a template mouth)
_INNER_TO_OUTER = {60: 48, 61: 50, 62: 51, 63: 52, 64: 54, 65: 56, 66: 57, 67: 58}


def down_axis(lm: np.ndarray) -> np.ndarray:
    """Unit vector from forehead to chin: perpendicular to the eye line, image y down."""
    left, right = geo.eye_centers(lm)
    ex = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    return np.array([-ex[1], ex[0]])


def with_forehead(lm: np.ndarray) -> np.ndarray:
    """(N_POINTS, 2) float64: the 68 landmarks then a forehead point above each brow point."""
    lm = np.asarray(lm, dtype=np.float64)
    down = down_axis(lm)
    brow_mid = lm[[19, 24]].mean(axis=0)
    third = max(float((lm[33] - brow_mid) @ down), 0.3 * geo.interocular(lm))
    forehead = lm[list(BROW_POINTS)] - np.outer(FOREHEAD_PROFILE * third, down)
    return np.concatenate([lm, forehead])


def triangulate(points: np.ndarray) -> np.ndarray:
    """(t, 3) int32 triangles over N_POINTS mesh points, fixed for a face.

    Computed on a copy with the mouth opened (inner lips half way to the outer lips), so
    a closed source mouth (coincident inner-lip points) still gets lip triangles that
    follow a target's opening mouth.
    """
    pts = np.asarray(points, dtype=np.float64).copy()
    centre = pts[48:60].mean(axis=0)
    for inner, outer in _INNER_TO_OUTER.items():
        pts[inner] = centre + 0.5 * (pts[outer] - centre)
    canon = geo.apply(geo.to_canonical(pts[:68]), pts)
    tri = Delaunay(canon).simplices
    # drop slivers Delaunay adds along the outline's concave stretches
    a, b, c = canon[tri[:, 0]], canon[tri[:, 1]], canon[tri[:, 2]]
    u, v = b - a, c - a
    area = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]) / 2
    return tri[area > 1e-5].astype(np.int32)


def pose(lm: np.ndarray) -> tuple[float, float]:
    """(yaw, roll) of (68, 2) landmarks: yaw in [-1, 1] from the nose tip's place between
    the jaw's sides (0 = frontal, positive = nose towards the image's right), roll in
    degrees of the eye line."""
    lm = np.asarray(lm, dtype=np.float64)
    left, right = geo.eye_centers(lm)
    roll = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    c = geo.apply(geo.to_canonical(lm), lm)
    a, b = c[30, 0] - c[0, 0], c[16, 0] - c[30, 0]
    yaw = float((a - b) / max(a + b, 1e-6))
    return float(np.clip(yaw, -1, 1)), roll
