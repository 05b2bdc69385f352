"""Face detail without a model: an unsharp mask on luma only, inside a feathered face mask
from the 68 landmarks; strong on the mouth (teeth, lip edges), gentle on the skin.

Small differences (skin pores, sensor and codec noise) are cored out of the detail before
it is added back, so they are not amplified; only edges stronger than the noise are. The
chroma is left alone (adding the same amount to R, G and B changes luma only), and every
pixel outside the face mask stays exactly as it was.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..face import geometry

MOUTH_AMOUNT = 1.6  # unsharp gain on the lips and teeth
SKIN_AMOUNT = 0.35  # on the rest of the face
CORE = 3.0  # grey levels: detail much smaller than this is noise or pores, kept as it is
MAX_STEP = 40.0  # the most a pixel's luma may change (no bright halos on teeth)
MASK_SCALE = 4  # masks are drawn and feathered at 1/4 size, then enlarged: cheap at any face size


def face_region(lm: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box outside which enhance never changes a pixel."""
    iod = geometry.interocular(lm)
    pts = _face_outline(lm, iod)
    return geometry.bbox(pts, pad=0.0, shape=shape) if iod > 0 else (0, 0, 0, 0)


def _face_outline(lm: np.ndarray, iod: float) -> np.ndarray:
    """The jaw line and the brows raised to the forehead, grown by the feather's width."""
    lm = np.asarray(lm, dtype=np.float64)
    brows = lm[17:27].copy()
    brows[:, 1] -= 0.35 * iod
    pts = np.concatenate([lm[0:17], brows[::-1]])
    centre = pts.mean(axis=0)
    return centre + (pts - centre) * 1.06 + np.sign(pts - centre) * 0.12 * iod


class FaceDetail:
    """enhance: restore detail in the face of a frame, in place (face box only)."""

    def __init__(self, mouth: float = MOUTH_AMOUNT, skin: float = SKIN_AMOUNT, core: float = CORE) -> None:
        self.mouth, self.skin, self.core = float(mouth), float(skin), float(core)

    def amount(self, lm: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(h, w) float32 unsharp gain over box: `mouth` on the lips, `skin` on the face,
        feathered, 0 outside the face."""
        x0, y0, x1, y1 = box
        iod = geometry.interocular(lm)
        s = MASK_SCALE
        w, h = max(1, -(-(x1 - x0) // s)), max(1, -(-(y1 - y0) // s))
        origin = np.array([x0, y0], dtype=np.float64)
        face = np.zeros((h, w), np.float32)
        mouth = np.zeros((h, w), np.float32)
        outline = _face_outline(lm, iod)
        # the feather lies inside the outline, so the mask reaches 0 before the box's edge
        inner = outline.mean(axis=0) + (outline - outline.mean(axis=0)) * 0.86
        cv2.fillPoly(face, [np.round((inner - origin) / s * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        lips = np.asarray(lm, dtype=np.float64)[geometry.OUTER_LIPS]
        c = lips.mean(axis=0)
        lips = c + (lips - c) * 1.15
        cv2.fillPoly(mouth, [np.round((lips - origin) / s * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        face = cv2.GaussianBlur(face, (0, 0), max(0.5, 0.10 * iod / s))
        mouth = cv2.GaussianBlur(mouth, (0, 0), max(0.5, 0.08 * iod / s))
        gain = self.skin * face + (self.mouth - self.skin) * np.minimum(mouth, face)
        gain = cv2.resize(gain, (w * s, h * s), interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]
        gain[gain < 1e-3] = 0.0
        return gain

    def apply(self, frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """Sharpen the face of frame (H, W, 3) uint8 RGB with landmarks lm (68, 2), in
        place; returns frame. Frames with unusable landmarks are returned as they are."""
        lm = np.asarray(lm, dtype=np.float64)
        if not np.isfinite(lm).all():
            return frame
        iod = geometry.interocular(lm)
        if iod < 4:
            return frame
        box = face_region(lm, frame.shape)
        x0, y0, x1, y1 = box
        if x1 - x0 < 8 or y1 - y0 < 8:
            return frame
        crop = frame[y0:y1, x0:x1]
        luma = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
        # the detail scale follows the face: teeth and lip lines are ~1/80 of the IOD wide
        sigma = float(np.clip(iod / 80.0, 0.8, 4.0))
        detail = luma - cv2.GaussianBlur(luma, (0, 0), sigma)
        sq = cv2.multiply(detail, detail)
        # coring: detail well under `core` (noise, pores) is kept as it is, not amplified
        gain = cv2.divide(cv2.multiply(sq, self.amount(lm, box)), cv2.add(sq, self.core * self.core))
        step = np.clip(cv2.multiply(gain, detail), -MAX_STEP, MAX_STEP)
        # the same step on R, G and B: luma changes, chroma does not (rounded, saturated)
        frame[y0:y1, x0:x1] = cv2.add(crop, cv2.cvtColor(step, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)
        return frame


__all__ = ["FaceDetail", "face_region"]
