"""Follow one face through a video: 68 landmarks per frame, then zero-phase smoothing.

Detection (dlib HOG) costs 10-60x more than landmark fitting, so it runs every
`detect_every` frames; in between the predictor is fitted in a box derived from the
previous frame's landmarks. That box imitates the detector's box (a mapping learnt
from the detection frames of this track), because the predictor was trained on
detector boxes and drifts when given boxes of another shape.

Smoothing is zero-phase, and can follow a stream a fraction of a second behind (a swap
smooths while it tracks): each frame's landmarks are split into a head pose
(a similarity transform fitted on the rigid points) and a shape in a face-fixed frame.
The pose is smoothed lightly, the rigid part of the shape strongly and the lips barely,
so a still head does not shimmer while lip motion and head turns keep their timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import NoFaceError
from . import geometry as geo
from .detect import FaceBox, as_rgb, detect_scaled, find_faces, find_landmarks, iou, select_face
from .models import FaceModels

# Detector box relative to the rigid-point frame (centre c, RMS radius s) of dlib's
# landmarks, measured on frontal and turned portraits: side ~3.25 s, centre ~0.53 s
# below the rigid centroid. Used until the track's own detection frames refine it.
PRIOR_BOX = (3.25, 0.0, 0.53)  # (side / s, dx / s, dy / s)
ROI_FACE_PX = 110  # face size the region-of-interest detection rescales to (HOG finds >= 80 px)
# Loss tests between consecutive frames, relative to the face box side.
MAX_JUMP = 0.35
MAX_SCALE_STEP = 1.3
# Least correlation of the aligned face patch with the previous frame's: 0.7+ on real
# clips with head turns, under 0.2 when the landmarks slip off the face or it is gone.
MIN_PATCH_MATCH = 0.4
# Smoothing widths (Gaussian sigma, seconds) of the pose and of each point group's shape.
POSE_SIGMA = 0.03
REF_SECONDS = 1.0  # a run's reference shape (for its poses) is its mean over its first second
SHAPE_SIGMA = {"rigid": 0.12, "eyes": 0.05, "jaw": 0.04, "lips": 0.02}
_GROUPS = {
    "rigid": [0, 1, 2, 3, 13, 14, 15, 16, *range(17, 36)],
    "eyes": list(range(36, 48)),
    "jaw": list(range(4, 13)),
    "lips": list(range(48, 68)),
}


@dataclass
class FaceTrack:
    """Landmarks of one face through a video.

    landmarks: (n, 68, 2) float32 smoothed, NaN rows on frames without the face.
    raw: (n, 68, 2) float32 as fitted per frame, NaN where absent.
    present: (n,) bool, whether the face was found on each frame.
    fps: frame rate the smoothing widths were converted with.
    """

    landmarks: np.ndarray
    raw: np.ndarray
    present: np.ndarray
    fps: float

    @property
    def n_frames(self) -> int:
        return int(self.present.shape[0])


@dataclass
class BoxMapping:
    """Detector-like box from landmarks: side = k*s, centre = c + (dx, dy)*s."""

    k: float = PRIOR_BOX[0]
    dx: float = PRIOR_BOX[1]
    dy: float = PRIOR_BOX[2]

    def box(self, lm: np.ndarray) -> FaceBox:
        c, s = geo.rigid_frame(lm)
        cx, cy, half = c[0] + self.dx * s, c[1] + self.dy * s, self.k * s / 2
        x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
        return FaceBox(x0, y0, x1, y1, 0.0)


@dataclass
class _MappingFit:
    """Collects (detector box, landmarks) pairs and keeps the mapping at their median."""

    samples: list[tuple[float, float, float]]
    mapping: BoxMapping

    def add(self, box: FaceBox, lm: np.ndarray) -> None:
        c, s = geo.rigid_frame(lm)
        if s <= 1e-6:
            return
        bx, by = box.centre
        self.samples.append(((box.width + box.height) / 2 / s, (bx - c[0]) / s, (by - c[1]) / s))
        self.samples = self.samples[-50:]  # follow slow changes (pose) over long clips
        # the prior counts as one sample so a single odd detection cannot swing it
        k, dx, dy = np.median(np.array([PRIOR_BOX, *self.samples]), axis=0)
        self.mapping = BoxMapping(float(k), float(dx), float(dy))


def plausible(lm: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether (68, 2) landmarks look like a face: finite, mostly inside the image,
    eyes apart and the mouth below the eyes at a human distance."""
    if not np.all(np.isfinite(lm)):
        return False
    h, w = shape[:2]
    inside = (lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h)
    if inside.mean() < 0.5:
        return False
    _, s = geo.rigid_frame(lm)
    left, right = geo.eye_centers(lm)
    eye_vec = right - left
    iod = float(np.hypot(*eye_vec))
    if s < 4 or not 0.7 < iod / s < 2.0:
        return False
    down = np.array([-eye_vec[1], eye_vec[0]]) / iod  # image y grows downwards
    mouth = lm[geo.MOUTH].mean(axis=0) - (left + right) / 2
    drop = float(mouth @ down) / iod
    return 0.6 < drop < 2.0


PATCH = 32  # side (px) of the aligned grey face patch used to check a track is still a face
_PATCH_SPAN = ((-1.1, 1.1), (-0.7, 1.5))  # canonical x and y range it covers (eyes at y=0)


def face_patch(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(PATCH, PATCH) float32 grey patch of the face aligned by its eyes: zero mean, unit
    norm; all zeros when the region is flat (nothing to compare)."""
    import cv2

    (x0, x1), (y0, y1) = _PATCH_SPAN
    # canonical -> patch pixels, composed with image -> canonical
    sx, sy = PATCH / (x1 - x0), PATCH / (y1 - y0)
    to_patch = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]])
    m = to_patch[:, :2] @ geo.to_canonical(lm)
    m[:, 2] += to_patch[:, 2]
    patch = cv2.warpAffine(rgb, m, (PATCH, PATCH), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    grey = patch.astype(np.float32).mean(axis=2)
    grey -= grey.mean()
    norm = float(np.linalg.norm(grey))
    return grey / norm if norm > 2.0 * PATCH else np.zeros_like(grey)


def patch_match(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two face_patch results, in [-1, 1] (0 if either is flat)."""
    return float((a * b).sum())


def _moved_too_much(a: FaceBox, b: FaceBox) -> bool:
    side = max(1.0, (a.width + b.width) / 2)
    (ax, ay), (bx, by) = a.centre, b.centre
    jump = np.hypot(ax - bx, ay - by) / side
    step = max(a.width, 1) / max(b.width, 1)
    return bool(jump > MAX_JUMP or not 1 / MAX_SCALE_STEP < step < MAX_SCALE_STEP)


def _detect_near(models: FaceModels, rgb: np.ndarray, ref: FaceBox) -> list[FaceBox]:
    """Detections in a region about 2.4 face sides wide around ref, rescaled so the face is
    ~ROI_FACE_PX: a few ms at any frame size, against 20-60 ms for the whole frame."""
    h, w = rgb.shape[:2]
    side = max(ref.width, ref.height, 1)
    cx, cy = ref.centre
    x0, y0 = max(0, int(cx - 1.2 * side)), max(0, int(cy - 1.2 * side))
    x1, y1 = min(w, int(cx + 1.2 * side)), min(h, int(cy + 1.2 * side))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return []
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    boxes = detect_scaled(models, crop, ROI_FACE_PX / side, 0, 0.0)
    return [FaceBox(b.x0 + x0, b.y0 + y0, b.x1 + x0, b.y1 + y0, b.score) for b in boxes]


def _closest(boxes: list[FaceBox], ref: FaceBox, min_iou: float = 0.2) -> FaceBox | None:
    best = max(boxes, key=lambda b: iou(b, ref), default=None)
    return best if best is not None and iou(best, ref) >= min_iou else None


def follow_face(
    frames: Iterable[np.ndarray],
    models: FaceModels,
    *,
    detect_every: int = 5,
    face_index: int | None = None,
    fps: float = 25.0,
    progress: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray | None]:
    """The (68, 2) float32 landmarks of one face on each frame of a stream of (H, W, 3)
    uint8 RGB frames as fitted (None where the face is not found), one per frame as it
    is consumed (frames are not kept).

    The face followed is the largest (or face_index, largest-first) at its first
    detection, then whichever detection overlaps it. progress, if given, is called with
    the number of frames done after each frame (it may raise Cancelled). Raises
    InputError if face_index is out of range on the first frame with faces.
    """
    if detect_every < 1:
        raise ValueError("detect_every must be >= 1")
    fit = _MappingFit([], BoxMapping())
    prev_lm: np.ndarray | None = None
    prev_patch: np.ndarray | None = None
    last_box: FaceBox | None = None  # the face's box on the last frame it was present
    last_detect = -(10**9)  # frame index of the last detection that found the face
    last_wide = -(10**9)  # frame index of the last whole-frame search
    last_present = -(10**9)
    acquired = False
    for i, frame in enumerate(frames):
        rgb = as_rgb(frame)
        lm: np.ndarray | None = None
        patch: np.ndarray | None = None
        if prev_lm is not None:
            box = fit.mapping.box(prev_lm)
            lm = find_landmarks(models, rgb, box)
            if not plausible(lm, rgb.shape) or _moved_too_much(fit.mapping.box(lm), box):
                lm = None  # lost: re-detect on this frame
            else:
                patch = face_patch(rgb, lm)
                if prev_patch is not None and patch_match(patch, prev_patch) < MIN_PATCH_MATCH:
                    lm = None  # the predictor always returns a face shape; pixels say it is gone
        if lm is None or i - last_detect >= detect_every:
            ref = fit.mapping.box(lm) if lm is not None else last_box
            found = None
            if ref is not None:  # cheap search where the face is (or was last seen)
                found = _closest(_detect_near(models, rgb, ref), ref)
            # whole-frame search: when the face was just lost, or every detect_every frames
            # while it is absent; a face still tracked is not searched for afar
            wide = lm is None and (prev_lm is not None or i - last_wide >= detect_every)
            if found is None and wide:
                last_wide = i
                boxes = find_faces(models, rgb, thorough=not acquired)
                if boxes and not acquired:
                    found = select_face(boxes, face_index, source=f"frame {i}")
                elif boxes:
                    found = _closest(boxes, ref, min_iou=0.05) if ref is not None else None
                    if found is None and i - last_present > fps:
                        found = boxes[0]  # face gone over a second (a cut?): take the main face
            if found is not None:
                det_lm = find_landmarks(models, rgb, found)
                if plausible(det_lm, rgb.shape):
                    acquired = True
                    last_detect = i
                    fit.add(found, det_lm)
                    tracked_box = fit.mapping.box(lm) if lm is not None else None
                    if tracked_box is None or iou(tracked_box, found) < 0.5:
                        lm, patch = det_lm, None  # tracking drifted off the detector's face
        yield lm
        prev_lm = lm
        if lm is not None and patch is None:
            patch = face_patch(rgb, lm)
        prev_patch = patch if lm is not None else None
        if lm is not None:
            last_box = fit.mapping.box(lm)
            last_present = i
        if progress is not None:
            progress(i + 1)


def track_faces(
    frames: Iterable[np.ndarray],
    models: FaceModels,
    *,
    detect_every: int = 5,
    face_index: int | None = None,
    fps: float = 25.0,
    progress: Callable[[int], None] | None = None,
    smooth: bool = True,
) -> FaceTrack:
    """Landmarks of one face on every frame of a stream of (H, W, 3) uint8 RGB frames
    (follow_face), smoothed (smooth_landmarks) unless smooth is False."""
    raw = list(follow_face(frames, models, detect_every=detect_every, face_index=face_index, fps=fps,
                           progress=progress))
    n = len(raw)
    raw_arr = np.full((n, 68, 2), np.nan, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for i, lm in enumerate(raw):
        if lm is not None:
            raw_arr[i] = lm
            present[i] = True
    smoothed = smooth_landmarks(raw_arr, present, fps) if smooth else raw_arr.copy()
    return FaceTrack(landmarks=smoothed, raw=raw_arr, present=present, fps=float(fps))


class LandmarkSmoother:
    """Zero-phase smoothing of a stream of fitted landmarks, given out in frame order as
    soon as the frames each one depends on have arrived: `radius` frames ahead within
    its run of frames with the face (the widest Gaussian's reach), and the run's first
    REF_SECONDS (its reference shape). smooth_landmarks is this with every frame
    pushed, so a stream and a finished track give the same landmarks.

    Per run: each frame's landmarks are split into a head pose (a similarity fitted from
    the run's reference shape on the rigid points) and a shape in a face-fixed frame;
    the pose is filtered lightly, the rigid part of the shape strongly and the lips
    barely (POSE_SIGMA, SHAPE_SIGMA), the ends of the run held ("nearest"). Runs under
    3 frames are given as fitted.
    """

    def __init__(self, fps: float, chunk: int | None = None) -> None:
        """chunk: how many final frames are gathered before they are given out (each
        batch re-reads `radius` frames on either side); default `radius`."""
        self.fps = float(fps)
        sigmas = [POSE_SIGMA * self.fps, *(SHAPE_SIGMA[g] * self.fps for g in _GROUPS)]
        self.radius = max(int(4.0 * s + 0.5) for s in sigmas)  # gaussian_filter1d's reach (truncate 4)
        self._chunk = max(1, chunk if chunk is not None else self.radius)
        self._n_ref = max(3, round(REF_SECONDS * self.fps))
        self._k = 0  # frames pushed
        self._run: list[np.ndarray] = []  # fitted landmarks (float64) of the current run, from _base on
        self._start = 0  # frame index of the current run's first frame
        self._base = 0  # run position of _run[0] (older ones are dropped once out of reach)
        self._done = 0  # run positions given out so far
        self._ref: np.ndarray | None = None

    def push(self, lm: np.ndarray | None) -> list[tuple[int, np.ndarray | None]]:
        """Add the next frame's fitted (68, 2) landmarks (None: no face); returns the
        (frame index, smoothed (68, 2) float32 or None) pairs now final, in order."""
        out: list[tuple[int, np.ndarray | None]] = []
        if lm is None:
            out += self._close_run()
            out.append((self._k, None))
        else:
            if self._base + len(self._run) == 0:
                self._start = self._k
            self._run.append(np.asarray(lm, dtype=np.float64))
            out += self._give(final=False)
        self._k += 1
        return out

    def finish(self) -> list[tuple[int, np.ndarray | None]]:
        """The frames still held, once the stream has ended."""
        return self._close_run()

    def _close_run(self) -> list[tuple[int, np.ndarray | None]]:
        out = self._give(final=True)
        self._run, self._base, self._done, self._ref = [], 0, 0, None
        return out

    def _give(self, final: bool) -> list[tuple[int, np.ndarray | None]]:
        n = self._base + len(self._run)
        if n == 0:
            return []
        if n < 3:  # too short to smooth
            if not final:
                return []
            return [(self._start + self._base + i, lm.astype(np.float32)) for i, lm in enumerate(self._run)]
        if self._ref is None:
            if n < self._n_ref and not final:
                return []
            first = self._run[: self._n_ref]  # nothing is dropped before the reference is made
            self._ref = np.mean([geo.apply(geo.to_canonical(lm), lm) for lm in first], axis=0)
        stop = n if final else n - self.radius  # run positions whose whole reach has arrived
        if stop - self._done < (1 if final else self._chunk):
            return []
        lo = max(0, self._done - self.radius)
        smoothed = _smooth_run(np.stack(self._run[lo - self._base :]), self._ref, self.fps)
        out = [(self._start + j, smoothed[j - lo]) for j in range(self._done, stop)]
        self._done = stop
        keep_from = max(self._base, stop - self.radius)  # what later frames still reach
        del self._run[: keep_from - self._base]
        self._base = keep_from
        return out


def _smooth_run(seg: np.ndarray, ref: np.ndarray, fps: float) -> np.ndarray:
    """(k, 68, 2) float64 consecutive fitted landmarks of one run (or a stretch of it)
    smoothed against the run's reference shape ref -> (k, 68, 2) float32."""
    rigid = list(geo.RIGID_POINTS)
    # pose per frame: similarity from the reference to the frame, on the rigid points
    poses = np.stack([geo.fit_similarity(ref[rigid], lm[rigid]) for lm in seg])
    local = np.stack([geo.apply(geo.invert(p), lm) for p, lm in zip(poses, seg)])
    # a, b, tx, ty of [[a, -b, tx], [b, a, ty]] are smooth in the pose; filter them
    params = poses[:, [0, 1, 0, 1], [0, 0, 2, 2]]
    params = gaussian_filter1d(params, POSE_SIGMA * fps, axis=0, mode="nearest")
    for group, idx in _GROUPS.items():
        local[:, idx] = gaussian_filter1d(local[:, idx], SHAPE_SIGMA[group] * fps, axis=0, mode="nearest")
    a, b, tx, ty = params.T
    m = np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], axis=1)  # (k, 2, 3)
    return (np.einsum("kij,kpj->kpi", m[:, :, :2], local) + m[:, None, :, 2]).astype(np.float32)


def smooth_landmarks(raw: np.ndarray, present: np.ndarray, fps: float) -> np.ndarray:
    """Zero-phase smoothing (LandmarkSmoother) of (n, 68, 2) landmarks within each run of
    present frames. Returns (n, 68, 2) float32 with NaN where not present."""
    out = np.full(raw.shape, np.nan, dtype=np.float32)
    smoother = LandmarkSmoother(fps, chunk=len(raw) + 1)  # each run in one piece
    pairs = [p for k in range(len(raw)) for p in smoother.push(raw[k] if present[k] else None)]
    for j, lm in pairs + smoother.finish():
        if lm is not None:
            out[j] = lm
    return out


def landmark_jitter(landmarks: np.ndarray, points: Iterable[int] = geo.RIGID_POINTS) -> float:
    """Mean frame-to-frame motion of the given points over inter-ocular distance, over
    consecutive pairs of present (finite) frames of (n, 68, 2) landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    idx = list(points)
    step = np.linalg.norm(np.diff(lm[:, idx], axis=0), axis=-1).mean(axis=-1)
    iod = np.array([geo.interocular(f) if np.all(np.isfinite(f)) else np.nan for f in lm])
    ratio = step / iod[1:]
    return float(np.nanmean(ratio))


def track_image(
    models: FaceModels, rgb: np.ndarray, face_index: int | None = None, source: str = "the image"
) -> np.ndarray:
    """(68, 2) float32 landmarks of the selected face (largest by default) of one image.

    Raises NoFaceError naming source when there is no face, InputError when face_index
    is out of range.
    """
    rgb = as_rgb(rgb)
    boxes = find_faces(models, rgb)
    if not boxes:
        raise NoFaceError(
            f"no face found in {source}; use an image with a clear, roughly frontal face "
            "at least 80 px wide"
        )
    return find_landmarks(models, rgb, select_face(boxes, face_index, source=source))

