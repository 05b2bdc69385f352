"""The face a live session animates: a still (a photo, the calmest frame of a video, or an
identity's reference photo), framed to the live size, its landmarks found once, and the
warp renderer and idle head motion prepared per render scale on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, NoFaceError
from ..face import geometry
from ..face.detect import find_faces, select_face
from ..face.models import FaceModels
from ..face.track import track_image
from ..framing import plan_framing
from ..media.formats import classify
from ..media.image import load_image
from ..media.video import iter_frames
from ..render.headpose import HeadMotion
from ..render.warp import WarpRenderer

MIN_SIZE, MAX_SIZE = 128, 1920
VIDEO_SCAN_FRAMES = 75  # a video's first 3 s are searched for a calm, frontal frame


@dataclass
class Level:
    """The face prepared at one render scale."""

    scale: float
    image: np.ndarray
    landmarks: np.ndarray
    renderer: WarpRenderer
    head: HeadMotion


@dataclass
class LiveFace:
    """image: (H, W, 3) uint8 at the live size (sides even); landmarks (68, 2) float32 in it;
    shapes: a person's shape table (an identity's) or None; amplitude: the person's mouth
    amplitude measured on their footage (identity.shapes.footage_amplitude) or None;
    source: what it came from."""

    image: np.ndarray
    landmarks: np.ndarray
    source: str
    shapes: np.ndarray | None = None
    amplitude: tuple[float, float, float] | None = None
    identity: str | None = None
    _levels: dict[float, Level] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def level(self, scale: float) -> Level:
        """The face prepared for rendering at scale (1: the live size), made once."""
        got = self._levels.get(scale)
        if got is not None:
            return got
        w, h = self.size
        if scale >= 1.0:
            image, lm = self.image, self.landmarks.astype(np.float64)
        else:
            sw, sh = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
            image = cv2.resize(self.image, (sw, sh), interpolation=cv2.INTER_AREA)
            lm = self.landmarks.astype(np.float64) * [sw / w, sh / h]
        renderer = WarpRenderer(interpolation="linear" if scale < 1.0 else "cubic")
        renderer.prepare(image, lm)
        level = Level(scale, image, lm.astype(np.float32), renderer, HeadMotion(image, lm))
        self._levels[scale] = level
        return level


def _still_of_video(path: str, models: FaceModels, face_index: int | None) -> np.ndarray:
    """The frame of the video's first seconds with a face, the mouth nearest closed and
    the head nearest its usual pose."""
    frames, marks = [], []
    for i, frame in enumerate(iter_frames(path)):
        if i >= VIDEO_SCAN_FRAMES:
            break
        if i % 5:
            continue
        boxes = find_faces(models, frame)
        if not boxes:
            continue
        from ..face.detect import find_landmarks

        frames.append(frame)
        marks.append(find_landmarks(models, frame, select_face(boxes, face_index, source=path)))
    if not frames:
        raise NoFaceError(f"no face found in the first seconds of {path}; use a video showing one clear face")
    return frames[geometry.neutral_frame_index(np.stack(marks))]


def prepare_face(face: str | None = None, identity: str | None = None, size: int = 512,
                 face_index: int | None = None, models: FaceModels | None = None, registry=None) -> LiveFace:
    """A LiveFace from a photo or video (face) or a learnt identity (its reference photo,
    unless face is given too). size: the long side of the live frames, in pixels.
    Raises InputError / NoFaceError (one line) for bad input."""
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise InputError(f"--size {size} is out of range for live ({MIN_SIZE} to {MAX_SIZE}, the long side)")
    models = models or FaceModels()
    shapes, ref, amplitude = None, None, None
    if identity:
        if registry is None:
            from ..home import facetalk_home
            from ..identity.registry import Registry

            registry = Registry(facetalk_home())
        ident = registry.load(identity)
        shapes, ref = ident.shapes, ident.ref
        from ..identity.shapes import footage_amplitude

        amplitude = footage_amplitude(ident.clip_landmarks, ident.neutral)  # how far they move, as in a render
        if not face:
            face = str(ident.reference)
    if not face:
        raise InputError("give --face (a photo or video of the person) or --identity NAME")
    if not Path(face).is_file():
        raise InputError(f"--face {face}: no such file")
    kind = classify(face, role="--face")
    if kind == "image":
        image = load_image(face).rgb
    else:
        image = _still_of_video(face, models, face_index)
    boxes = find_faces(models, image)
    if not boxes:
        raise NoFaceError(f"no face found in {face}; use a photo with one clear, frontal face")
    box = select_face(boxes, face_index, source=face)
    framing = plan_framing(image.shape[1], image.shape[0], int(size), ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2))
    image = np.ascontiguousarray(framing.apply(image))
    landmarks = track_image(models, image, face_index=face_index, source=face)
    return LiveFace(image=image, landmarks=landmarks.astype(np.float32), source=str(face), shapes=shapes,
                    amplitude=amplitude, identity=ref)
