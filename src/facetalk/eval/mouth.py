"""Checks of a rendered mouth measured on the pixels and on landmarks re-found on them
(used by tests/test_lip_seam.py and bench/bench_photo_mouth.py)."""

from __future__ import annotations

import cv2
import numpy as np

from ..face.geometry import interocular

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
MIN_IOD_PX = 120  # re-detect on faces brought at least this large (see redetect)


def redetect(models, frame: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(68, 2) float64 landmarks re-found on frame (H, W, 3) uint8 inside the face box of
    `near` (the landmarks it was rendered from: rendering does not move the face).

    dlib gives whole pixels: on a small face (the astronaut's eyes are 44 px apart) one
    pixel is 0.023 IOD, coarser than a closed mouth's 0.02 bound. A face under MIN_IOD_PX
    is therefore re-detected on the frame enlarged (cubic) by a whole factor that brings
    it there, and the points scaled back."""
    from ..face.detect import FaceBox, find_landmarks

    near = np.asarray(near, dtype=np.float64)
    k = max(1, int(np.ceil(MIN_IOD_PX / max(interocular(near), 1.0))))
    big = cv2.resize(frame, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC) if k > 1 else frame
    x0, y0 = near.min(axis=0) * k
    x1, y1 = near.max(axis=0) * k
    found = find_landmarks(models, big, FaceBox(int(x0), int(y0), int(x1), int(y1), 1.0))
    return np.asarray(found, np.float64) / k


def seam_band(shape: tuple[int, int], lm: np.ndarray, width: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """(band, lips): bool (h, w) masks of the pixels within width/2 inter-ocular distances
    of the lip seam (the midline of the (68, 2) landmarks' inner-lip lines) inside the
    outer lips, and of the outer lips' whole area."""
    h, w = shape
    iod = interocular(lm)
    lips = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lips, [np.round(lm[48:60] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    seam = (lm[[60, 61, 62, 63, 64]] + lm[[60, 67, 66, 65, 64]]) / 2
    seam = np.concatenate([lm[[48]], seam, lm[[54]]])
    band = np.zeros((h, w), np.uint8)
    cv2.polylines(band, [np.round(seam * 16).astype(np.int32)], False, 1, max(1, int(round(width * iod))), cv2.LINE_8, 4)
    return (band > 0) & (lips > 0), lips > 0


def teeth_in_seam(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(h, w) bool: teeth-bright pixels in the lip seam of frame (H, W, 3) uint8 RGB with
    its (68, 2) landmarks: brighter than the lips around them (their median luma + 0.12)
    and far paler (redness (R-G)/(R+G+B) under 0.4 of theirs; on a grey photo, brighter
    than the lips' 99th percentile + 0.05). A closed mouth drawn over a toothy photo must
    have none."""
    band, lips = seam_band(frame.shape[:2], lm)
    body = lips & ~band
    if body.sum() < 10:
        body = lips
    px = frame.astype(np.float32) / 255.0
    luma = px @ LUMA
    red = (px[..., 0] - px[..., 1]) / np.maximum(px.sum(axis=2), 1e-3)
    lip_red = float(np.median(red[body]))
    if lip_red > 0.03:
        bright = luma > float(np.median(luma[body])) + 0.12
        pale = red < 0.4 * lip_red
        return bright & pale & band
    # a grey photo: only brightness tells, and a shiny lower lip is as bright as teeth;
    # teeth are then what is brighter than anything on the lips around the seam
    return (luma > float(np.percentile(luma[body], 99)) + 0.05) & band


def seam_profile(frame: np.ndarray, lm: np.ndarray, reach: float = 0.03, span: float = 0.8
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The lip seam along the mouth: for each pixel column of the middle `span` of the
    seam (the midline of the inner-lip lines of the (68, 2) landmarks), the darkest and
    the brightest luma within `reach` inter-ocular distances above or below it, over the
    median luma of the lips. Returns (dark, bright), (n,) float64 each: dark is about 1
    where no seam shows and near 0 where it is black; bright well above 1 is something
    lighter than the lips in the seam (teeth). A closed mouth's seam is continuous (dark
    changes little from column to column), never a black pen line, and holds no teeth."""
    iod = interocular(lm)
    seam = (lm[[60, 61, 62, 63, 64]] + lm[[60, 67, 66, 65, 64]]) / 2
    seam = np.concatenate([lm[[48]], seam, lm[[54]]])
    seam = seam[np.argsort(seam[:, 0])]
    x_l, x_r = seam[0, 0], seam[-1, 0]
    mid, half = (x_l + x_r) / 2, span * (x_r - x_l) / 2
    xs = np.arange(np.ceil(mid - half), np.floor(mid + half) + 1)
    ys = np.interp(xs, seam[:, 0], seam[:, 1])
    luma = frame.astype(np.float32) @ (LUMA / 255.0)
    _, lips = seam_band(frame.shape[:2], lm)
    lip_luma = float(np.median(luma[lips])) if lips.sum() > 10 else float(luma.mean())
    r = max(1, int(round(reach * iod)))
    h, w = luma.shape
    dark, bright = [], []
    for x, y in zip(xs.astype(int), np.round(ys).astype(int)):
        col = luma[max(y - r, 0):min(y + r + 1, h), min(max(x, 0), w - 1)]
        dark.append(col.min() / max(lip_luma, 1e-3) if col.size else 1.0)
        bright.append(col.max() / max(lip_luma, 1e-3) if col.size else 1.0)
    return np.asarray(dark, np.float64), np.asarray(bright, np.float64)


def lip_gap(lm: np.ndarray) -> float:
    """The inner-lip gap of (68, 2) landmarks over the inter-ocular distance: the mean over
    the three inner-lip pairs (61-67, 62-66, 63-65) of how far the lower point lies below
    the upper one along the face's vertical (perpendicular to the eye line), 0 where they
    meet or cross. Unlike face.geometry.mouth_openness (the points' distance), a pair
    dlib places a pixel apart sideways on a closed mouth does not count as open."""
    lm = np.asarray(lm, dtype=np.float64)
    left, right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    axis = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    down = np.array([-axis[1], axis[0]])
    gaps = [max(float((lm[lo] - lm[up]) @ down), 0.0) for up, lo in ((61, 67), (62, 66), (63, 65))]
    return float(np.mean(gaps)) / max(interocular(lm), 1e-6)
