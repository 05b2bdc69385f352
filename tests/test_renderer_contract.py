"""The contract every registered renderer must keep (parametrised over the registry).

A renderer that needs options gets them from OPTIONS: the retrieval renderer a real
mouth bank (another person's, from a talking clip, for the astronaut; the face's own
for the closed-mouth test, where "changes little" needs the same person)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from facetalk.composite import paste
from facetalk.errors import FacetalkError
from facetalk.face.detect import detect_faces, find_landmarks
from facetalk.face.models import FaceModels
from facetalk.identity.bank import BOUNDS, MouthBank, extract_crop
from facetalk.render.base import Renderer, available_renderers, get_renderer
from facetalk.types import MOUTH_PARAMS, Patch

from .retrieval_fixtures import talking_clip

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


def _face(models: FaceModels, img: np.ndarray) -> np.ndarray:
    boxes = detect_faces(models, img)
    assert boxes, "test face not found"
    return find_landmarks(models, img, boxes[0])


@pytest.fixture(scope="module")
def astronaut(models) -> tuple[np.ndarray, np.ndarray]:
    img = data.astronaut()
    return img, _face(models, img)


@pytest.fixture(scope="module")
def closed_face(models) -> tuple[np.ndarray, np.ndarray]:
    path = MEDIA / "faces" / "woman-portrait.png"
    if not path.is_file():
        pytest.skip("shared test media not available")
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].copy()
    return img, _face(models, img)


def _mouth(**kw: float) -> np.ndarray:
    return np.array([kw.get(k, 0.0) for k in MOUTH_PARAMS], np.float32)


def _own_bank(img: np.ndarray, lm: np.ndarray) -> MouthBank:
    """A one-entry bank of the face itself."""
    crop, canon = extract_crop(img, lm, 64.0)
    return MouthBank(crop[None], canon[None], np.zeros((1, 2), np.int32), BOUNDS, 64.0)


@pytest.fixture(scope="module")
def neural_base(tmp_path_factory) -> Path:
    """A tiny neural base model trained a few steps on generated faces."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from .neural_fixtures import tiny_base

    return tiny_base(tmp_path_factory.mktemp("neural") / "base")


# renderer name -> (pytest request, face image, its landmarks, same person?) -> constructor options
OPTIONS: dict[str, Callable] = {
    "retrieval": lambda request, img, lm, own: {
        "bank": _own_bank(img, lm) if own else talking_clip(request.getfixturevalue("media")).bank
    },
    "neural": lambda request, img, lm, own: {"base": request.getfixturevalue("neural_base")},
}


@pytest.fixture
def make(request) -> Callable[..., Renderer]:
    """make(name, img, lm, own=False): a new renderer with the options it needs."""

    def build(name: str, img: np.ndarray, lm: np.ndarray, own: bool = False) -> Renderer:
        options = OPTIONS[name](request, img, lm, own) if name in OPTIONS else {}
        return get_renderer(name, **options)

    return build


def test_every_renderer_has_its_options_here():
    for name in available_renderers():
        try:
            get_renderer(name)
        except FacetalkError:
            assert name in OPTIONS, f"{name} needs options: add them to OPTIONS"


def test_registry_knows_warp_and_rejects_unknown():
    assert available_renderers()[0] == "warp"
    assert "retrieval" in available_renderers()
    with pytest.raises(FacetalkError, match="warp"):
        get_renderer("nope")


@pytest.mark.parametrize("name", available_renderers())
def test_patch_shapes_and_placement(name, astronaut, make):
    img, lm = astronaut
    r = make(name, img, lm)
    assert isinstance(r, Renderer)
    r.prepare(img, lm)
    p = r.render(img, lm, _mouth(open=0.8, teeth=1.0), blink=0.5)
    assert isinstance(p, Patch)
    h, w = p.mask.shape
    assert p.image.shape == (h, w, 3) and p.image.dtype == np.uint8
    assert p.mask.dtype == np.float32 and 0.0 <= p.mask.min() and p.mask.max() <= 1.0
    assert 0 <= p.x0 and 0 <= p.y0 and p.x0 + w <= img.shape[1] and p.y0 + h <= img.shape[0]
    assert p.mask.max() > 0.99  # it changed something
    border = np.concatenate([p.mask[0], p.mask[-1], p.mask[:, 0], p.mask[:, -1]])
    assert border.max() == 0.0


@pytest.mark.parametrize("name", available_renderers())
def test_deterministic(name, astronaut, make):
    img, lm = astronaut
    outs = []
    for _ in range(2):
        r = make(name, img, lm)
        r.prepare(img, lm)
        p = r.render(img, lm, _mouth(open=0.6, wide=0.3, teeth=1.0), blink=0.2)
        outs.append(p)
    assert np.array_equal(outs[0].image, outs[1].image)
    assert np.array_equal(outs[0].mask, outs[1].mask)
    assert (outs[0].x0, outs[0].y0) == (outs[1].x0, outs[1].y0)


@pytest.mark.parametrize("name", available_renderers())
def test_no_landmarks_passes_through(name, astronaut, make):
    img, lm = astronaut
    r = make(name, img, lm)
    r.prepare(img, lm)
    assert r.render(img, None, _mouth(open=1.0)) is None
    assert np.array_equal(paste(img, None), img)


@pytest.mark.parametrize("name", available_renderers())
def test_closed_mouth_on_closed_face_changes_little(name, closed_face, make):
    img, lm = closed_face
    r = make(name, img, lm, own=True)
    r.prepare(img, lm)
    out = paste(img, r.render(img, lm, _mouth()))
    diff = np.abs(out.astype(np.int16) - img.astype(np.int16))
    assert diff.mean() < 0.5  # measured 0.12
    x0, y0 = lm[48:68].min(axis=0).astype(int)
    x1, y1 = lm[48:68].max(axis=0).astype(int)
    assert diff[y0:y1, x0:x1].mean() < 12  # the lips stay where they were


@pytest.mark.parametrize("name", available_renderers())
@pytest.mark.parametrize("mode", ["none", "mean", "histogram"])
def test_paste_leaves_outside_untouched(name, mode, astronaut, make):
    img, lm = astronaut
    r = make(name, img, lm)
    r.prepare(img, lm)
    p = r.render(img, lm, _mouth(open=0.9, teeth=1.0))
    out = paste(img, p, color_match=mode)
    assert out is not img and out.shape == img.shape
    outside = np.ones(img.shape[:2], bool)
    h, w = p.mask.shape
    outside[p.y0 : p.y0 + h, p.x0 : p.x0 + w] = p.mask <= 0
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("name", available_renderers())
def test_plan_then_render_each_frame(name, astronaut, make):
    """plan sees the whole mouth sequence once; render(k=i) then draws frame i of it."""
    img, lm = astronaut
    r = make(name, img, lm)
    r.prepare(img, lm)
    seq = np.stack([_mouth(), _mouth(open=0.5, teeth=1.0), _mouth(open=0.9, wide=0.3, teeth=1.0), _mouth(round=0.7)])
    r.plan(seq)
    for k, m in enumerate(seq):
        p = r.render(img, lm, m, 0.0, k=k)
        assert isinstance(p, Patch)
        border = np.concatenate([p.mask[0], p.mask[-1], p.mask[:, 0], p.mask[:, -1]])
        assert border.max() == 0.0
    assert r.render(img, None, seq[1], k=1) is None
    r.plan(seq[:0])  # an empty sequence is no error


@pytest.mark.parametrize("name", available_renderers())
def test_render_from_two_threads_repeats_exactly(name, astronaut, make):
    """The pipeline renders from two worker threads at once after plan()."""
    img, lm = astronaut
    r = make(name, img, lm)
    r.prepare(img, lm)
    rng = np.random.default_rng(0)
    seq = rng.uniform(0, 1, (6, len(MOUTH_PARAMS))).astype(np.float32)
    blinks = rng.uniform(0, 1, 6)
    r.plan(seq)
    serial = [r.render(img, lm, seq[k], blinks[k], k=k) for k in range(len(seq))]
    for _ in range(3):
        got: dict[int, Patch] = {}

        def work(ks: range, got: dict[int, Patch]) -> None:
            for k in ks:
                got[k] = r.render(img, lm, seq[k], blinks[k], k=k)

        threads = [threading.Thread(target=work, args=(range(j, len(seq), 2), got)) for j in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, p in enumerate(serial):
            assert np.array_equal(p.image, got[k].image) and np.array_equal(p.mask, got[k].mask)
            assert (p.x0, p.y0) == (got[k].x0, got[k].y0)


def test_paste_rejects_unknown_colour_mode(astronaut):
    img, lm = astronaut
    p = get_renderer("warp").render(img, lm, _mouth(open=0.5))
    with pytest.raises(FacetalkError):
        paste(img, p, color_match="fancy")
