"""Evaluation metrics against known answers, on dlib landmarks of a real clip and synthetic data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetalk.eval import metrics
from facetalk.face import geometry

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIP = MEDIA / "talking" / "congresswoman-8s.mp4"
N_FRAMES = 60


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], np.ndarray]:
    """First N_FRAMES RGB frames of a real talking clip and their dlib landmarks (n, 68, 2)."""
    if not CLIP.is_file():
        pytest.skip(f"test media missing: {CLIP}")
    import av

    from facetalk.face.detect import detect_faces, find_landmarks
    from facetalk.face.models import FaceModels

    frames = []
    with av.open(str(CLIP)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == N_FRAMES:
                break
    models = FaceModels()
    landmarks, box = [], None
    for i, rgb in enumerate(frames):
        if i % 15 == 0:  # re-detect now and then; the head turns
            box = detect_faces(models, rgb)[0]
        landmarks.append(find_landmarks(models, rgb, box))
    return frames, np.stack(landmarks).astype(np.float64)


def smooth_series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.normal(size=n + 8), np.hanning(9), mode="valid")[:n]


def similarity(lm: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return lm @ rot.T + np.asarray(shift)


def test_real_clip_mouth_moves(clip):
    _, lm = clip
    assert metrics.valid_frames(lm).all()
    openness = metrics.openness_series(lm)
    assert openness.max() - openness.min() > 0.1  # a talking mouth: real signal to compare


def test_self_comparison_is_perfect(clip):
    _, lm = clip
    assert metrics.openness_correlation(lm, lm) == pytest.approx(1.0)
    lag, r = metrics.av_offset(metrics.openness_series(lm), metrics.openness_series(lm))
    assert lag == 0 and r == pytest.approx(1.0)
    assert metrics.lmd(lm, lm) == pytest.approx(0.0, abs=1e-9)


def test_shift_by_three_frames_found_with_sign(clip):
    _, lm = clip
    for real in (metrics.openness_series(lm), smooth_series(200, 0)):
        late = np.concatenate([np.full(3, np.nan), real[:-3]])  # generated moves 3 frames late
        early = np.concatenate([real[3:], np.full(3, np.nan)])
        assert metrics.av_offset(late, real)[0] == 3
        assert metrics.av_offset(early, real)[0] == -3
        assert metrics.av_offset(late, real)[1] == pytest.approx(1.0)


def test_frozen_mouth_does_not_correlate(clip):
    _, lm = clip
    # the mouth keeps frame 0's shape relative to the eyes while the head moves on
    mouth0 = geometry.apply(geometry.to_canonical(lm[0]), lm[0, geometry.MOUTH])
    frozen = lm.copy()
    for i, f in enumerate(lm):
        frozen[i, geometry.MOUTH] = geometry.apply(geometry.invert(geometry.to_canonical(f)), mouth0)
    assert metrics.openness_correlation(frozen, lm) == 0.0  # zero variance: defined as 0
    rng = np.random.default_rng(1)
    wobbly = frozen + rng.normal(scale=0.3, size=frozen.shape)  # sub-pixel noise only
    assert abs(metrics.openness_correlation(wobbly, lm)) < 0.2
    assert metrics.lmd(frozen, lm) > 0.02


def test_missing_frames_are_skipped(clip):
    _, lm = clip
    gen = lm.copy()
    gen[[5, 20, 33]] = np.nan
    assert metrics.openness_correlation(gen, lm) == pytest.approx(1.0)
    assert metrics.lmd(gen, lm) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(metrics.lmd(np.full_like(lm, np.nan), lm))


def test_lmd_ignores_pose_and_measures_mouth_in_iod(clip):
    _, lm = clip
    moved = np.stack([similarity(f, 12.0, 0.6, (40, -25)) for f in lm])
    assert metrics.lmd(moved, lm) == pytest.approx(0.0, abs=1e-6)
    # push every mouth point 0.1 IOD down (along the face's own vertical)
    shifted = lm.copy()
    for i, f in enumerate(lm):
        m = geometry.to_canonical(f)
        canon = geometry.apply(m, f[geometry.MOUTH]) + [0.0, 0.1]
        shifted[i, geometry.MOUTH] = geometry.apply(geometry.invert(m), canon)
    assert metrics.lmd(shifted, lm) == pytest.approx(0.1, rel=1e-6)


def test_identity_distance_known_values():
    ref = np.zeros(128)
    dists = np.linspace(0.2, 0.6, 10)
    emb = np.zeros((10, 128))
    emb[:, 0] = dists
    out = metrics.identity_distance(emb, ref)
    assert out["mean"] == pytest.approx(0.4)
    assert out["max"] == pytest.approx(0.6)
    assert out["drift"] == pytest.approx(dists[-2:].mean() - dists[:2].mean())
    emb[3] = np.nan
    assert metrics.identity_distance(emb, ref)["max"] == pytest.approx(0.6)
    steady = metrics.identity_distance(np.ones((20, 128)) * 0.01, ref)
    assert steady["drift"] == pytest.approx(0.0)


def test_blurred_mouth_is_less_sharp(clip):
    frames, lm = clip
    frames, lm = frames[:10], lm[:10]
    blurred = []
    for rgb, f in zip(frames, lm):
        x0, y0, x1, y1 = metrics.mouth_box(f, rgb.shape)
        out = rgb.copy()
        out[y0:y1, x0:x1] = cv2.GaussianBlur(rgb, (0, 0), 2.0)[y0:y1, x0:x1]
        blurred.append(out)
    assert metrics.mouth_sharpness(frames, lm) > 0
    assert metrics.sharpness_ratio(frames, lm, frames, lm) == pytest.approx(1.0)
    assert metrics.sharpness_ratio(blurred, lm, frames, lm) < 0.5


def test_psnr_ssim(clip):
    frames, lm = clip
    real = frames[0]
    psnr, ssim = metrics.face_psnr_ssim(real, real.copy(), lm[0])
    assert psnr == float("inf") and ssim == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    noisy = np.clip(real.astype(np.int16) + rng.integers(-8, 9, real.shape), 0, 255).astype(np.uint8)
    psnr, ssim = metrics.face_psnr_ssim(noisy, real, lm[0])
    assert 25 < psnr < 40 and 0.5 < ssim < 0.99
    # changes outside the face box do not count
    outside = real.copy()
    outside[:5, :5] = 0
    assert metrics.face_psnr_ssim(outside, real, lm[0])[0] == float("inf")


def test_jitter_counts_wobble_not_head_motion(clip):
    _, lm = clip
    static = np.repeat(lm[:1], 40, axis=0)
    assert metrics.jitter(static) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(3)
    noisy = static + rng.normal(scale=1.0, size=static.shape)
    assert metrics.jitter(noisy) > 0.005
    # smooth sway, roll and breathing scale are removed before measuring
    t = np.arange(40) / 25
    swaying = np.stack(
        [
            similarity(f, 1.5 * np.sin(ti), 1 + 0.003 * np.sin(2 * ti), (3 * np.sin(ti), 2 * ti))
            for f, ti in zip(static, t)
        ]
    )
    assert metrics.jitter(swaying) < 1e-6
    noisy_real = lm + rng.normal(scale=1.0, size=lm.shape)
    assert metrics.jitter_ratio(noisy_real, lm) > 1.1
    assert metrics.jitter_ratio(lm, lm) == pytest.approx(1.0)


def test_pearson_edge_cases():
    a = smooth_series(50, 4)
    assert metrics.pearson(a, -a) == pytest.approx(-1.0)
    assert metrics.pearson(a, np.ones(50)) == 0.0
    assert metrics.pearson(a[:2], a[:2]) == 0.0
    assert metrics.av_offset(np.ones(30), a[:30]) == (0, 0.0)


def synthetic_faces(widths: np.ndarray) -> np.ndarray:
    """(n, 68, 2) faces with eye centres 40 px apart and the mouth corners (48, 54)
    widths[i] IODs apart; every other point, the inner lips included, stays put."""
    n = len(widths)
    lm = np.zeros((n, 68, 2))
    lm[:, geometry.LEFT_EYE] = (30.0, 40.0)
    lm[:, geometry.RIGHT_EYE] = (70.0, 40.0)
    lm[:, geometry.MOUTH] = (50.0, 80.0)
    lm[:, 48, 0] = 50.0 - 20.0 * widths
    lm[:, 54, 0] = 50.0 + 20.0 * widths
    return lm


def test_width_series_follows_the_corners_in_iod():
    widths = 0.9 + 0.05 * smooth_series(80, 5)
    lm = synthetic_faces(widths)
    assert metrics.width_series(lm) == pytest.approx(widths)
    # pose and scale do not count: the width is relative to the eyes
    moved = np.stack([similarity(f, -15.0, 1.7, (12, 30)) for f in lm])
    assert metrics.width_series(moved) == pytest.approx(widths)
    # the corners moving is not an opening: openness stays flat, width carries the motion
    assert np.ptp(metrics.openness_series(lm)) == pytest.approx(0.0, abs=1e-12)
    lm[[3, 40]] = np.nan
    w = metrics.width_series(lm)
    assert np.isnan(w[[3, 40]]).all() and np.isfinite(np.delete(w, [3, 40])).all()


def test_width_shift_found_with_sign_and_lag0_r_lower():
    real_w = 0.9 + 0.05 * smooth_series(120, 6)
    real = metrics.width_series(synthetic_faces(real_w))
    late = metrics.width_series(synthetic_faces(np.r_[np.full(4, real_w[0]), real_w[:-4]]))  # corners 4 frames late
    lag, r_best = metrics.av_offset(late, real)
    assert lag == 4 and r_best == pytest.approx(1.0)
    assert metrics.pearson(late, real) < r_best - 0.1  # what a viewer sees at lag 0
    early = metrics.width_series(synthetic_faces(np.r_[real_w[2:], np.full(2, real_w[-1])]))
    assert metrics.av_offset(early, real)[0] == -2


def test_real_clip_width_against_itself(clip):
    _, lm = clip
    w = metrics.width_series(lm)
    assert np.ptp(w) > 0.05  # her mouth corners move: a second signal beside the opening
    assert metrics.av_offset(w, w) == (0, pytest.approx(1.0))
