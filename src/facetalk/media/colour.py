"""RGB to the YUV the encoder wants, fast: BT.709, limited range, 4:2:0.

FFmpeg's swscale takes ~13 ms to convert one 1280x720 frame on this class of machine,
as long as x264 takes to encode it. The same conversion as two small matrix products
in OpenCV (luma at full size, chroma from a 2x2-averaged copy) takes ~2 ms.
"""

from __future__ import annotations

import cv2
import numpy as np

KR, KB = 0.2126, 0.0722  # BT.709 luma weights of red and blue
KG = 1.0 - KR - KB

# rows: Y, Cb, Cr from 8-bit R, G, B; last column: the offset (limited range 16-235/240)
_Y = np.array([[KR, KG, KB, 0.0]]) * (219 / 255) + np.array([[0, 0, 0, 16.0]])
_CB = np.array([-KR, -KG, 1 - KB, 0.0]) * (224 / 255 / (2 * (1 - KB))) + np.array([0, 0, 0, 128.0])
_CR = np.array([1 - KR, -KG, -KB, 0.0]) * (224 / 255 / (2 * (1 - KR))) + np.array([0, 0, 0, 128.0])
_CBCR = np.stack([_CB, _CR])


def rgb_to_yuv420(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB, H and W even -> (H * 3 // 2, W) uint8: the Y plane, then the
    Cb and Cr planes (H/2 x W/2 each) laid out flat, as PyAV's yuv420p frames take them."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sides, got {w}x{h}")
    y = cv2.transform(rgb, _Y)  # (h, w) uint8, rounded and saturated
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # 2x2 means
    cbcr = cv2.transform(small, _CBCR)  # (h/2, w/2, 2)
    out = np.empty(h * w * 3 // 2, np.uint8)
    out[: h * w] = y.reshape(-1)
    out[h * w : h * w * 5 // 4] = cbcr[..., 0].reshape(-1)
    out[h * w * 5 // 4 :] = cbcr[..., 1].reshape(-1)
    return out.reshape(h * 3 // 2, w)


def _to_rgb_matrix(kr: float, kb: float, full_range: bool) -> np.ndarray:
    """3x4 matrix taking [Y, Cb, Cr, 1] (8-bit) to R, G, B (8-bit)."""
    kg = 1.0 - kr - kb
    ys, cs, y0 = (255 / 255, 255 / 255, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    # R = Y' + 2(1-Kr) Pr;  B = Y' + 2(1-Kb) Pb;  G = Y' - (2Kb(1-Kb) Pb + 2Kr(1-Kr) Pr) / Kg
    rows = np.array([
        [ys, 0.0, 2 * (1 - kr) * cs],
        [ys, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs],
        [ys, 2 * (1 - kb) * cs, 0.0],
    ])
    offset = -rows @ np.array([y0, 128.0, 128.0])
    return np.hstack([rows, offset[:, None]])


# Which matrix a decoded frame was made with, by FFmpeg's colour-space tag.
_BT709_TAGS = {1}  # AVCOL_SPC_BT709
_BT601_TAGS = {5, 6}  # BT470BG, SMPTE170M


# 3x4 matrices from 8-bit [Y, Cb, Cr, 1] to RGB, by (BT.709?, full range?)
_TO_RGB = {(b, f): _to_rgb_matrix(KR, KB, f) if b else _to_rgb_matrix(0.299, 0.114, f)
           for b in (False, True) for f in (False, True)}


def yuv420_to_rgb(
    planes: np.ndarray, width: int, height: int, colorspace: int, full_range: bool, tagged_height: int | None = None
) -> np.ndarray:
    """8-bit 4:2:0 planes laid out flat (as PyAV's to_ndarray gives them) -> (H, W, 3)
    uint8 RGB, with the matrix the frame is tagged with. An untagged frame is taken as
    BT.709 from 720 lines up and BT.601 below, as players do (tagged_height: the lines of
    the video as coded, when these planes were resized from it).

    BT.601 limited range is OpenCV's own I420 converter. Other codes: chroma repeated
    over its 2x2 block (as that converter does), the three planes interleaved, and one
    3x4 matrix product (cv2.transform, rounding once): within a level of the exact
    result, and faster than re-expressing the code in BT.601 for OpenCV (5.1 -> 4.0 ms
    at 1080p) or swscale (~13 ms at 720p).
    """
    n = width * height
    flat = planes.reshape(-1)
    coded = height if tagged_height is None else tagged_height
    bt709 = colorspace in _BT709_TAGS or (colorspace not in _BT601_TAGS and coded >= 720)
    if not bt709 and not full_range:
        return cv2.cvtColor(flat[: n * 3 // 2].reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420)
    y = flat[:n].reshape(height, width)
    cb = flat[n : n * 5 // 4].reshape(height // 2, width // 2)
    cr = flat[n * 5 // 4 : n * 3 // 2].reshape(height // 2, width // 2)
    chroma = cv2.resize(cv2.merge([cb, cr]), (width, height), interpolation=cv2.INTER_NEAREST)
    ycc = cv2.merge([y, chroma[..., 0], chroma[..., 1]])
    return cv2.transform(ycc, _TO_RGB[(bt709, full_range)])
