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


def _recode(bt709: bool, full_range: bool) -> np.ndarray | None:
    """3x4 affine map of 8-bit [Y, Cb, Cr, 1] coded with the tagged matrix and range to
    the BT.601 limited-range code of the same colour (what OpenCV's I420 converter reads),
    or None when they are the same code."""
    if not bt709 and not full_range:
        return None
    src = _to_rgb_matrix(KR, KB, full_range) if bt709 else _to_rgb_matrix(0.299, 0.114, full_range)
    dst = _to_rgb_matrix(0.299, 0.114, False)
    inv = np.linalg.inv(dst[:, :3])
    return np.hstack([inv @ src[:, :3], (inv @ (src[:, 3] - dst[:, 3]))[:, None]])


_RECODES = {(b, f): _recode(b, f) for b in (False, True) for f in (False, True)}


def yuv420_to_rgb(planes: np.ndarray, width: int, height: int, colorspace: int, full_range: bool) -> np.ndarray:
    """8-bit 4:2:0 planes laid out flat (as PyAV's to_ndarray gives them) -> (H, W, 3)
    uint8 RGB, with the matrix the frame is tagged with. An untagged frame is taken as
    BT.709 from 720 lines up and BT.601 below, as players do.

    OpenCV converts (and interleaves, the slow part in numpy) from BT.601 limited range
    only, so other codes are first re-expressed in it. That map never mixes luma into
    chroma, so chroma is recoded at half size; luma gets a chroma term upsampled the way
    OpenCV's converter uses chroma (each sample for its 2x2 block).
    """
    n = width * height
    flat = planes.reshape(-1)
    bt709 = colorspace in _BT709_TAGS or (colorspace not in _BT601_TAGS and height >= 720)
    recode = _RECODES[(bt709, full_range)]
    if recode is not None:
        r = [[float(v) for v in row] for row in recode]  # Python floats keep OpenCV in float32
        y = flat[:n].reshape(height, width)
        cb = flat[n : n * 5 // 4].reshape(height // 2, width // 2)
        cr = flat[n * 5 // 4 : n * 3 // 2].reshape(height // 2, width // 2)
        # luma: its own scale and offset plus a small chroma term (rounded to whole levels)
        term = cv2.addWeighted(cb, r[0][1], cr, r[0][2], r[0][3], dtype=cv2.CV_16S)
        term = cv2.resize(term, (width, height), interpolation=cv2.INTER_NEAREST)
        out = np.empty(n * 3 // 2, np.uint8)
        out[:n] = cv2.addWeighted(y.astype(np.int16), r[0][0], term, 1.0, 0.0, dtype=cv2.CV_8U).reshape(-1)
        # chroma depends on chroma alone, at half size; 8-bit out rounds and saturates
        out[n : n * 5 // 4] = cv2.addWeighted(cb, r[1][1], cr, r[1][2], r[1][3], dtype=cv2.CV_8U).reshape(-1)
        out[n * 5 // 4 :] = cv2.addWeighted(cb, r[2][1], cr, r[2][2], r[2][3], dtype=cv2.CV_8U).reshape(-1)
        flat = out
    return cv2.cvtColor(flat.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420)
