"""128-D face embeddings (dlib's ResNet) to tell whether two faces are the same person."""

from __future__ import annotations

import numpy as np

from .detect import as_rgb
from .models import FaceModels

SAME_PERSON = 0.6  # dlib's threshold: distances below it are the same person (~99.4% on LFW)


def face_embedding(models: FaceModels, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(128,) float32 descriptor of the face with (68, 2) landmarks in an (H, W, 3) uint8 image.

    dlib aligns a 150 px chip from the landmarks itself; the rectangle it is given only
    needs to enclose them.
    """
    import dlib

    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {lm.shape}")
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int)
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in lm]
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), points)
    descriptor = models.recognizer.compute_face_descriptor(as_rgb(rgb), shape)
    return np.asarray(descriptor, dtype=np.float32)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two (128,) embeddings; < SAME_PERSON means the same person."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
