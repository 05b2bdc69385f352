"""Find faces and their 68 landmarks in one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import FaceModels


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


def detect_faces(models: FaceModels, rgb: np.ndarray, upsample: int = 0) -> list[FaceBox]:
    """Faces found by dlib's HOG detector, largest first."""
    rects, scores, _ = models.detector.run(np.ascontiguousarray(rgb), upsample, 0.0)
    boxes = [FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores)]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def find_landmarks(models: FaceModels, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
    """(68, 2) float32 landmarks of the face in box."""
    import dlib

    rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1), int(box.y1))
    shape = models.predictor(np.ascontiguousarray(rgb), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
