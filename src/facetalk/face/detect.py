"""Find faces and their 68 landmarks in one image.

dlib's HOG detector costs time in proportion to the pixels it scans and misses faces
under about 80 px, so `find_faces` scans a downscaled copy first and only widens the
search (full resolution, then a 2x upsample) when that finds nothing. The landmark
predictor is cheap at any size, so landmarks are always fitted on full-res pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .models import FaceModels

# Long side of the copy the first detection pass scans: a face of 1/8 of the frame
# (80 px at 640) is still found, and 1280x720 costs ~4x less than at full size.
DETECT_SIDE = 800
# Largest image (pixels) a fallback pass may scan; keeps a 12 Mpix still under ~2 s.
MAX_FALLBACK_PIXELS = 4_500_000
# Upsampled scans produce false positives at low scores (0.1-0.2 on textures; true
# faces score 0.8+), so the upsample pass keeps only confident detections.
UPSAMPLE_MIN_SCORE = 0.5


@dataclass(frozen=True)
class FaceBox:
    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Contiguous (H, W, 3) uint8 view of a greyscale (H, W), (H, W, 1), RGB or RGBA image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0 when disjoint)."""
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def detect_faces(models: FaceModels, rgb: np.ndarray, upsample: int = 0) -> list[FaceBox]:
    """Faces found by dlib's HOG detector, largest first."""
    rects, scores, _ = models.detector.run(np.ascontiguousarray(rgb), upsample, 0.0)
    boxes = [FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores)]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=interp))


def detect_scaled(
    models: FaceModels, rgb: np.ndarray, scale: float, upsample: int, min_score: float
) -> list[FaceBox]:
    """HOG detections with score >= min_score on rgb resized by scale, in rgb's pixels.

    Boxes are not clipped to the image (dlib's boxes may stick out at the borders).
    """
    small = rgb if abs(scale - 1.0) < 1e-3 else _resize(rgb, scale)
    rects, scores, _ = models.detector.run(np.ascontiguousarray(small), upsample, float(min_score))
    sx = rgb.shape[1] / small.shape[1]
    sy = rgb.shape[0] / small.shape[0]
    return [
        FaceBox(
            int(round(r.left() * sx)),
            int(round(r.top() * sy)),
            int(round((r.right() + 1) * sx)) - 1,
            int(round((r.bottom() + 1) * sy)) - 1,
            float(s),
        )
        for r, s in zip(rects, scores)
        if s >= min_score
    ]


def find_faces(
    models: FaceModels,
    rgb: np.ndarray,
    min_score: float = 0.0,
    *,
    max_side: int = DETECT_SIDE,
    thorough: bool = True,
) -> list[FaceBox]:
    """Faces in an (H, W, 3) uint8 image, largest first, in full-resolution pixels.

    Scans a copy whose long side is at most max_side; when that finds nothing and
    thorough is set, rescans at full resolution (capped at MAX_FALLBACK_PIXELS), then
    with dlib's 2x upsample keeping only scores >= max(min_score, UPSAMPLE_MIN_SCORE).
    """
    rgb = as_rgb(rgb)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    boxes = detect_scaled(models, rgb, scale, 0, min_score)
    if not boxes and thorough:
        full = min(1.0, float(np.sqrt(MAX_FALLBACK_PIXELS / (h * w))))
        if full > scale * 1.2:
            boxes = detect_scaled(models, rgb, full, 0, min_score)
            scale = full
        if not boxes:
            # the upsample pass scans 4x the pixels of the copy it is given
            up_scale = min(scale, float(np.sqrt(MAX_FALLBACK_PIXELS / 4 / (h * w))))
            boxes = detect_scaled(models, rgb, up_scale, 1, max(min_score, UPSAMPLE_MIN_SCORE))
    return sorted(drop_doubtful(boxes), key=lambda b: b.area, reverse=True)


def drop_doubtful(boxes: list[FaceBox], confident: float = 0.5, margin: float = 0.5) -> list[FaceBox]:
    """Drop weak detections beside a much stronger one.

    HOG fires weakly (scores ~0.05-0.1) on round, face-like patterns such as a badge;
    when such a box is larger than the real face, "largest" would pick it. A weak box
    is kept only when no detection beats it by more than `margin` (a turned or small face
    alone in the image scores low too, and must still be found).
    """
    if not boxes:
        return boxes
    best = max(b.score for b in boxes)
    return [b for b in boxes if b.score >= confident or b.score >= best - margin]


def select_face(boxes: list[FaceBox], index: int | None = None, source: str = "the image") -> FaceBox:
    """The face to use: the largest (boxes[0]) by default, else boxes[index] (largest-first order).

    Raises NoFaceError when boxes is empty and InputError when index is out of range.
    """
    from ..errors import NoFaceError

    if not boxes:
        raise NoFaceError(f"no face found in {source}; use a photo with a clear, frontal face")
    if index is None:
        return boxes[0]
    if not -len(boxes) <= index < len(boxes):
        n = len(boxes)
        raise InputError(
            f"face index {index} is out of range: {n} face{'s' if n != 1 else ''} found in {source}; "
            f"choose an index from 0 to {n - 1} (0 = largest)"
        )
    return boxes[index]


def find_landmarks(models: FaceModels, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
    """(68, 2) float32 landmarks of the face in box, in rgb's pixels.

    The predictor only samples pixels near the box, so it runs on a crop with a margin
    of half the box (same result, ~2x faster on HD frames than the whole image).
    """
    import dlib

    h, w = rgb.shape[:2]
    margin = max(box.x1 - box.x0, box.y1 - box.y0) // 2 + 2
    cx0, cy0 = max(0, int(box.x0) - margin), max(0, int(box.y0) - margin)
    cx1, cy1 = min(w, int(box.x1) + margin), min(h, int(box.y1) + margin)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:  # box off the image: let dlib see the whole frame
        cx0, cy0, cx1, cy1 = 0, 0, w, h
    crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])
    rect = dlib.rectangle(int(box.x0) - cx0, int(box.y0) - cy0, int(box.x1) - cx0, int(box.y1) - cy0)
    shape = models.predictor(crop, rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return pts + np.array([cx0, cy0], dtype=np.float32)


def detect_landmarks(
    models: FaceModels, rgb: np.ndarray, face_index: int | None = None, min_score: float = 0.0
) -> np.ndarray | None:
    """(68, 2) float32 landmarks of the selected face (largest by default), or None if no face.

    Raises InputError when face_index is out of range.
    """
    rgb = as_rgb(rgb)
    boxes = find_faces(models, rgb, min_score)
    if not boxes:
        return None
    return find_landmarks(models, rgb, select_face(boxes, face_index))
