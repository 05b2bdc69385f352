"""A bank of a person's real mouth images, each aligned to canonical face space.

Every entry is a crop of one footage frame resampled so that canonical point (x, y)
(eye midpoint at the origin, inter-ocular distance 1, y down) lands on crop pixel
((x - x0) * scale, (y - y0) * scale), with the landmarks of that frame in the same
canonical space. A renderer maps a crop onto any face pose with one affine transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..face.geometry import to_canonical

# Canonical window of a crop: the lips, the teeth and the chin, with skin around them.
BOUNDS = (-0.85, 0.45, 0.85, 1.85)  # x0, y0, x1, y1
MAX_SCALE = 128.0  # pixels per inter-ocular distance kept at most (a 720p close-up has ~100-130)


@dataclass(frozen=True)
class MouthBank:
    """Aligned mouth crops of one person.

    images: (n, h, w, 3) uint8 RGB crops; landmarks: (n, 68, 2) float32 canonical
    landmarks of each crop's frame; source: (n, 2) int32 (footage index, frame index),
    so entries from consecutive frames of one footage are known to be neighbours in time;
    bounds: canonical (x0, y0, x1, y1) the crops span; scale: crop pixels per canonical unit.
    """

    images: np.ndarray
    landmarks: np.ndarray
    source: np.ndarray
    bounds: tuple[float, float, float, float]
    scale: float

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def canon_to_crop(self) -> np.ndarray:
        """2x3 affine from canonical space to crop pixels."""
        x0, y0 = self.bounds[0], self.bounds[1]
        s = self.scale
        return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]])


def crop_size(bounds: tuple[float, float, float, float], scale: float) -> tuple[int, int]:
    """(h, w) of a crop spanning bounds at scale pixels per canonical unit."""
    x0, y0, x1, y1 = bounds
    return int(round((y1 - y0) * scale)), int(round((x1 - x0) * scale))


def extract_crop(
    frame: np.ndarray, landmarks: np.ndarray, scale: float, bounds: tuple[float, float, float, float] = BOUNDS
) -> tuple[np.ndarray, np.ndarray]:
    """The canonical mouth crop of one frame and its canonical landmarks.

    frame: (H, W, 3) uint8; landmarks: (68, 2) frame pixels. Returns (crop (h, w, 3)
    uint8, landmarks (68, 2) float32 canonical).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    to_c = to_canonical(lm)
    x0, y0 = bounds[0], bounds[1]
    # frame pixel -> canonical -> crop pixel
    m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]]) @ np.vstack([to_c, [0, 0, 1]])
    h, w = crop_size(bounds, scale)
    crop = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR if scale < 0.9 * _iod(to_c) else cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
    canon = lm @ to_c[:, :2].T + to_c[:, 2]
    return crop, canon.astype(np.float32)


def _iod(to_c: np.ndarray) -> float:
    """Inter-ocular distance in pixels of the frame to_c was computed on."""
    return 1.0 / float(np.hypot(to_c[0, 0], to_c[0, 1]))


def save_bank(bank: MouthBank, path: Path) -> None:
    """Write a bank as safetensors (the tensors plus bounds and scale in its metadata)."""
    from safetensors.numpy import save_file

    tensors = {
        "images": np.ascontiguousarray(bank.images, dtype=np.uint8),
        "landmarks": np.ascontiguousarray(bank.landmarks, dtype=np.float32),
        "source": np.ascontiguousarray(bank.source, dtype=np.int32),
    }
    meta = {"bounds": ",".join(f"{v:.6g}" for v in bank.bounds), "scale": f"{bank.scale:.6g}"}
    save_file(tensors, str(path), metadata=meta)


def load_bank(path: Path) -> MouthBank:
    """Read a bank written by save_bank. Raises ValueError when the file is not one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        missing = {"images", "landmarks", "source"} - keys
        if missing or "bounds" not in meta or "scale" not in meta:
            raise ValueError(f"not a mouth bank: lacks {', '.join(sorted(missing)) or 'bounds/scale metadata'}")
        images, landmarks, source = f.get_tensor("images"), f.get_tensor("landmarks"), f.get_tensor("source")
    bounds = tuple(float(v) for v in meta["bounds"].split(","))
    n = images.shape[0]
    if (images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or landmarks.shape != (n, 68, 2)
            or source.shape != (n, 2) or len(bounds) != 4):
        raise ValueError(f"mouth bank tensors have inconsistent shapes: images {images.shape}, "
                         f"landmarks {landmarks.shape}, source {source.shape}")
    return MouthBank(images, landmarks.astype(np.float32), source.astype(np.int32), bounds, float(meta["scale"]))
