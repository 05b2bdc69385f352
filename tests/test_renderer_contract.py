"""The contract every registered renderer must keep (parametrised over the registry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from facetalk.composite import paste
from facetalk.errors import FacetalkError
from facetalk.face.detect import detect_faces, find_landmarks
from facetalk.face.models import FaceModels
from facetalk.render.base import Renderer, available_renderers, get_renderer
from facetalk.types import MOUTH_PARAMS, Patch

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


def test_registry_knows_warp_and_rejects_unknown():
    assert available_renderers()[0] == "warp"
    with pytest.raises(FacetalkError, match="warp"):
        get_renderer("nope")


@pytest.mark.parametrize("name", available_renderers())
def test_patch_shapes_and_placement(name, astronaut):
    img, lm = astronaut
    r = get_renderer(name)
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
def test_deterministic(name, astronaut):
    img, lm = astronaut
    outs = []
    for _ in range(2):
        r = get_renderer(name)
        r.prepare(img, lm)
        p = r.render(img, lm, _mouth(open=0.6, wide=0.3, teeth=1.0), blink=0.2)
        outs.append(p)
    assert np.array_equal(outs[0].image, outs[1].image)
    assert np.array_equal(outs[0].mask, outs[1].mask)
    assert (outs[0].x0, outs[0].y0) == (outs[1].x0, outs[1].y0)


@pytest.mark.parametrize("name", available_renderers())
def test_no_landmarks_passes_through(name, astronaut):
    img, lm = astronaut
    r = get_renderer(name)
    r.prepare(img, lm)
    assert r.render(img, None, _mouth(open=1.0)) is None
    assert np.array_equal(paste(img, None), img)


@pytest.mark.parametrize("name", available_renderers())
def test_closed_mouth_on_closed_face_changes_little(name, closed_face):
    img, lm = closed_face
    r = get_renderer(name)
    r.prepare(img, lm)
    out = paste(img, r.render(img, lm, _mouth()))
    diff = np.abs(out.astype(np.int16) - img.astype(np.int16))
    assert diff.mean() < 0.5  # measured 0.12
    x0, y0 = lm[48:68].min(axis=0).astype(int)
    x1, y1 = lm[48:68].max(axis=0).astype(int)
    assert diff[y0:y1, x0:x1].mean() < 12  # the lips stay where they were


@pytest.mark.parametrize("name", available_renderers())
@pytest.mark.parametrize("mode", ["none", "mean", "histogram"])
def test_paste_leaves_outside_untouched(name, mode, astronaut):
    img, lm = astronaut
    r = get_renderer(name)
    r.prepare(img, lm)
    p = r.render(img, lm, _mouth(open=0.9, teeth=1.0))
    out = paste(img, p, color_match=mode)
    assert out is not img and out.shape == img.shape
    outside = np.ones(img.shape[:2], bool)
    h, w = p.mask.shape
    outside[p.y0 : p.y0 + h, p.x0 : p.x0 + w] = p.mask <= 0
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out, img)


def test_paste_rejects_unknown_colour_mode(astronaut):
    img, lm = astronaut
    p = get_renderer("warp").render(img, lm, _mouth(open=0.5))
    with pytest.raises(FacetalkError):
        paste(img, p, color_match="fancy")
