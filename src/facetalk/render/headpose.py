"""Idle head motion for still photos: move the head (and a breath in the shoulders)
with a soft-masked smooth warp, leaving the background in place."""

from __future__ import annotations

import cv2
import numpy as np

from ..face.geometry import interocular


def _head_mask(shape: tuple[int, int], lm: np.ndarray, iod: float, step: int) -> np.ndarray:
    """(gh, gw) float32 on a grid of `step` px: 1 over the head and neck, falling to 0
    over about one inter-ocular distance outside them."""
    h, w = shape
    gh, gw = h // step + 2, w // step + 2
    mask = np.zeros((gh, gw), np.float32)
    centre = lm[[27, 28, 29, 30, 33]].mean(axis=0)
    face_w = max(np.ptp(lm[:17, 0]), iod)
    # the head: an ellipse over the face, grown upward for the skull and hair
    cx, cy = centre[0], centre[1] - 0.45 * iod
    axes = (0.62 * face_w + 0.3 * iod, 1.25 * face_w)
    cv2.ellipse(mask, (int(cx / step), int(cy / step)), (int(axes[0] / step), int(axes[1] / step)),
                0, 0, 360, 1.0, -1)
    # the neck: a column under the chin, so the head does not tear from the body
    chin = lm[8]
    nx0, nx1 = (chin[0] - 0.45 * face_w) / step, (chin[0] + 0.45 * face_w) / step
    top, bottom = int(lm[4:13, 1].min() / step), int((chin[1] + 0.6 * iod) / step)
    cv2.rectangle(mask, (int(nx0), top), (int(nx1), bottom), 1.0, -1)
    sigma = max(0.8 * iod / step, 1.0)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def apply_head_motion(frame: np.ndarray, landmarks: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the head of a still frame.

    frame: (H, W, 3) uint8; landmarks: (68, 2); head: (4,) dx, dy (fractions of the
    inter-ocular distance), roll (degrees), scale (1 + breathing). Returns the new
    frame (H, W, 3) uint8 and the moved (68, 2) float32 landmarks. The head turns about
    the neck; the background stays put; breathing lifts the chest and shoulders a little.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    dx, dy, roll, scale = (float(v) for v in np.asarray(head, dtype=np.float64).reshape(4))
    if abs(dx) < 1e-6 and abs(dy) < 1e-6 and abs(roll) < 1e-6 and abs(scale - 1) < 1e-6:
        return frame.copy(), lm.astype(np.float32)
    h, w = frame.shape[:2]
    iod = interocular(lm)
    pivot = lm[8] + np.array([0.0, 0.3 * iod])  # below the chin: the head turns on the neck
    # forward similarity of the head, applied to its points
    a = np.deg2rad(roll)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = np.array([dx, dy]) * iod
    fwd = lambda p: (p - pivot) @ rot.T + pivot + shift  # noqa: E731
    moved = fwd(lm)

    # backward map on a coarse grid: a pixel of the output samples the source at the
    # inverse head transform where the head mask is 1, itself where it is 0
    step = max(4, int(iod / 10))
    mask = _head_mask((h, w), lm, iod, step)
    gh, gw = mask.shape
    gx, gy = np.meshgrid(np.arange(gw) * step, np.arange(gh) * step)
    pts = np.stack([gx, gy], -1).astype(np.float64)
    inv = np.linalg.inv(rot)
    head_src = (pts - pivot - shift) @ inv.T + pivot
    # breathing: below the chin the body rises by the scale's share of its height
    lift = (scale - 1.0) * 2.0 * iod
    body = np.clip((gy - lm[8, 1]) / (1.5 * iod), 0, 1)
    body_src = pts + np.stack([np.zeros_like(gx), lift * body], -1)
    src = mask[..., None] * head_src + (1 - mask[..., None]) * body_src
    disp = (src - pts).astype(np.float32)
    # grid node k sits at pixel k*step: resize maps so that node positions line up
    full = cv2.resize(disp, ((gw - 1) * step + 1, (gh - 1) * step + 1), interpolation=cv2.INTER_LINEAR)[:h, :w]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(frame, xs + full[..., 0], ys + full[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return out, moved.astype(np.float32)
