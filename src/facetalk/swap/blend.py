"""Put the warped, colour-matched face into the frame: feathered alpha, or Poisson."""

from __future__ import annotations

import cv2
import numpy as np


def feather_blend(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """frame[box] = mask * face + (1 - mask) * frame[box], in place (rounded in one
    OpenCV pass; where mask is 0 the frame stays exact)."""
    x0, y0, x1, y1 = box
    dst = np.ascontiguousarray(frame[y0:y1, x0:x1])
    frame[y0:y1, x0:x1] = cv2.blendLinear(face, dst, mask, np.float32(1.0) - mask)


def poisson_blend(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Seamless (Poisson, cv2.seamlessClone) blend of face into frame[box], in place.

    The clone keeps the face's gradients and takes its colour level from the frame along
    the mask's edge, so lighting differences vanish. It runs on the box plus a margin,
    not the whole frame; the feathered mask then softens the clone's hard edge.
    """
    x0, y0, x1, y1 = box
    h_img, w_img = frame.shape[:2]
    hard = (mask > 0.5).astype(np.uint8) * 255
    ys, xs = np.nonzero(hard)
    if len(xs) < 16:
        feather_blend(frame, face, mask, box)
        return
    # seamlessClone wants the mask's bounding box strictly inside the destination
    m = 2
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    rx0, ry0 = max(0, x0 + bx0 - m), max(0, y0 + by0 - m)
    rx1, ry1 = min(w_img, x0 + bx1 + m), min(h_img, y0 + by1 + m)
    if rx0 >= x0 + bx0 - 1 or ry0 >= y0 + by0 - 1 or rx1 <= x0 + bx1 or ry1 <= y0 + by1:
        feather_blend(frame, face, mask, box)  # touches the frame's edge: no room to clone
        return
    region = np.ascontiguousarray(frame[ry0:ry1, rx0:rx1])
    src = np.ascontiguousarray(face[by0:by1, bx0:bx1])
    sub = np.ascontiguousarray(hard[by0:by1, bx0:bx1])
    centre = ((x0 + bx0 - rx0) + (bx1 - bx0) // 2, (y0 + by0 - ry0) + (by1 - by0) // 2)
    cloned = cv2.seamlessClone(src, region, sub, centre, cv2.NORMAL_CLONE)
    # the clone over the box (R holds the mask's bounding box, so the box's live part),
    # then a feathered paste of it: the mask's soft edge hides the clone's hard one
    patch = frame[y0:y1, x0:x1].copy()
    oy, ox = ry0 - y0, rx0 - x0
    py0, px0 = max(0, oy), max(0, ox)
    py1, px1 = min(y1 - y0, oy + (ry1 - ry0)), min(x1 - x0, ox + (rx1 - rx0))
    patch[py0:py1, px0:px1] = cloned[py0 - oy : py1 - oy, px0 - ox : px1 - ox]
    feather_blend(frame, patch, mask, box)
