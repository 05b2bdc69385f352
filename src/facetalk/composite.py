"""Paste a rendered Patch back into its frame through the patch's feathered mask."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import FacetalkError
from .types import Patch

COLOR_MODES = ("none", "mean", "histogram")


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels of the feather zone, where the patch meets the untouched frame."""
    return (mask > 0.02) & (mask < 0.6)


def _match_histogram(src: np.ndarray, ref: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Map each channel of src through the curve that takes its distribution over sel
    to ref's (quantile matching on 64 quantiles, monotone)."""
    q = np.linspace(0, 100, 65)
    out = np.empty_like(src)
    for ch in range(3):
        s_q = np.percentile(src[..., ch][sel], q)
        r_q = np.percentile(ref[..., ch][sel], q)
        s_q = np.maximum.accumulate(s_q + np.arange(65) * 1e-6)
        out[..., ch] = np.interp(src[..., ch], s_q, r_q)
    return out


def paste(frame: np.ndarray, patch: Patch | None, color_match: str = "mean") -> np.ndarray:
    """A new frame with patch blended in by its mask.

    frame: (H, W, 3) uint8; patch: its image (h, w, 3) uint8 and mask (h, w) float32
    placed at (x0, y0), clipped to the frame. color_match: "none", "mean" or
    "histogram": match the colour of the patch to the original pixels around its
    feather zone before blending. Pixels where the mask is 0 stay exactly as they were.
    """
    if color_match not in COLOR_MODES:
        raise FacetalkError(f"unknown colour match {color_match!r}: use one of {', '.join(COLOR_MODES)}")
    out = frame.copy()
    if patch is None:
        return out
    h_img, w_img = frame.shape[:2]
    ph, pw = patch.mask.shape
    x0, y0 = max(patch.x0, 0), max(patch.y0, 0)
    x1, y1 = min(patch.x0 + pw, w_img), min(patch.y0 + ph, h_img)
    if x1 <= x0 or y1 <= y0:
        return out
    # only the box where the mask is non-zero is blended; the rest is the frame as it was
    live = patch.mask[y0 - patch.y0 : y1 - patch.y0, x0 - patch.x0 : x1 - patch.x0] > 0
    rows, cols = np.flatnonzero(live.any(axis=1)), np.flatnonzero(live.any(axis=0))
    if not len(rows):
        return out
    x0, x1 = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
    y0, y1 = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
    sy, sx = slice(y0 - patch.y0, y1 - patch.y0), slice(x0 - patch.x0, x1 - patch.x0)
    mask = np.ascontiguousarray(patch.mask[sy, sx], dtype=np.float32)
    src = np.ascontiguousarray(patch.image[sy, sx])
    dst = np.ascontiguousarray(frame[y0:y1, x0:x1])
    if color_match != "none":
        ring = _ring(mask)
        if np.count_nonzero(ring) >= 16:
            if color_match == "mean":
                ring8 = ring.astype(np.uint8)
                offset = np.subtract(cv2.mean(dst, ring8)[:3], cv2.mean(src, ring8)[:3])
                src = cv2.add(src, (*offset.tolist(), 0.0))  # rounded, saturated
            else:
                shifted = _match_histogram(src.astype(np.float32), dst.astype(np.float32), ring)
                src = np.clip(shifted + 0.5, 0, 255).astype(np.uint8)
    # (w*src + (1-w)*dst) rounded, in one OpenCV pass; where w is 0 the frame stays exact
    out[y0:y1, x0:x1] = cv2.blendLinear(src, dst, mask, np.float32(1.0) - mask)
    return out
