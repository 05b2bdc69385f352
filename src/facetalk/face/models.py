"""dlib's face models, loaded once per FaceModels object (never at import time).

The model files ship inside the face-recognition-models package. We locate them with
importlib instead of importing that package, whose __init__ needs pkg_resources.
"""

from __future__ import annotations

import importlib.util
from functools import cached_property
from pathlib import Path

from ..errors import FacetalkError

_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacetalkError(
            "face models not installed: pip install face-recognition-models==0.3.0"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(key: str) -> Path:
    path = model_dir() / _FILES[key]
    if not path.is_file():
        raise FacetalkError(f"face model file missing: {path}; reinstall face-recognition-models")
    return path


class FaceModels:
    """Lazily loaded dlib detector, landmark predictor and recognition network."""

    @cached_property
    def detector(self):  # dlib.fhog_object_detector
        import dlib

        return dlib.get_frontal_face_detector()

    @cached_property
    def predictor(self):  # dlib.shape_predictor, 68 points
        import dlib

        return dlib.shape_predictor(str(model_file("landmarks68")))

    @cached_property
    def recognizer(self):  # dlib.face_recognition_model_v1, 128-D embeddings
        import dlib

        return dlib.face_recognition_model_v1(str(model_file("recognition")))
