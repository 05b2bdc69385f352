"""The visible label: a line of text in a corner, rendered once per video with Pillow's
scalable font at a size relative to the frame, then alpha-blended onto its small box in
every frame (the rest of the frame is not touched)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .options import (
    DEFAULT_LABEL_OPACITY,
    DEFAULT_LABEL_SIZE,
    DEFAULT_LABEL_TEXT,
    LABEL_CORNERS,
)

MIN_TEXT_PX = 11  # smaller than this is unreadable whatever the frame
BOX_ALPHA = 0.5  # the dark box behind the text, before opacity
SUPERSAMPLE = 2  # drawn at twice the size and reduced: smooth edges at any size


class Label:
    """The label for frames of width x height.

        label = Label("AI-generated", 1920, 1080)
        label.apply(frame)          # in place, on label.box only

    box: (x0, y0, x1, y1) of the pixels it may change. White text with a dark outline on a
    translucent dark box, so it reads on any picture; opacity scales all of it."""

    def __init__(self, text: str = DEFAULT_LABEL_TEXT, width: int = 1280, height: int = 720, *,
                 corner: str = "bottom-right", size: float = DEFAULT_LABEL_SIZE,
                 opacity: float = DEFAULT_LABEL_OPACITY) -> None:
        if corner not in LABEL_CORNERS:
            raise ValueError(f"unknown corner {corner!r}: use one of {', '.join(LABEL_CORNERS)}")
        px = max(MIN_TEXT_PX, round(size * height))
        rgb, alpha = _draw(text, px)
        alpha *= float(opacity)
        h, w = alpha.shape
        # never wider or taller than the frame (a long text on a small frame is scaled down)
        fit = min(1.0, (width - 2) / w, (height - 2) / h)
        if fit < 1.0:
            w, h = max(1, int(w * fit)), max(1, int(h * fit))
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
        margin = min(max(2, round(0.6 * px)), (width - w) // 2, (height - h) // 2)
        x0 = margin if corner.endswith("left") else width - margin - w
        y0 = margin if corner.startswith("top") else height - margin - h
        self.box = (x0, y0, x0 + w, y0 + h)
        self.rgb = np.ascontiguousarray(rgb)
        self.alpha = np.ascontiguousarray(alpha, dtype=np.float32)
        self._rest = np.float32(1.0) - self.alpha

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Blend the label onto frame (H, W, 3) uint8, in place; returns frame."""
        x0, y0, x1, y1 = self.box
        region = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = cv2.blendLinear(self.rgb, np.ascontiguousarray(region), self.alpha, self._rest)
        return frame


def _draw(text: str, px: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, alpha float32 0-1) of the label: text of height ~px on its box."""
    s = SUPERSAMPLE
    font = ImageFont.load_default(size=px * s)
    stroke = max(1, round(px * s / 14))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad_x, pad_y = round(0.45 * px * s), round(0.3 * px * s)
    w = (right - left) + 2 * pad_x
    h = (bottom - top) + 2 * pad_y
    w, h = w + (-w) % s, h + (-h) % s  # whole pixels after the reduction
    # text and its outline as coverage masks, composited over the box
    fill = Image.new("L", (w, h), 0)
    edge = Image.new("L", (w, h), 0)
    at = (pad_x - left, pad_y - top)
    ImageDraw.Draw(edge).text(at, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ImageDraw.Draw(fill).text(at, text, font=font, fill=255)
    box = Image.new("L", (w, h), 0)
    ImageDraw.Draw(box).rounded_rectangle((0, 0, w - 1, h - 1), radius=round(0.3 * px * s), fill=255)
    size = (w // s, h // s)
    text_a = np.asarray(fill.resize(size, Image.Resampling.BOX), np.float32) / 255
    edge_a = np.asarray(edge.resize(size, Image.Resampling.BOX), np.float32) / 255
    box_a = np.asarray(box.resize(size, Image.Resampling.BOX), np.float32) / 255 * BOX_ALPHA
    # layers bottom-up: box (black), outline (black, opaque), text (white)
    dark = np.maximum(box_a, edge_a)
    alpha = text_a + dark * (1 - text_a)
    white = np.divide(text_a, alpha, out=np.zeros_like(alpha), where=alpha > 1e-6)
    rgb = np.repeat(np.clip(white * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, alpha


__all__ = ["Label"]
