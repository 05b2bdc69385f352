"""Colour transfer from the source's skin to the target's lighting, stable over a video.

Both faces are measured on their skin (the face region without eyes, brows and lips)
in OpenCV's 8-bit Lab, on a small copy (a few hundred pixels suffice). The target's
statistics are smoothed over time (an exponential moving average, time constant
SMOOTH_SECONDS), so a blink or a hand passing the cheek does not make the face flicker.
A transfer is one 256-entry curve per Lab channel applied with cv2.LUT: cheap at any
face size.

Modes (--color-match): "none"; "mean" (Reinhard: match the mean and spread of each Lab
channel; the default); "histogram" (match 33 quantiles of each channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face import geometry as geo
from . import mesh

QUANTILES = np.linspace(2, 98, 33)  # the extremes are glints and shadows, not skin
STATS_IOD = 32.0  # px: inter-ocular distance of the copy the statistics are taken on
SMOOTH_SECONDS = 0.5
# Spread ratios beyond these come from a beard, make-up or a shadow, not from the light:
# lightness may stretch more than colour (a's and b's spread is mostly lips and blush).
SPREAD_LIMITS = ((0.7, 1.4), (0.9, 1.1), (0.9, 1.1))
# The lightness curve moves pixels as dark as the source's skin fully and darker ones less
# (weight (L / skin L) ** DARK_KEEP): a pale target lifted the whole face evenly, which
# turned dark eyes, brows and lashes grey (and made the face less like the source's).
DARK_KEEP = 2.0


@dataclass(frozen=True)
class ColourStats:
    """Per Lab channel: mean (3,), standard deviation (3,), quantiles (33, 3); float64."""

    mean: np.ndarray
    std: np.ndarray
    quantiles: np.ndarray

    def blend(self, other: ColourStats, weight: float) -> ColourStats:
        """(1 - weight) * self + weight * other, field by field."""
        w = float(weight)
        return ColourStats(
            (1 - w) * self.mean + w * other.mean,
            (1 - w) * self.std + w * other.std,
            (1 - w) * self.quantiles + w * other.quantiles,
        )


def skin_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 mask, 1 on the skin of a face with mesh points (N_POINTS, 2) in an
    image of shape (h, w): inside the outline pulled 15% towards its centre, without
    the eyes, brows and lips."""
    pts = np.asarray(points, dtype=np.float64)
    outline = pts[list(mesh.OUTLINE)]
    centre = outline.mean(axis=0)
    inset = centre + 0.85 * (outline - centre)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(inset * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    grow = max(1, int(round(0.12 * geo.interocular(pts[:68]))))
    holes = np.zeros_like(mask)
    for part in (geo.LEFT_EYE, geo.RIGHT_EYE, geo.OUTER_LIPS, slice(17, 22), slice(22, 27)):
        hull = cv2.convexHull(np.round(pts[part] * 16).astype(np.int32))
        cv2.fillConvexPoly(holes, hull, 1, cv2.LINE_8, 4)
    holes = cv2.dilate(holes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask & (1 - holes)


def face_stats(rgb: np.ndarray, points: np.ndarray) -> ColourStats:
    """Lab statistics of the skin of the face with mesh points (N_POINTS, 2) in rgb."""
    pts = np.asarray(points, dtype=np.float64)
    x0, y0, x1, y1 = geo.bbox(pts, pad=0.02, shape=rgb.shape)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ValueError("face region is outside the image")
    scale = min(1.0, STATS_IOD / max(geo.interocular(pts[:68]), 1e-6))
    crop = rgb[y0:y1, x0:x1]
    size = (max(4, round((x1 - x0) * scale)), max(4, round((y1 - y0) * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    local = (pts - (x0, y0) + 0.5) * (size[0] / (x1 - x0), size[1] / (y1 - y0)) - 0.5
    sel = skin_mask(local, small.shape).astype(bool)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    values = lab[sel.reshape(-1)]
    if len(values) < 16:  # a face too turned or cut off to have skin in view: use it all
        values = lab
    return ColourStats(values.mean(axis=0), values.std(axis=0) + 1e-3, np.percentile(values, QUANTILES, axis=0))


@dataclass(frozen=True)
class Transfer:
    """A colour transfer: Lab curves (1, 256, 3) uint8 for cv2.LUT, then a chroma shift
    (a, b) scaled by each pixel's lightness over the skin's (full on skin, faint on dark
    eyes, brows and hair, which an even shift would tint: brown eyes turning blue)."""

    lut: np.ndarray
    shift: tuple[float, float]
    skin_l: float


def _limit_slope(curve: np.ndarray, anchor: float, lo: float = 0.5, hi: float = 1.8) -> np.ndarray:
    """A monotone curve re-integrated with its slope kept in [lo, hi], through its value
    at anchor: quantile matching on a few hundred pixels can be steep where the target
    has a glint, which would paint blotches."""
    slope = np.clip(np.diff(curve), lo, hi)
    out = np.concatenate([[0.0], np.cumsum(slope)])
    i = int(np.clip(round(anchor), 0, 255))
    return out - out[i] + curve[i]


def transfer_lut(source: ColourStats, target: ColourStats, mode: str) -> Transfer | None:
    """The transfer taking the source's skin colour to the target's, or None for "none"."""
    if mode == "none":
        return None
    v = np.arange(256, dtype=np.float64)
    curves = np.empty((256, 3))
    shift = [0.0, 0.0]
    for ch in range(3):
        if mode == "mean":
            ratio = np.clip(target.std[ch] / source.std[ch], *SPREAD_LIMITS[ch])
            curves[:, ch] = (v - source.mean[ch]) * ratio + target.mean[ch]
        elif mode == "histogram":
            sq = np.maximum.accumulate(source.quantiles[:, ch] + np.arange(len(QUANTILES)) * 1e-3)
            tq = np.maximum.accumulate(target.quantiles[:, ch])
            curves[:, ch] = np.interp(v, sq, tq)
            # beyond the measured range, continue with the mean offset (np.interp would clamp)
            lo, hi = v < sq[0], v > sq[-1]
            curves[lo, ch] = v[lo] - sq[0] + tq[0]
            curves[hi, ch] = v[hi] - sq[-1] + tq[-1]
            curves[:, ch] = _limit_slope(curves[:, ch], source.mean[ch])
        else:
            raise ValueError(f"unknown colour mode {mode!r}")
        if ch == 0:  # lightness: full on skin, fading on darker features (see DARK_KEEP)
            weight = np.clip(v / max(source.mean[0], 1.0), 0.0, 1.0) ** DARK_KEEP
            curves[:, 0] = v + weight * (curves[:, 0] - v)
        if ch > 0:  # chroma: the curve's offset at the skin becomes the lightness-scaled shift
            shift[ch - 1] = float(np.interp(source.mean[ch], v, curves[:, ch]) - source.mean[ch])
            curves[:, ch] -= shift[ch - 1]
    lut = np.clip(np.round(curves), 0, 255).astype(np.uint8).reshape(1, 256, 3)
    return Transfer(lut=lut, shift=(shift[0], shift[1]), skin_l=float(max(target.mean[0], 1.0)))


def apply_lut(rgb: np.ndarray, transfer: Transfer | None) -> np.ndarray:
    """rgb (h, w, 3) uint8 with the transfer applied (unchanged for None)."""
    if transfer is None:
        return rgb
    lab = cv2.LUT(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab), transfer.lut)
    weight = cv2.multiply(lab[..., 0], 1.0 / transfer.skin_l, dtype=cv2.CV_32F)
    np.minimum(weight, 1.0, out=weight)
    for ch, shift in ((1, transfer.shift[0]), (2, transfer.shift[1])):
        if abs(shift) >= 0.5:
            lab[..., ch] = cv2.scaleAdd(weight, shift, lab[..., ch].astype(np.float32)).clip(0, 255).round()
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)


class StableColour:
    """The target face's skin statistics over a video, smoothed in time.

    update() is called once per frame in frame order (one thread)."""

    def __init__(self, fps: float, seconds: float = SMOOTH_SECONDS) -> None:
        self.weight = float(1 - np.exp(-1.0 / max(fps * seconds, 1e-6)))
        self.state: ColourStats | None = None

    def update(self, stats: ColourStats) -> ColourStats:
        self.state = stats if self.state is None else self.state.blend(stats, self.weight)
        return self.state
