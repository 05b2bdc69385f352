"""What the neural model sees: aligned face crops, the lower-half mask, the mouth drawing,
and training samples cut from footage (numpy and OpenCV only; no torch here).

A face crop is square and canonical (face.geometry: eye midpoint at the origin, eyes on
the x axis, inter-ocular distance 1): it spans FACE_BOUNDS, so every face of every pose and
size lands at the same place and scale, as identity.bank's mouth crops do for the mouth.
The model repaints the rows below MASK_Y (just under the eyes, above the nose tip): the
lower half of the crop, as Wav2Lip's lower-half masking (anchors.md, section 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..face.geometry import to_canonical

# Canonical window of a face crop (x0, y0, x1, y1): square, brows to below the chin.
FACE_BOUNDS = (-1.3, -0.8, 1.3, 1.8)
MASK_Y = 0.5  # canonical y where the repainted lower half starts (the crop's middle row)
COND_CHANNELS = 3  # outer lips (filled), mouth opening (filled), jaw line
OUTER = list(range(48, 60))
INNER = list(range(60, 68))
JAW_LINE = list(range(2, 15))


def crop_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine from frame pixels to the pixels of the size x size face crop."""
    to_c = to_canonical(np.asarray(landmarks, dtype=np.float64))
    x0, y0, x1, _ = FACE_BOUNDS
    s = size / (x1 - x0)
    c2p = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s], [0.0, 0.0, 1.0]])
    return (c2p @ np.vstack([to_c, [0.0, 0.0, 1.0]]))[:2]


def align_crop(frame: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crop (size, size, 3) uint8, landmarks in crop pixels (68, 2) float32, the 2x3
    frame->crop matrix) of one frame. Downscaling low-passes first (INTER_AREA-like
    quality through a pre-blur) so the crop does not alias."""
    m = crop_matrix(landmarks, size)
    scale = float(np.hypot(m[0, 0], m[0, 1]))  # crop px per frame px
    src = frame
    if scale < 0.8:
        sigma = 0.45 * np.sqrt(1.0 / scale**2 - 1.0)
        src = cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    crop = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lm = np.asarray(landmarks, dtype=np.float64) @ m[:, :2].T + m[:, 2]
    return crop, lm.astype(np.float32), m


def mask_row(size: int) -> int:
    """First row of the repainted lower half of a size x size crop."""
    _, y0, _, y1 = FACE_BOUNDS
    return round((MASK_Y - y0) / (y1 - y0) * size)


def draw_mouth(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(COND_CHANNELS, size, size) float32 in [0, 1]: the mouth shape to draw, from (68, 2)
    landmarks in crop pixels: the outer lips filled, the opening between the inner lips
    filled, and the jaw line (points 2-14), anti-aliased."""
    out = np.zeros((COND_CHANNELS, size, size), np.uint8)
    pts = np.round(np.asarray(landmarks, dtype=np.float64) * 16).astype(np.int32)
    width = max(1, size // 64)
    cv2.fillPoly(out[0], [pts[OUTER]], 255, cv2.LINE_AA, 4)
    cv2.fillPoly(out[1], [pts[INNER]], 255, cv2.LINE_AA, 4)
    cv2.polylines(out[2], [pts[JAW_LINE]], False, 255, width, cv2.LINE_AA, 4)
    return out.astype(np.float32) / 255.0


@dataclass
class Samples:
    """Aligned training crops of one or more people.

    crops: (n, s, s, 3) uint8; landmarks: (n, 68, 2) float32 in crop pixels; person:
    (n,) int32, which person each crop shows (references are drawn from the same person);
    names: the person (footage or identity) behind each person index.
    """

    crops: np.ndarray
    landmarks: np.ndarray
    person: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    def by_person(self) -> list[np.ndarray]:
        """Indices of each person's crops, in person order."""
        return [np.flatnonzero(self.person == p) for p in range(len(self.names))]

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"crops": np.ascontiguousarray(self.crops), "landmarks": np.ascontiguousarray(self.landmarks),
                   "person": np.ascontiguousarray(self.person, dtype=np.int32)}, str(path),
                  metadata={"names": "\n".join(self.names)})

    @classmethod
    def load(cls, path: Path) -> Samples:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            names = (f.metadata() or {}).get("names", "").split("\n")
            return cls(f.get_tensor("crops"), f.get_tensor("landmarks"), f.get_tensor("person"), names)


def concat(parts: Sequence[Samples]) -> Samples:
    """One Samples of several, person indices renumbered."""
    crops, lms, persons, names = [], [], [], []
    for part in parts:
        crops.append(part.crops)
        lms.append(part.landmarks)
        persons.append(part.person + len(names))
        names.extend(part.names)
    return Samples(np.concatenate(crops), np.concatenate(lms), np.concatenate(persons).astype(np.int32), names)


def samples_from_frames(frames, landmarks: np.ndarray, size: int, name: str, limit: int | None = None) -> Samples:
    """Crops of the frames (an iterable of (H, W, 3) uint8) whose landmarks (n, 68, 2) are
    finite; at most `limit` of them, spread evenly (None: all)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(lm).all(axis=(1, 2)))
    if limit is not None and len(ok) > limit:
        ok = ok[np.round(np.linspace(0, len(ok) - 1, limit)).astype(int)]
    keep = set(ok.tolist())
    crops, lms = [], []
    for k, rgb in enumerate(frames):
        if k >= len(lm):
            break
        if k in keep:
            c, l, _ = align_crop(rgb, lm[k], size)
            crops.append(c)
            lms.append(l)
    if not crops:
        return Samples(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 68, 2), np.float32),
                       np.zeros(0, np.int32), [name])
    return Samples(np.stack(crops), np.stack(lms), np.zeros(len(crops), np.int32), [name])


def samples_from_video(path: str | Path, size: int, models=None, fraction: float = 1.0, limit: int | None = None,
                       progress=None) -> Samples:
    """Track the face through the first `fraction` of a video and cut its crops."""
    from itertools import islice

    from ..face.models import FaceModels
    from ..face.track import track_faces
    from ..media.video import iter_frames, probe_video

    info = probe_video(path)
    n = max(1, int(round(info.n_frames * min(max(fraction, 0.0), 1.0))))
    models = models or FaceModels()
    track = track_faces(islice(iter_frames(path), n), models, fps=info.fps, progress=progress)
    return samples_from_frames(islice(iter_frames(path), n), track.landmarks, size, Path(path).name, limit)


def samples_from_identity(identity, size: int, limit: int | None = None) -> Samples:
    """Crops of an identity's face clip (face.mp4, whose landmarks the identity keeps)."""
    from ..media.video import iter_frames

    return samples_from_frames(iter_frames(identity.clip), identity.clip_landmarks, size, identity.ref, limit)


def batch_arrays(samples: Samples, index: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """float32 arrays of one batch: "target" (b, 3, s, s) in [0, 1], "reference" the same,
    "cond" (b, COND_CHANNELS, s, s), for the target crops `index` and references `reference`."""
    s = samples.size
    target = samples.crops[index].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    ref = samples.crops[reference].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    cond = np.stack([draw_mouth(samples.landmarks[i], s) for i in index])
    return {"target": target, "reference": ref, "cond": cond}


def pick_batch(samples: Samples, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets, references) indices: random crops, each with a random other crop of the same person."""
    groups = samples.by_person()
    index = rng.integers(0, len(samples), batch)
    reference = np.empty(batch, np.int64)
    for j, i in enumerate(index):
        g = groups[samples.person[i]]
        r = g[rng.integers(0, len(g))]
        if len(g) > 1 and r == i:
            r = g[(np.searchsorted(g, i) + 1) % len(g)]
        reference[j] = r
    return index, reference
