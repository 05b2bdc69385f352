"""Face stage: detection on real portraits, tracking through real clips, embeddings, geometry."""

from __future__ import annotations

import itertools
import time
import weakref
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from facetalk.errors import InputError, NoFaceError
from facetalk.face import geometry as geo
from facetalk.face.detect import FaceBox, detect_landmarks, find_faces, select_face
from facetalk.face.embed import embedding_distance, face_embedding
from facetalk.face.models import FaceModels
from facetalk.face.track import landmark_jitter, track_faces, track_image

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
FACES = sorted((MEDIA / "faces").glob("*.*")) if (MEDIA / "faces").is_dir() else []
needs_media = pytest.mark.skipif(not FACES, reason="shared test media not found")


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def clip_frames(name: str, limit: int, size: tuple[int, int] | None = None):
    """Yield the first `limit` RGB frames of a talking clip, optionally resized to (w, h)."""
    with av.open(str(MEDIA / "talking" / name)) as container:
        for frame in itertools.islice(container.decode(video=0), limit):
            rgb = frame.to_ndarray(format="rgb24")
            yield rgb if size is None else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def rigid_acceleration(lm: np.ndarray) -> float:
    """Mean second difference of the rigid points over inter-ocular distance (shimmer)."""
    idx = list(geo.RIGID_POINTS)
    acc = np.linalg.norm(np.diff(lm[:, idx], 2, axis=0), axis=-1).mean(axis=-1)
    iod = np.array([geo.interocular(f) for f in lm])[2:]
    return float(np.mean(acc / iod))


# ---------------------------------------------------------------- detection


@needs_media
@pytest.mark.parametrize("path", FACES, ids=lambda p: p.name)
def test_finds_the_one_face_in_every_portrait(models, path):
    rgb = load(path)
    boxes = find_faces(models, rgb)
    assert len(boxes) == 1
    lm = detect_landmarks(models, rgb)
    b = boxes[0]
    # landmarks lie on the detected face: eyes inside the box, face a plausible size
    for eye in geo.eye_centers(lm):
        assert b.x0 <= eye[0] <= b.x1 and b.y0 <= eye[1] <= b.y1
    assert 0.2 < geo.interocular(lm) / b.width < 0.6
    assert geo.mouth_openness(lm) < 1.0


@pytest.mark.parametrize(
    "image",
    [
        skimage.data.coffee(),
        np.full((480, 640, 3), (120, 90, 200), np.uint8),
        np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8),
    ],
    ids=["coffee", "flat", "noise"],
)
def test_finds_nothing_without_a_face(models, image):
    assert find_faces(models, image) == []
    assert detect_landmarks(models, image) is None
    with pytest.raises(NoFaceError, match="coffee.png"):
        track_image(models, image, source="coffee.png")


def test_astronaut_landmarks_and_selection(models):
    rgb = skimage.data.astronaut()
    lm = track_image(models, rgb, source="astronaut")
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    x0, y0, x1, y1 = geo.bbox(lm)
    assert 165 < x0 and x1 < 285 and 75 < y0 and y1 < 200  # her face is near (179,83)-(266,170)
    # greyscale input works the same
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(detect_landmarks(models, grey) - lm).max() < 6
    with pytest.raises(InputError, match="1 face found"):
        track_image(models, rgb, face_index=2, source="astronaut")
    with pytest.raises(NoFaceError):
        select_face([])


def test_select_face_defaults_to_largest():
    boxes = [FaceBox(0, 0, 100, 100, 1.0), FaceBox(200, 0, 250, 50, 2.0)]
    assert select_face(boxes) is boxes[0]
    assert select_face(boxes, 1) is boxes[1]
    with pytest.raises(InputError, match="2 faces"):
        select_face(boxes, 5)


def test_finds_a_small_face_in_a_large_frame(models):
    # an 90 px face in a 1920x1080 frame is under the detector's 80 px once downscaled
    face = skimage.data.astronaut()[40:250, 120:330]
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[700:910, 1500:1710] = face
    boxes = find_faces(models, canvas)
    assert len(boxes) == 1
    cx, cy = boxes[0].centre
    assert 1500 < cx < 1710 and 700 < cy < 910


# ---------------------------------------------------------------- embeddings


@needs_media
def test_embeddings_tell_people_apart(models):
    rgb = skimage.data.astronaut()
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    a = face_embedding(models, rgb, detect_landmarks(models, rgb))
    b = face_embedding(models, mirrored, detect_landmarks(models, mirrored))
    assert a.shape == (128,) and a.dtype == np.float32
    assert embedding_distance(a, b) < 0.6
    man = load(MEDIA / "faces" / "glasses-beard.jpg")
    woman = load(MEDIA / "faces" / "woman-portrait.png")
    c = face_embedding(models, man, detect_landmarks(models, man))
    d = face_embedding(models, woman, detect_landmarks(models, woman))
    assert embedding_distance(c, d) > 0.6
    assert embedding_distance(a, d) > 0.6


# ---------------------------------------------------------------- geometry


def test_geometry_helpers(models):
    lm = track_image(models, skimage.data.astronaut())
    assert 0.15 < geo.eye_aspect_ratio(lm) < 0.45  # open eyes
    closed = lm.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        closed[[upper, lower], 1] = lm[[upper, lower], 1].mean()
    assert geo.eye_aspect_ratio(closed) < 0.06  # lids meet (corners still a bit apart in x)
    both = geo.eye_aspect_ratio(np.stack([lm, closed]))
    assert np.allclose(both, [geo.eye_aspect_ratio(lm), geo.eye_aspect_ratio(closed)])
    x0, y0, x1, y1 = geo.mouth_region_box(lm, shape=(512, 512))
    mouth = lm[geo.MOUTH]
    assert x0 < mouth[:, 0].min() and mouth[:, 0].max() < x1 and y0 < mouth[:, 1].min() and lm[8, 1] < y1
    assert y0 > max(e[1] for e in geo.eye_centers(lm))  # stays below the eyes
    theta = 0.3
    m = 1.7 * np.array([[np.cos(theta), -np.sin(theta), 12.0], [np.sin(theta), np.cos(theta), -4.0]])
    m[:, 2] /= 1.7
    assert np.allclose(geo.fit_similarity(lm, geo.apply(m, lm)), m, atol=1e-6)


# ---------------------------------------------------------------- tracking


@needs_media
@pytest.mark.parametrize(
    "name, n",
    [("congresswoman-8s.mp4", 75), ("man-suit-6s.mp4", 66), ("presenter-1080p-7s.mp4", 75)],
)
def test_tracks_real_clips_smoothly_without_killing_lip_motion(models, name, n):
    track = track_faces(clip_frames(name, n), models, fps=25.0)
    assert track.n_frames == n and track.present.all()
    assert track.landmarks.shape == (n, 68, 2) and track.landmarks.dtype == np.float32
    raw, smooth = track.raw, track.landmarks
    # smoothing removes shimmer of the rigid points but keeps them on the face
    assert rigid_acceleration(smooth) < 0.7 * rigid_acceleration(raw)
    assert landmark_jitter(smooth) < landmark_jitter(raw)
    iod = np.array([geo.interocular(f) for f in raw])
    assert np.nanmax(np.abs(smooth - raw).max(axis=(1, 2)) / iod) < 0.25
    # ...and lip motion is kept
    open_raw, open_smooth = geo.mouth_openness(raw), geo.mouth_openness(smooth)
    assert np.std(open_raw) > 0.02  # they do speak
    assert np.corrcoef(open_raw, open_smooth)[0, 1] > 0.9


@needs_media
def test_tracking_is_fast_at_720p(models):
    frames = list(clip_frames("presenter-1080p-7s.mp4", 50, size=(1280, 720)))
    start = time.process_time()
    track = track_faces(iter(frames), models)
    ms = (time.process_time() - start) / len(frames) * 1000
    print(f"tracking 1280x720: {ms:.1f} ms/frame")
    assert track.present.all()
    assert ms < 40  # 4-8 ms on an idle core; bound leaves room for a loaded CI machine


def two_face_frames(n: int) -> list[np.ndarray]:
    """A face on the left that shrinks and one on the right that grows past it."""
    a = skimage.data.astronaut()[20:260, 100:340]
    b = np.repeat(a[:, ::-1].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)  # grey mirror
    frames = []
    for t in np.linspace(0, 1, n):
        canvas = np.full((560, 1100, 3), 60, np.uint8)
        sa, sb = int(480 - 180 * t), int(330 + 180 * t)
        canvas[20 : 20 + sa, 20 : 20 + sa] = cv2.resize(a, (sa, sa))
        canvas[20 : 20 + sb, 560 : 560 + sb] = cv2.resize(b, (sb, sb))
        frames.append(canvas)
    return frames


def test_follows_the_selected_face_not_the_largest(models):
    frames = two_face_frames(24)
    left = track_faces(iter(frames), models, detect_every=3)
    assert left.present.all() and np.nanmax(left.landmarks[:, :, 0]) < 550
    right = track_faces(iter(frames), models, detect_every=3, face_index=1)
    assert right.present.all() and np.nanmin(right.landmarks[:, :, 0]) > 550
    with pytest.raises(InputError, match="2 faces"):
        track_faces(iter(frames), models, face_index=2)


def test_absent_frames_stay_absent_and_frames_are_streamed(models):
    face = skimage.data.astronaut()
    blank = np.full_like(face, 128)
    pattern = [True] * 8 + [False] * 6 + [True] * 8
    refs: list[weakref.ref] = []
    done: list[int] = []

    def stream():
        for i, has_face in enumerate(pattern):
            if i >= 2:
                assert refs[i - 2]() is None, "track_faces kept an old frame"
            frame = face.copy() if has_face else blank.copy()
            refs.append(weakref.ref(frame))
            yield frame
            del frame

    track = track_faces(stream(), models, progress=done.append)
    assert track.present.tolist() == pattern
    assert np.isnan(track.landmarks[~track.present]).all()
    assert np.isfinite(track.landmarks[track.present]).all()
    assert done == list(range(1, len(pattern) + 1))


def test_weak_false_positive_beside_a_real_face_is_dropped():
    from facetalk.face.detect import FaceBox, drop_doubtful

    face = FaceBox(179, 83, 266, 170, 1.46)
    badge = FaceBox(123, 330, 227, 434, 0.08)  # larger than the face, as on the astronaut's mission patch
    assert drop_doubtful([badge, face]) == [face]
    turned = FaceBox(10, 10, 60, 60, 0.12)
    assert drop_doubtful([turned]) == [turned], "a weak face alone is still a face"
    two = [FaceBox(0, 0, 90, 90, 1.1), FaceBox(200, 0, 260, 60, 0.7)]
    assert drop_doubtful(two) == two


def test_streamed_smoothing_matches_whole_track_and_follows_closely() -> None:
    """LandmarkSmoother gives each frame out once, in order, a bounded number of frames
    after it arrives, and the same landmarks as smoothing the finished track."""
    from facetalk.face.track import REF_SECONDS, LandmarkSmoother, smooth_landmarks

    rng = np.random.default_rng(0)
    n, fps = 400, 30.0
    raw = rng.normal(0, 30, (68, 2)) + 200 + np.cumsum(rng.normal(0, 0.5, (n, 1, 2)), axis=0)
    raw = (raw + rng.normal(0, 0.8, (n, 68, 2))).astype(np.float32)
    present = np.ones(n, bool)
    present[[50, 51, 52, 120, 203, 300]] = False  # gaps, and runs of 1 and 2 frames (200-202)
    present[200:202] = False
    whole = smooth_landmarks(np.where(present[:, None, None], raw, np.nan), present, fps)
    smoother = LandmarkSmoother(fps)
    got, lag = [], []
    for k in range(n):
        for j, lm in smoother.push(raw[k] if present[k] else None):
            got.append((j, lm))
            lag.append(k - j)
    got += smoother.finish()
    assert [j for j, _ in got] == list(range(n))
    assert [lm is None for _, lm in got] == list(~present)
    streamed = np.stack([np.full((68, 2), np.nan, np.float32) if lm is None else lm for _, lm in got])
    assert np.allclose(streamed, whole, atol=1e-3, equal_nan=True)
    assert max(lag) <= max(2 * smoother.radius, round(REF_SECONDS * fps)) + 1
    assert np.abs(np.diff(whole[60:110], axis=0)).mean() < np.abs(np.diff(raw[60:110], axis=0)).mean() / 2  # it smooths
