"""The finishing steps on their own: face detail, the ONNX enhancer, the label, the chain
and the provenance tags, measured on real faces."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from facetalk.errors import InputError
from facetalk.eval.metrics import mouth_sharpness
from facetalk.face import geometry
from facetalk.face.detect import detect_landmarks
from facetalk.finish import Finisher, FinishOptions, provenance_metadata
from facetalk.finish.enhance import FaceDetail, face_region
from facetalk.finish.label import Label
from facetalk.finish.options import LABEL_CORNERS
from facetalk.finish.provenance import KEYS
from facetalk.finish.restore import FaceRestorer

from .finish_fixtures import write_cube, write_onnx


@pytest.fixture(scope="module")
def face(media, face_models):
    """A smiling face with teeth, its landmarks, and a blurred copy (a soft render)."""
    rgb = np.asarray(Image.open(media / "faces" / "smiling-man.jpg").convert("RGB"))
    lm = detect_landmarks(face_models, rgb)
    assert lm is not None
    return {"rgb": rgb, "lm": lm, "soft": cv2.GaussianBlur(rgb, (0, 0), 2.0)}


# -- enhance ---------------------------------------------------------------------------------

def test_enhance_sharpens_the_mouth_and_nothing_outside_the_face(face):
    soft, lm = face["soft"], face["lm"]
    out = FaceDetail().apply(soft.copy(), lm)
    before, after = mouth_sharpness([soft], [lm]), mouth_sharpness([out], [lm])
    assert after > 1.5 * before, f"mouth sharpness {before:.0f} -> {after:.0f}"
    x0, y0, x1, y1 = face_region(lm, soft.shape)
    outside = np.ones(soft.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(out[outside], soft[outside])
    # inside the box, where the feathered mask is 0, nothing changes either
    zero = FaceDetail().amount(lm, (x0, y0, x1, y1)) == 0
    assert zero.any() and np.array_equal(out[y0:y1, x0:x1][zero], soft[y0:y1, x0:x1][zero])


def test_enhance_changes_luma_only_and_spares_skin_noise(face):
    soft, lm = face["soft"], face["lm"]
    rng = np.random.default_rng(0)
    noisy = np.clip(soft + rng.normal(0, 1.0, soft.shape) + 0.5, 0, 255).astype(np.uint8)
    out = FaceDetail().apply(noisy.copy(), lm)
    d = out.astype(np.int16) - noisy
    assert np.abs(d).max() > 3
    assert np.abs(d[..., 0] - d[..., 1]).max() <= 1 and np.abs(d[..., 2] - d[..., 1]).max() <= 1, "chroma must not change"
    # a cheek patch: its fine grain (noise, pores) is not amplified
    iod = geometry.interocular(lm)
    cx, cy, r = int(lm[31, 0] - 0.45 * iod), int((lm[41, 1] + lm[48, 1]) / 2), int(0.08 * iod)
    cheek = (slice(cy - r, cy + r), slice(cx - r, cx + r))

    def grain(a):
        a = a.astype(np.float32)
        return (a - cv2.GaussianBlur(a, (0, 0), 3))[cheek].std()

    assert grain(out) < 1.1 * grain(noisy)
    assert mouth_sharpness([out], [lm]) > 1.3 * mouth_sharpness([noisy], [lm])


def test_enhance_skips_frames_without_a_usable_face(face):
    frame = face["soft"].copy()
    assert np.array_equal(FaceDetail().apply(frame, np.full((68, 2), np.nan)), face["soft"])


# -- the ONNX enhancer ----------------------------------------------------------------------

def test_enhancer_identity_model_gives_the_face_back_and_leaves_the_rest(face, tmp_path):
    model = write_onnx(tmp_path / "same.onnx")
    restorer = FaceRestorer(model)
    assert restorer.size == 512
    soft, lm = face["soft"], face["lm"]
    out = restorer.apply(soft.copy(), lm)
    x0, y0, x1, y1 = geometry.bbox(lm, pad=0.0, shape=soft.shape)
    inner = (slice(y0, y1), slice(x0, x1))
    diff = np.abs(out[inner].astype(np.float32) - soft[inner]).mean()
    assert diff < 2.0, f"the identity model must give the face back (up to resampling), mean diff {diff:.2f}"
    # only the aligned face square (about 4 IODs a side) is warped back: outside it nothing changes
    corners = geometry.apply(geometry.invert(restorer.align(lm)), np.array([[0, 0], [512, 0], [0, 512], [512, 512]]))
    fx0, fy0 = np.floor(corners.min(axis=0)).astype(int)
    fx1, fy1 = np.ceil(corners.max(axis=0)).astype(int)
    assert (fx1 - fx0) < 5 * geometry.interocular(lm)
    far = np.ones(soft.shape[:2], bool)
    far[max(fy0, 0):fy1, max(fx0, 0):fx1] = False
    assert far.mean() > 0.5 and np.array_equal(out[far], soft[far])


def test_enhancer_output_reaches_the_frame(face, tmp_path):
    restorer = FaceRestorer(write_onnx(tmp_path / "neg.onnx", op="Neg"))  # the face inverted
    soft, lm = face["soft"], face["lm"]
    out = restorer.apply(soft.copy(), lm)
    nose = (slice(int(lm[28, 1]), int(lm[30, 1])), slice(int(lm[31, 0]), int(lm[35, 0])))
    assert np.abs(out[nose].astype(np.float32) - (255 - soft[nose].astype(np.float32))).mean() < 4


def test_enhancer_dynamic_size_uses_512(tmp_path):
    assert FaceRestorer(write_onnx(tmp_path / "dyn.onnx", shape=("n", 3, "h", "w"))).size == 512
    assert FaceRestorer(write_onnx(tmp_path / "small.onnx", shape=(1, 3, 256, 256))).size == 256


@pytest.mark.parametrize("shape, words", [((1, 1, 512, 512), "not a batch of RGB images"),
                                          ((1, 3, 512, 256), "must be square"),
                                          ((3, 512, 512), "not a batch of RGB images")])
def test_enhancer_refuses_models_of_the_wrong_shape(tmp_path, shape, words):
    with pytest.raises(InputError, match=words) as e:
        FaceRestorer(write_onnx(tmp_path / "bad.onnx", shape=shape))
    assert "\n" not in str(e.value)


def test_enhancer_refuses_a_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InputError, match="cannot be loaded by onnxruntime") as e:
        FaceRestorer(junk)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="does not exist"):
        FaceRestorer(tmp_path / "missing.onnx")


# -- the label -------------------------------------------------------------------------------

@pytest.mark.parametrize("corner", LABEL_CORNERS)
def test_label_sits_in_its_corner_and_changes_only_its_box(corner):
    w, h = 640, 360
    frame = np.full((h, w, 3), 128, np.uint8)
    label = Label("AI-generated", w, h, corner=corner)
    out = label.apply(frame.copy())
    x0, y0, x1, y1 = label.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 <= w / 2) == corner.endswith("left") and (x0 >= w / 2) == corner.endswith("right")
    assert (y1 <= h / 2) == corner.startswith("top") and (y0 >= h / 2) == corner.startswith("bottom")
    changed = np.abs(out.astype(np.int16) - frame).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    # white text over a darkened box: both brighter and darker pixels than the frame
    box = out[y0:y1, x0:x1].astype(np.int16)
    assert box.max() > 220 and box.min() < 90


def test_label_scales_with_the_frame_and_follows_opacity():
    small, large = Label("AI-generated", 960, 540), Label("AI-generated", 1920, 1080)
    sw, sh = small.box[2] - small.box[0], small.box[3] - small.box[1]
    lw, lh = large.box[2] - large.box[0], large.box[3] - large.box[1]
    assert lh == pytest.approx(2 * sh, rel=0.12) and lw == pytest.approx(2 * sw, rel=0.12)
    assert lh == pytest.approx(1080 * 0.035 * 1.6, rel=0.35)  # text plus its padding
    assert Label("x", 640, 360, opacity=0.4).alpha.max() == pytest.approx(0.4, abs=1e-3)
    assert Label("x", 640, 360, size=0.1).box[3] - Label("x", 640, 360, size=0.1).box[1] > 2 * (
        Label("x", 640, 360, size=0.04).box[3] - Label("x", 640, 360, size=0.04).box[1])


def test_label_always_fits_the_frame():
    label = Label("A very long label that cannot fit on this small frame", 64, 48, corner="top-left")
    x0, y0, x1, y1 = label.box
    assert 0 <= x0 and x1 <= 64 and 0 <= y0 and y1 <= 48
    label.apply(np.zeros((48, 64, 3), np.uint8))


# -- the chain and its options ---------------------------------------------------------------

def test_chain_grades_before_the_label(tmp_path):
    swap = write_cube(tmp_path / "swap.cube")
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[..., 0] = 200  # red
    out = Finisher(FinishOptions(lut=str(swap)), 640, 360).apply(frame)
    assert np.abs(out[10, 10].astype(int) - [0, 0, 200]).max() <= 1, "red becomes blue"
    # the label is drawn on the graded frame, so its white stays white
    expected = Label("AI-generated", 640, 360).apply(np.ascontiguousarray(frame[..., ::-1]))
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (frame[..., 0] == 200).all(), "the caller's frame is left alone"


def test_chain_is_thread_safe_and_matches_one_thread(face):
    finisher = Finisher(FinishOptions(enhance=True))
    frames = [np.roll(face["soft"], k, axis=1) for k in range(6)]
    lms = [face["lm"] + [k, 0] for k in range(6)]
    alone = [finisher.apply(f, lm, k) for k, (f, lm) in enumerate(zip(frames, lms))]
    got: dict[int, np.ndarray] = {}

    def work(ks):
        for k in ks:
            got[k] = finisher.apply(frames[k], lms[k], k)

    threads = [threading.Thread(target=work, args=(range(i, 6, 2),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(got[k], alone[k]) for k in range(6))


@pytest.mark.parametrize("options, words", [
    ({"label_corner": "middle"}, "unknown --label-corner"),
    ({"lut_strength": 1.5}, "--lut-strength 1.5 is out of range"),
    ({"lut": "/no/such/look.cube"}, "does not exist"),
    ({"enhancer": "/no/such/model.onnx"}, "does not exist"),
    ({"label_size": 0.5}, "--label-size"),
    ({"label_opacity": 0.0}, "--label-opacity"),
    ({"label_text": "  "}, "--label-text is empty"),
])
def test_options_are_checked_in_one_line(options, words):
    with pytest.raises(InputError, match=words.replace("-", r"\-").replace(".", r"\.")) as e:
        Finisher(FinishOptions(**options))
    assert "\n" not in str(e.value)


def test_options_describe_what_is_applied():
    o = FinishOptions(lut="/x/look.cube", lut_strength=0.5, enhance=True, label=False)
    assert o.describe() == "enhance; lut look.cube at 0.5"
    assert o.label_description() == "none"
    assert FinishOptions().label_description() == "AI-generated (bottom-right)"
    assert FinishOptions().describe() == "none"


def test_provenance_tags():
    tags = provenance_metadata(renderer="retrieval", identity="ana@v2", job_id="20260101-abc",
                               label="AI-generated (bottom-right)", finish="enhance")
    assert set(tags) == set(KEYS)
    assert all(isinstance(v, str) and v for v in tags.values())
    assert tags["ai_generated"] == "true" and tags["renderer"] == "retrieval" and tags["identity"] == "ana@v2"
    assert tags["job_id"] == "20260101-abc" and tags["generator"].startswith("facetalk ")
    for fact in ("AI-generated", "retrieval", "ana@v2", "20260101-abc", "enhance"):
        assert fact in tags["comment"] and fact in tags["description"]
    bare = provenance_metadata(renderer="warp")
    assert bare["identity"] == "none" and bare["job_id"] == "none" and bare["label"] == "none"
