"""The source face(s): loaded, found, measured once, kept at a few scales.

A source photo may hold a 700 px face and the target a 90 px one; sampling a face
8x too large per output pixel aliases (sparkly skin, stair-stepped brows). Each source
is kept as a small pyramid of crops around the face, and a frame is warped from the
level just larger than its face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, NoFaceError
from ..face import geometry as geo
from ..face.detect import find_faces, find_landmarks
from ..face.models import FaceModels
from ..media.image import load_image
from . import mesh
from .colour import ColourStats, face_stats
from .glasses import remove_glasses

MAX_IOD = 160.0  # px: finest level's inter-ocular distance (a 720p face rarely beats it)
MIN_IOD = 20.0  # px: coarsest level
CROP_PAD = 0.35  # crop margin around the mesh, in mesh sizes
FILL_SIGMA = 0.25  # IOD: how far skin colour is spread over the hair cut from the mask
KEEP_SOFTNESS = 0.04  # IOD: feather of the cut
HAIR_SIGMAS = 3.0  # Lab distance from the skin's colour, in its spreads, beyond which it is not skin


@dataclass(frozen=True)
class SourceLevel:
    """One scale of a source face: a crop and its mesh points in crop pixels."""

    image: np.ndarray  # (h, w, 4) uint8: RGB and the keep mask (remove_hair), warped together
    points: np.ndarray  # (N_POINTS, 2) float64
    iod: float


@dataclass(frozen=True)
class SourceFace:
    """A source face ready to warp: its pyramid (finest first), triangulation, pose and
    skin colour statistics."""

    name: str
    levels: tuple[SourceLevel, ...]
    triangles: np.ndarray  # (t, 3) int32 into the mesh points
    yaw: float
    roll: float
    stats: ColourStats
    landmarks: np.ndarray  # (68, 2) float32 in the photo's pixels (for embeddings)
    image: np.ndarray  # the photo as loaded, RGB uint8

    def level_index(self, iod: float, current: int | None = None) -> int:
        """Index of the coarsest level still at least as detailed as a face of this IOD.

        current: the level the previous frame used, kept while it is neither too coarse
        (under 0.8 IOD) nor too fine (over 2.5 IOD: aliasing). Without that hysteresis a
        face whose size hovers at a threshold (the 720p presenter, IOD 44-46) switched
        level every few frames: its texture shimmered and the landmarks re-detected on the
        output jittered."""
        if current is not None and 0.8 * iod <= self.levels[current].iod <= 2.5 * iod:
            return current
        for i in range(len(self.levels) - 1, -1, -1):
            if self.levels[i].iod >= 0.9 * iod:
                return i
        return 0

    def level_for(self, iod: float) -> SourceLevel:
        return self.levels[self.level_index(iod)]


def remove_hair(rgb: np.ndarray, points: np.ndarray, stats: ColourStats) -> tuple[np.ndarray, np.ndarray]:
    """(rgb with hair painted over by skin, (h, w) uint8 keep mask: 255 where the source
    may be shown, 0 where it had hair over its forehead and temples).

    Hair falling over the upper face would be pasted onto the target's skin. Outside the
    mouth and chin, away from the brows, eyes and nose, pixels far from the face's skin colour
    (more than HAIR_SIGMAS spreads in Lab) are hair, a hat or glasses frames. They are
    cut from the mask (so the target's own skin shows there). Around the mouth
    and chin nothing is cut: a beard belongs to the person. What is cut is filled with the
    nearby skin's blurred colour (_skin_fill), so the keep mask's soft edge fades from skin
    to the target's skin with no dark fringe.
    """
    pts = np.asarray(points, np.float64)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    z = (lab - stats.mean.astype(np.float32)) / np.maximum(stats.std.astype(np.float32), 4.0)
    far = np.sqrt((z * z).sum(axis=2)) > HAIR_SIGMAS
    h, w = rgb.shape[:2]
    # the beard's place (the jaw's lower half up to the nose's base) is
    # never cut; hair hanging by the cheeks or over the temples is
    beard = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(np.round(pts[[*range(4, 13), *range(31, 36)]] * 16).astype(np.int32))
    cv2.fillConvexPoly(beard, hull, 1, cv2.LINE_8, 4)
    upper = beard == 0
    iod = geo.interocular(pts[:68])
    spared = np.zeros((h, w), np.uint8)
    for part in (slice(17, 22), slice(22, 27), geo.LEFT_EYE, geo.RIGHT_EYE, slice(27, 36)):
        hull = cv2.convexHull(np.round(pts[part] * 16).astype(np.int32))
        cv2.fillConvexPoly(spared, hull, 1, cv2.LINE_8, 4)
    r = max(1, int(round(0.12 * iod)))
    spared = cv2.dilate(spared, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    hair = (far & upper & (spared == 0)).astype(np.uint8)
    k = max(1, int(round(0.03 * iod)))
    hair = cv2.morphologyEx(hair, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(pts[list(mesh.OUTLINE)] * 16).astype(np.int32)), 1,
                       cv2.LINE_8, 4)
    # hair and hats reach in from beyond the face's outline; a patch with no part outside
    # it is shade on the skin (a smile's folds by the nose, a dark cheek): cutting it let
    # the target's own cheek show through a hole that moved with every frame
    n, labels = cv2.connectedComponents(hair, connectivity=8)
    if n > 1:
        reaches_out = np.zeros(n, bool)
        reaches_out[np.unique(labels[(hair > 0) & (face == 0)])] = True
        reaches_out[0] = False
        hair = reaches_out[labels].astype(np.uint8)
    g = max(1, int(round(0.1 * iod)))  # strands and the hair's soft edge around what was found
    hair = cv2.dilate(hair, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1))) & upper
    if not hair.any():
        return rgb, np.full((h, w), 255, np.uint8)
    painted = rgb.copy()
    painted[hair > 0] = _skin_fill(rgb, face & (1 - hair) & ~far, stats, FILL_SIGMA * iod)[hair > 0]
    keep = cv2.GaussianBlur((1 - hair).astype(np.float32), (0, 0), max(0.5, KEEP_SOFTNESS * iod))
    return painted, np.round(keep * 255).astype(np.uint8)


def _skin_fill(rgb: np.ndarray, skin: np.ndarray, stats: ColourStats, sigma: float) -> np.ndarray:
    """rgb's skin spread over the whole image: a normalised convolution of the skin pixels
    (their local colour and shading, blurred by sigma), falling back to the skin's mean
    colour far from any. Inpainting (cv2.inpaint) pulls colour from every pixel around the
    hole, hair and background included: it left a grey patch at the temples."""
    weight = skin.astype(np.float32)
    small = max(1.0, sigma / 4)  # blur on a quarter-size copy: same result, 16x fewer pixels
    size = (max(1, round(rgb.shape[1] / small)), max(1, round(rgb.shape[0] / small)))
    w = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    c = cv2.resize(rgb.astype(np.float32) * weight[..., None], size, interpolation=cv2.INTER_AREA)
    w = cv2.GaussianBlur(w, (0, 0), sigma / small)
    c = cv2.GaussianBlur(c, (0, 0), sigma / small)
    mean_lab = np.clip(np.round(stats.mean), 0, 255).astype(np.uint8).reshape(1, 1, 3)
    mean = cv2.cvtColor(mean_lab, cv2.COLOR_Lab2RGB).astype(np.float32).reshape(3)
    # where little skin is near, lean on the mean colour
    alpha = np.clip(w / 0.2, 0.0, 1.0)[..., None]
    fill = alpha * c / np.maximum(w, 1e-6)[..., None] + (1 - alpha) * mean
    fill = cv2.resize(fill, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.round(fill), 0, 255).astype(np.uint8)


def prepare_source(rgb: np.ndarray, landmarks: np.ndarray, name: str) -> SourceFace:
    """A SourceFace from an RGB uint8 image and the (68, 2) landmarks of its face."""
    lm = np.asarray(landmarks, dtype=np.float64)
    points = mesh.with_forehead(lm)
    x0, y0, x1, y1 = geo.bbox(points, pad=CROP_PAD, shape=rgb.shape)
    pts = points - (x0, y0)
    crop, _ = remove_glasses(np.ascontiguousarray(rgb[y0:y1, x0:x1]), pts[:68])
    stats = face_stats(crop, pts)
    painted, keep = remove_hair(crop, pts, stats)
    crop = np.dstack([painted, keep])
    iod = geo.interocular(lm)
    scale = min(1.0, MAX_IOD / iod)
    levels = []
    while True:
        if scale < 1.0:
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            # pixel centres map to pixel centres
            sx, sy = size[0] / crop.shape[1], size[1] / crop.shape[0]
            lpts = (pts + 0.5) * (sx, sy) - 0.5
        else:
            image, lpts = crop, pts.copy()
        levels.append(SourceLevel(image=image, points=lpts, iod=iod * scale))
        scale /= 2
        if iod * scale < MIN_IOD:
            break
    yaw, roll = mesh.pose(lm)
    return SourceFace(
        name=name,
        levels=tuple(levels),
        triangles=mesh.triangulate(points),
        yaw=yaw,
        roll=roll,
        stats=stats,
        landmarks=lm.astype(np.float32),
        image=rgb,
    )


def load_source(path: str | Path, models: FaceModels) -> tuple[SourceFace, list[str]]:
    """The largest face of a photo as a SourceFace, and notes for the user (downscaled,
    transparency, several faces). Raises InputError / NoFaceError naming the file."""
    loaded = load_image(path)
    notes = [loaded.note] if loaded.note else []
    boxes = find_faces(models, loaded.rgb)
    if not boxes:
        raise NoFaceError(f"no face found in --source {path}; use an image with a clear, roughly frontal face "
                          "at least 80 px wide")
    if len(boxes) > 1:
        notes.append(f"{Path(path).name} shows {len(boxes)} faces; the largest is the source")
    lm = find_landmarks(models, loaded.rgb, boxes[0])  # the detection above, not a second one
    if geo.interocular(lm) < 12:
        raise InputError(f"the face in --source {path} is too small to swap: use a photo with a face at least 80 px wide")
    return prepare_source(loaded.rgb, lm, Path(path).name), notes


def pick_source(sources: list[SourceFace], yaw: float, current: int | None, hysteresis: float = 0.08) -> int:
    """Index of the source whose yaw is nearest yaw; the current one is kept unless
    another is nearer by more than hysteresis (no flicker between two near-equal ones)."""
    dist = [abs(s.yaw - yaw) for s in sources]
    best = int(np.argmin(dist))
    if current is not None and dist[current] <= dist[best] + hysteresis:
        return current
    return best
