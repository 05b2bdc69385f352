"""Output geometry: which part of the input frame becomes the output, at what size."""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import FacetalkError

MAX_SIDE = 1920  # default cap on the long side of the output


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """'1280x720' -> (1280, 720); '720' -> 720 (the long side); None -> None."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
    elif re.fullmatch(r"\s*\d+\s*", text):
        w = h = int(text)
    else:
        raise FacetalkError(f"--size '{text}' is not WIDTHxHEIGHT (1280x720) or a long side (720)")
    if not (16 <= w <= 7680 and 16 <= h <= 7680):
        raise FacetalkError(f"--size '{text}' is out of range: each side must be 16 to 7680 pixels")
    return (w, h) if m else w


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


@dataclass(frozen=True)
class Framing:
    """Crop (x0, y0, x1, y1) of the source, then resize to (width, height)."""

    crop: tuple[int, int, int, int]
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output."""
        return self.width, self.height

    def apply(self, frame: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        part = frame[y0:y1, x0:x1]
        if part.shape[1] == self.width and part.shape[0] == self.height:
            return np.ascontiguousarray(part)
        shrinking = part.shape[1] > self.width
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        return cv2.resize(part, (self.width, self.height), interpolation=interp)

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        """Source pixel coordinates (..., 2) -> coordinates in the framed image (pixel
        centres map to pixel centres, as cv2.resize samples them)."""
        x0, y0, x1, y1 = self.crop
        scale = np.array([self.width / (x1 - x0), self.height / (y1 - y0)])
        return ((np.asarray(pts, dtype=np.float64) - (x0, y0) + 0.5) * scale - 0.5).astype(np.float32)


def plan_framing(
    src_w: int,
    src_h: int,
    size: tuple[int, int] | int | None,
    centre: tuple[float, float] | None = None,
    max_side: int = MAX_SIDE,
) -> Framing:
    """Decide the output frame.

    - None: the input's size, capped at max_side on the long side;
    - an int: that long side, aspect kept;
    - (w, h): exactly that size; when the aspect differs from the input's, crop to cover,
      centred on `centre` (the face) so the person stays in view.
    Sides are made even, as H.264 in yuv420p requires.
    """
    crop = (0, 0, src_w, src_h)
    if size is None or isinstance(size, int):
        long_side = max(src_w, src_h)
        target = min(long_side, max_side) if size is None else size
        scale = target / long_side
        return Framing(crop, _even(src_w * scale), _even(src_h * scale))
    w, h = _even(size[0]), _even(size[1])
    src_aspect, dst_aspect = src_w / src_h, w / h
    cx, cy = centre if centre is not None else (src_w / 2, src_h / 2)
    if abs(src_aspect - dst_aspect) > 1e-3:
        if src_aspect > dst_aspect:  # source wider: cut the sides
            cw, ch = int(round(src_h * dst_aspect)), src_h
        else:  # source taller: cut top and bottom
            cw, ch = src_w, int(round(src_w / dst_aspect))
        x0 = int(np.clip(round(cx - cw / 2), 0, src_w - cw))
        y0 = int(np.clip(round(cy - ch / 2), 0, src_h - ch))
        crop = (x0, y0, x0 + cw, y0 + ch)
    return Framing(crop, w, h)
