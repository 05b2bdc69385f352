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


class HeadMotion:
    """Idle head motion of one still frame, prepared once and applied per output frame.

    Everything that depends only on the photo (the head mask, the grid, the region that
    can move) is computed here; apply() then costs one small grid update and one
    fixed-point remap of the moving region.
    """

    def __init__(self, frame: np.ndarray, landmarks: np.ndarray) -> None:
        self.frame = frame
        self.lm = np.asarray(landmarks, dtype=np.float64)
        h, w = frame.shape[:2]
        lm = self.lm
        self.iod = iod = interocular(lm)
        self.pivot = lm[8] + np.array([0.0, 0.3 * iod])  # below the chin: the head turns on the neck
        self.step = step = max(4, int(iod / 10))
        self.mask = _head_mask((h, w), lm, iod, step)[..., None]
        gh, gw = self.mask.shape[:2]
        gx, gy = np.meshgrid(np.arange(gw) * step, np.arange(gh) * step)
        self.pts = np.stack([gx, gy], -1).astype(np.float64)
        # breathing: the chest and shoulders (not the background beside them) rise a little
        face_w = max(float(np.ptp(lm[:17, 0])), iod)
        below = np.clip((gy - lm[8, 1]) / (1.5 * iod), 0, 1)
        across = np.clip(1.0 - (np.abs(gx - lm[8, 0]) - 1.5 * face_w) / iod, 0, 1)
        self.body = (below * across)[..., None] * (1 - self.mask)
        # the grid block that can move at all, one node of margin
        live = np.flatnonzero((self.mask[..., 0] > 1e-3).any(axis=0) | (self.body[..., 0] > 0).any(axis=0))
        rows = np.flatnonzero((self.mask[..., 0] > 1e-3).any(axis=1) | (self.body[..., 0] > 0).any(axis=1))
        self.c0, self.c1 = max(0, live[0] - 1), min(gw - 1, live[-1] + 1)
        self.r0, self.r1 = max(0, rows[0] - 1), min(gh - 1, rows[-1] + 1)
        self.x0, self.y0 = self.c0 * step, self.r0 * step
        self.x1 = min(w, self.x0 + (self.c1 - self.c0) * step + 1)
        self.y1 = min(h, self.y0 + (self.r1 - self.r0) * step + 1)
        xs, ys = np.meshgrid(np.arange(self.x0, self.x1, dtype=np.float32), np.arange(self.y0, self.y1, dtype=np.float32))
        self.xs, self.ys = xs, ys
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (outline, frame, landmarks)
        self._still = frame.copy()
        self._still.setflags(write=False)

    # Idle sway moves the head by ~0.05-0.2 px a frame; resampling the head region for a
    # change under this many pixels is invisible work, so the last frame is reused.
    REUSE_PX = 0.25

    def apply(self, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame (H, W, 3) uint8, landmarks (68, 2) float32) with the head moved by
        head = (dx, dy in inter-ocular distances, roll in degrees, scale). The frame is
        read-only: consecutive calls may share it (see REUSE_PX)."""
        dx, dy, roll, scale = (float(v) for v in np.asarray(head, dtype=np.float64).reshape(4))
        if abs(dx) < 1e-6 and abs(dy) < 1e-6 and abs(roll) < 1e-6 and abs(scale - 1) < 1e-6:
            return self._still, self.lm.astype(np.float32)
        a = np.deg2rad(roll)
        rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        shift = np.array([dx, dy]) * self.iod
        moved = (self.lm - self.pivot) @ rot.T + self.pivot + shift
        if self._last is not None:
            outline, frame, lm = self._last
            # the outline's largest move (head by the landmarks, body by the breath lift)
            lift = abs(scale - 1.0) * 2.0 * self.iod
            if np.abs(np.append(moved, lift).ravel() - outline).max() < self.REUSE_PX:
                return frame, lm.copy()
        # backward map on the coarse grid: a pixel samples the source at the inverse head
        # transform where the head mask is 1, itself (or the breath lift) where it is 0
        block = (slice(self.r0, self.r1 + 1), slice(self.c0, self.c1 + 1))
        pts = self.pts[block]
        head_src = (pts - self.pivot - shift) @ np.linalg.inv(rot).T + self.pivot
        lift = np.array([0.0, (scale - 1.0) * 2.0 * self.iod])
        disp = self.mask[block] * (head_src - pts) + self.body[block] * lift
        # grid node k sits at pixel k*step: resizing the node block maps nodes onto pixels exactly
        size = ((self.c1 - self.c0) * self.step + 1, (self.r1 - self.r0) * self.step + 1)
        full = cv2.resize(disp.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        full = full[: self.y1 - self.y0, : self.x1 - self.x0]
        # fixed-point maps with linear sampling: 5x faster than float maps with cubic,
        # and at these sub-pixel moves the difference does not show
        m1, m2 = cv2.convertMaps(self.xs + full[..., 0], self.ys + full[..., 1], cv2.CV_16SC2)
        out = self.frame.copy()
        out[self.y0 : self.y1, self.x0 : self.x1] = cv2.remap(
            self.frame, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        lift_px = abs(scale - 1.0) * 2.0 * self.iod
        out.setflags(write=False)  # shared by the frames that reuse it
        self._last = (np.append(moved, lift_px).ravel(), out, moved.astype(np.float32))
        return out, moved.astype(np.float32)


def apply_head_motion(frame: np.ndarray, landmarks: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the head of a still frame once (see HeadMotion for repeated use).

    frame: (H, W, 3) uint8; landmarks: (68, 2); head: (4,) dx, dy (fractions of the
    inter-ocular distance), roll (degrees), scale (1 + breathing). Returns the new
    frame (H, W, 3) uint8 and the moved (68, 2) float32 landmarks. The head turns about
    the neck; the background stays put; breathing lifts the chest and shoulders a little.
    """
    return HeadMotion(frame, landmarks).apply(head)
