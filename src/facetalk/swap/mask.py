"""Where the swapped face shows: the mesh outline, shrunk and feathered, minus the
target's open mouth.

The outline runs along the jaw and the forehead arc, so hair and background stay the
target's. It is pulled inwards by the padding plus the feather width before blurring,
so the feathered edge ends at the outline instead of spilling past the jaw.
The inner-lip polygon of the target is cut out: its own teeth and tongue show, and
they move with its speech.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..face import geometry as geo
from . import mesh

# How much of the forehead arc (mesh.with_forehead) the mask shows, from the brows up. The
# warp uses the whole arc (the brow ridge moves with the brows); the mask stops lower so a
# source's hairline, fringe or hat never reaches the target, the way most classical
# swappers cut just above the brows.
FOREHEAD_SHOWN = np.array([0.3, 0.35, 0.45, 0.6, 0.75, 0.75, 0.6, 0.45, 0.35, 0.3])
# How far the jaw's part of the outline is pulled in towards the nose, in face widths: the
# target's own jaw edge shows instead of the source's (a beard's or a smile's edges by the
# jaw line are where dlib's jaw points caught on a swapped face: measured, they carried
# most of its extra landmark jitter).
JAW_INSET = 0.03


def face_size(points: np.ndarray) -> float:
    """Width of the face: jaw side to jaw side (points 0 and 16), px."""
    return float(np.linalg.norm(points[16] - points[0]))


def _inset(poly: np.ndarray, distance: float) -> np.ndarray:
    """Points of a convex polygon moved `distance` px towards its centroid."""
    centre = poly.mean(axis=0)
    d = poly - centre
    n = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    return centre + d * np.maximum(n - distance, 0.05 * n) / n


def mask_outline(points: np.ndarray, forehead: float | np.ndarray = FOREHEAD_SHOWN) -> np.ndarray:
    """The outline (len(mesh.OUTLINE), 2) of the region shown: the jaw, then the forehead
    arc lowered to `forehead` of its height above the brows (a number, or one per brow
    point)."""
    pts = np.asarray(points, np.float64)
    brows = pts[list(mesh.BROW_POINTS)]
    top = brows + np.reshape(forehead, (-1, 1)) * (pts[68:] - brows)
    jaw = pts[:17]
    if JAW_INSET > 0:
        d = pts[30] - jaw
        jaw = jaw + d * np.minimum(JAW_INSET * face_size(pts) / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6), 0.5)
    return np.concatenate([jaw, top[::-1]])


def face_mask(
    points: np.ndarray, box: tuple[int, int, int, int], padding: float, blur: float, mouth: bool = True,
    forehead: float | np.ndarray = FOREHEAD_SHOWN,
) -> np.ndarray:
    """(h, w) float32 mask in [0, 1] over box (x0, y0, x1, y1) for target mesh points.

    padding: fraction of the face width the outline is pulled in by; blur: feather
    width as a fraction of the face width; mouth: cut out the inner-lip polygon.
    Exactly 0 on and outside the outline.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    pts = np.asarray(points, np.float64) - (x0, y0)
    size = face_size(pts)
    feather = max(1.0, blur * size)
    # a smooth mask: drawn at a coarser scale when the feather is wide, then upsampled
    step = int(np.clip(feather // 6, 1, 4))
    gh, gw = -(-h // step), -(-w // step)
    off = (step - 1) / 2
    outline = cv2.convexHull(mask_outline(pts, forehead).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    inner = _inset(outline, padding * size + feather / 2)

    def grid(p: np.ndarray) -> np.ndarray:
        return np.round((p - off) / step * 16).astype(np.int32)

    mask = np.zeros((gh, gw), np.float32)
    cv2.fillConvexPoly(mask, grid(inner), 1.0, cv2.LINE_AA, 4)
    sigma = feather / 4 / step
    if sigma > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    hard = np.zeros((gh, gw), np.float32)
    cv2.fillConvexPoly(hard, grid(outline), 1.0, cv2.LINE_AA, 4)
    mask *= hard
    if mouth:
        lips = np.zeros((gh, gw), np.float32)
        cv2.fillPoly(lips, [grid(pts[geo.INNER_LIPS])], 1.0, cv2.LINE_AA, 4)
        s = 0.03 * geo.interocular(pts[:68]) / step
        if s > 0.3:
            lips = cv2.GaussianBlur(lips, (0, 0), s)
        mask *= 1.0 - lips
    if step > 1:
        mask = cv2.resize(mask, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return np.ascontiguousarray(mask)
