"""Swap one face on one frame: warp, colour, mask, blend."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face import geometry as geo
from . import mesh
from .blend import feather_blend, poisson_blend
from .colour import Transfer, apply_lut
from .mask import face_mask
from .source import SourceFace
from .warp import warp_face

MIN_IOD = 6.0  # px: smaller faces are left as they are (nothing recognisable to swap)
WORK_SCALE = 0.8  # a face more than 1/0.8 times the source level's size is swapped at the level's scale


@dataclass(frozen=True)
class SwapStyle:
    """How a face is put in: mask padding and feather (fractions of the face width) and
    the blend ("feather" or "poisson")."""

    mask_padding: float = 0.0
    mask_blur: float = 0.08
    blend: str = "feather"


def swap_face(
    frame: np.ndarray, landmarks: np.ndarray, source: SourceFace, lut: Transfer | None, style: SwapStyle,
    level: int | None = None,
) -> bool:
    """Replace the face with (68, 2) landmarks in frame (H, W, 3) uint8, in place, by
    source's face; lut: the colour transfer for the warped face (colour.transfer_lut) or
    None; level: which of source.levels to warp from (None: by the face's size). Returns False when the face was too small or off the frame (left unchanged)."""
    lm = np.asarray(landmarks, np.float64)
    iod = geo.interocular(lm)
    if not np.isfinite(iod) or iod < MIN_IOD:
        return False
    pts = mesh.with_forehead(lm)
    x0, y0, x1, y1 = geo.bbox(pts, pad=0.02, shape=frame.shape)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return False
    box = (x0, y0, x1, y1)
    level = source.level_for(iod) if level is None else source.levels[level]
    w, h = x1 - x0, y1 - y0
    # a face larger than the source's finest level gains no detail from being warped,
    # coloured and masked at full size: that is done at the source's scale and the result
    # upsampled (a face 280 px between the eyes: 17 -> 8 ms a frame)
    scale = level.iod / iod
    scaled = scale < WORK_SCALE
    if scaled:
        sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
        sx, sy = sw / w, sh / h
        work_pts = (pts - (x0, y0) + 0.5) * (sx, sy) - 0.5  # pixel centres map as cv2.resize maps them
        work_box, work_iod = (0, 0, sw, sh), iod * min(sx, sy)
    else:
        work_pts, work_box, work_iod = pts, box, iod
    step = 4 if work_iod >= 160 else 2 if work_iod >= 40 else 1  # the field is piecewise affine: coarse grids suffice
    warped = warp_face(level.image, level.points, work_pts, source.triangles, work_box, step)
    face = apply_lut(np.ascontiguousarray(warped[..., :3]), lut)
    mask = face_mask(work_pts, work_box, style.mask_padding, style.mask_blur)
    mask *= warped[..., 3].astype(np.float32) * np.float32(1 / 255)
    if scaled:
        face = cv2.resize(face, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    if style.blend == "poisson":
        poisson_blend(frame, face, mask, box)
    else:
        feather_blend(frame, face, mask, box)
    return True
