"""Which faces of the target are swapped: the largest, one by index, all, or the one most
like a reference photo (by embedding), found on a photo or tracked through a video."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import numpy as np

from ..errors import InputError, NoFaceError
from ..face import geometry as geo
from ..face.detect import find_faces, find_landmarks, select_face
from ..face.embed import SAME_PERSON, embedding_distance, face_embedding
from ..face.models import FaceModels
from ..face.track import FaceTrack, track_faces

DETECT_EVERY = 5  # track_faces' default: the reference is looked for on the frames it searches
REFERENCE_SECONDS = 10.0  # how far into a video the reference face is looked for
SAME_FACE = 0.3  # IOD: two tracks this close on a frame follow one face
RESCAN_SECONDS = 1.0  # "all": how often the frames are searched for a face no track follows
MAX_FACES = 8  # "all": most faces followed (a crowd would multiply the tracking passes)


def parse_target_face(text: str | int | None) -> str | int:
    """'largest' (or None), 'all', or a face index (0 = largest) -> "largest", "all" or int."""
    if text is None:
        return "largest"
    if isinstance(text, int):
        return text
    t = str(text).strip().lower()
    if t in ("largest", "all"):
        return t
    try:
        return int(t)
    except ValueError:
        raise InputError(f"--target-face {text!r}: use largest, all or a face index (0 = largest)") from None


def _closest_index(models: FaceModels, rgb: np.ndarray, boxes, reference: np.ndarray) -> tuple[int, float]:
    dists = [embedding_distance(face_embedding(models, rgb, find_landmarks(models, rgb, b)), reference) for b in boxes]
    best = int(np.argmin(dists))
    return best, float(dists[best])


def image_faces(
    models: FaceModels, rgb: np.ndarray, mode: str | int, reference: np.ndarray | None, name: str,
    warn: Callable[[str], None],
) -> list[np.ndarray]:
    """(68, 2) landmarks of each face of a photo to swap. Raises NoFaceError when it has
    none, InputError for an index out of range."""
    boxes = find_faces(models, rgb)
    if not boxes:
        raise NoFaceError(f"no face found in --target {name}; use a photo with a clear face at least 80 px wide")
    if reference is not None:
        index, dist = _closest_index(models, rgb, boxes, reference)
        if dist > SAME_PERSON:
            warn(f"no face in {name} clearly matches --reference (nearest at distance {dist:.2f}); swapping it anyway")
        boxes = [boxes[index]]
    elif mode == "all":
        pass
    else:
        boxes = [select_face(boxes, None if mode == "largest" else int(mode), source=f"--target {name}")]
    return [find_landmarks(models, rgb, b) for b in boxes]


def _first_faces(frames: Iterable[np.ndarray], models: FaceModels, limit: int) -> tuple[np.ndarray, list] | None:
    """The first frame (among those track_faces searches: every DETECT_EVERY-th) with
    faces, and its boxes; None when none of the first `limit` frames has one."""
    for i, frame in enumerate(islice(frames, limit)):
        if i % DETECT_EVERY == 0:
            boxes = find_faces(models, frame)
            if boxes:
                return frame, boxes
    return None


def track_targets(
    frames: Callable[[], Iterator[np.ndarray]],
    models: FaceModels,
    mode: str | int,
    reference: np.ndarray | None,
    fps: float,
    name: str,
    progress: Callable[[int], None] | None,
    warn: Callable[[str], None],
) -> list[FaceTrack]:
    """One FaceTrack per face to swap. frames() starts a new pass over the video's frames.

    "largest" and an index follow that face from its first detection (track_faces);
    "all" follows each face of the first frame with faces, one pass each, then searches
    every RESCAN_SECONDS for faces no track follows (one coming into view later) and
    follows each from there (at most MAX_FACES in all); a reference
    picks, on that frame, the face nearest the reference photo. Raises NoFaceError when
    no frame has a face.
    """
    indices: list[int | None]
    if mode == "all" or reference is not None:
        first = _first_faces(frames(), models, int(REFERENCE_SECONDS * fps) if reference is not None else 10**9)
        if first is None:
            raise NoFaceError(f"no face found in any frame of --target {name}; use a video showing a clear face")
        rgb, boxes = first
        if reference is not None:
            index, dist = _closest_index(models, rgb, boxes, reference)
            if dist > SAME_PERSON:
                warn(f"no face in {name} clearly matches --reference (nearest at distance {dist:.2f}); following it anyway")
            indices = [index]
        else:
            indices = list(range(len(boxes)))
    else:
        indices = [None if mode == "largest" else int(mode)]
    tracks = []
    for j, index in enumerate(indices):
        report = None
        if progress is not None:
            report = lambda i, j=j: progress(j, len(indices), i)
        tracks.append(track_faces(frames(), models, face_index=index, fps=fps, progress=report))
    if mode == "all" and reference is None:
        tracks = _add_late_faces(tracks, frames, models, fps)
    if not any(t.present.any() for t in tracks):
        raise NoFaceError(f"no face found in any frame of --target {name}; use a video showing a clear face")
    return _drop_duplicates(tracks)


def _followed(box, tracks: list[FaceTrack], k: int) -> bool:
    """Whether some track has a face on frame k whose landmarks hold box's centre."""
    cx, cy = box.centre
    for t in tracks:
        if t.present[k]:
            lm = t.raw[k]
            x0, y0 = lm.min(axis=0)
            x1, y1 = lm.max(axis=0)
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                return True
    return False


def _add_late_faces(tracks: list[FaceTrack], frames: Callable[[], Iterator[np.ndarray]], models: FaceModels,
                    fps: float) -> list[FaceTrack]:
    """tracks plus one track per face that comes into view after the first frame with
    faces: every RESCAN_SECONDS a whole-frame detection; a face there that no track
    follows is followed from that frame on (so it is swapped at most RESCAN_SECONDS late)."""
    n = tracks[0].n_frames
    step = max(1, round(RESCAN_SECONDS * fps))
    present = np.flatnonzero(np.any([t.present for t in tracks], axis=0))
    k = int(present[0]) + step if len(present) else 0
    while len(tracks) < MAX_FACES and k < n:
        start = None
        for i, frame in enumerate(islice(frames(), k, None, step)):
            f = k + i * step
            for index, box in enumerate(find_faces(models, frame)):
                if not _followed(box, tracks, f):
                    start = (f, index)
                    break
            if start is not None:
                break
        if start is None:
            break
        f, index = start
        late = track_faces(islice(frames(), f, None), models, face_index=index, fps=fps)
        track = FaceTrack(landmarks=np.full((n, 68, 2), np.nan, np.float32), raw=np.full((n, 68, 2), np.nan, np.float32),
                          present=np.zeros(n, bool), fps=late.fps)
        track.landmarks[f:], track.raw[f:], track.present[f:] = late.landmarks, late.raw, late.present
        tracks.append(track)
        k = f + step
    return tracks


def _drop_duplicates(tracks: list[FaceTrack]) -> list[FaceTrack]:
    """Clear frames where a track follows the same face as an earlier one (a track that
    lost its face re-acquires the main face after a second)."""
    for j in range(1, len(tracks)):
        for i in range(j):
            a, b = tracks[i], tracks[j]
            both = np.flatnonzero(a.present & b.present)
            for f in both:
                iod = geo.interocular(a.landmarks[f].astype(np.float64))
                if np.linalg.norm(a.landmarks[f] - b.landmarks[f], axis=1).mean() < SAME_FACE * iod:
                    b.present[f] = False
                    b.landmarks[f] = np.nan
    return tracks
