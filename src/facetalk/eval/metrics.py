"""Evaluation metrics: lip-sync, mouth shape, identity, sharpness, stability, fidelity.

Landmark inputs are (n, 68, 2) arrays in dlib order, one row per video frame; a frame
whose face was not found holds NaN and is skipped by every metric. Distances on faces
are in units of the inter-ocular distance (IOD), so they mean the same at any size.
Where a correlation cannot be measured (fewer than 3 frames, or one side constant)
it is defined as 0: a frozen mouth is not in sync with anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..face import geometry

# Non-mouth points for jitter, without the moving eyelids (37, 38, 40, 41, 43, 44, 46,
# 47) so that blinks, real or generated, do not count as instability.
STABLE_POINTS = np.r_[0:36, 36, 39, 42, 45]
MIN_FRAMES = 3


def valid_frames(lm: np.ndarray) -> np.ndarray:
    """(n,) bool: frames whose 68 landmarks are all finite."""
    lm = np.asarray(lm, dtype=np.float64)
    return np.isfinite(lm).all(axis=(1, 2))


def _per_frame(lm: np.ndarray, measure) -> np.ndarray:
    """(n,) float64 measure(landmarks) of each frame with a face; NaN where it is missing."""
    lm = np.asarray(lm, dtype=np.float64)
    out = np.full(len(lm), np.nan)
    ok = valid_frames(lm)
    if ok.any():
        out[ok] = measure(lm[ok])
    return out


def openness_series(lm: np.ndarray) -> np.ndarray:
    """(n,) float64 inner-lip gap over IOD per frame; NaN where the face is missing."""
    return _per_frame(lm, geometry.mouth_openness)


def width_series(lm: np.ndarray) -> np.ndarray:
    """(n,) float64 mouth-corner distance (points 48-54) over IOD per frame; NaN where
    the face is missing. Rounded lips ("oo") narrow it, a smile widens it: lip motion
    that openness alone does not see."""
    return _per_frame(lm, geometry.mouth_width)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over positions where both (n,) series are finite; 0 when undefined."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_FRAMES:
        return 0.0
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom < 1e-12:
        return 0.0
    return float((a * b).sum() / denom)


def openness_correlation(gen_lm: np.ndarray, real_lm: np.ndarray) -> float:
    """Pearson r of per-frame mouth openness, generated vs real, over frames both have."""
    return pearson(openness_series(gen_lm), openness_series(real_lm))


def av_offset(gen_open: np.ndarray, real_open: np.ndarray, max_lag: int = 10) -> tuple[int, float]:
    """Lag in [-max_lag, max_lag] frames maximising Pearson r, and r there.

    Sign: a positive lag means the generated mouth lags the real one (it moves that
    many frames late): gen_open[t + lag] best matches real_open[t]. Ties go to the
    smaller |lag|. Series are (n,) per frame (openness_series, width_series), NaN where
    missing. r here is at least the lag-0 r; the lag-0 one is what a viewer sees.
    """
    gen, real = np.asarray(gen_open, dtype=np.float64), np.asarray(real_open, dtype=np.float64)
    n = min(len(gen), len(real))
    gen, real = gen[:n], real[:n]
    best_lag, best_r = 0, -np.inf
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        if abs(lag) >= n:
            continue
        r = pearson(gen[lag:], real[: n - lag]) if lag >= 0 else pearson(gen[: n + lag], real[-lag:])
        if r > best_r + 1e-12:
            best_lag, best_r = lag, r
    return best_lag, float(best_r) if np.isfinite(best_r) else 0.0


def lmd(gen_lm: np.ndarray, real_lm: np.ndarray) -> float:
    """Mouth landmark distance: mean distance of points 48-67, in units of IOD.

    Each face is first mapped to its own canonical space (geometry.to_canonical: eyes
    level, IOD 1), as the paper-style LMD does on aligned faces, so head pose, position
    and scale differences do not count, only the mouth's shape relative to the eyes.
    NaN when no frame has both faces.
    """
    gen_lm, real_lm = np.asarray(gen_lm, dtype=np.float64), np.asarray(real_lm, dtype=np.float64)
    n = min(len(gen_lm), len(real_lm))
    ok = valid_frames(gen_lm[:n]) & valid_frames(real_lm[:n])
    dists = []
    for g, r in zip(gen_lm[:n][ok], real_lm[:n][ok]):
        pg = geometry.apply(geometry.to_canonical(g), g[geometry.MOUTH])
        pr = geometry.apply(geometry.to_canonical(r), r[geometry.MOUTH])
        dists.append(np.linalg.norm(pg - pr, axis=1).mean())
    return float(np.mean(dists)) if dists else float("nan")


def identity_distance(gen_embeddings: np.ndarray, real_embedding: np.ndarray) -> dict[str, float]:
    """Euclidean distance of per-frame face embeddings (n, d) to the real one (d,).

    dlib's 128-D embeddings call two faces the same person under ~0.6. Returns mean,
    max, and drift = mean over the last 20% of frames minus the first 20% (positive:
    the identity wanders off over time). NaN rows are skipped; all NaN when none left.
    """
    emb = np.asarray(gen_embeddings, dtype=np.float64)
    ref = np.asarray(real_embedding, dtype=np.float64).ravel()
    emb = emb[np.isfinite(emb).all(axis=1)]
    if len(emb) == 0:
        return {"mean": float("nan"), "max": float("nan"), "drift": float("nan")}
    d = np.linalg.norm(emb - ref, axis=1)
    k = max(1, int(round(0.2 * len(d))))
    return {"mean": float(d.mean()), "max": float(d.max()), "drift": float(d[-k:].mean() - d[:k].mean())}


def mouth_box(lm: np.ndarray, shape: tuple[int, ...], pad: float = 0.2) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the outer lips grown by pad times the mouth width."""
    return geometry.bbox(np.asarray(lm, dtype=np.float64)[geometry.OUTER_LIPS], pad=pad, shape=shape)


def _laplacian_variance(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
    x0, y0, x1, y1 = box
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    h, w = rgb.shape[:2]
    # one pixel of context so the box edge is filtered like its inside
    ax0, ay0, ax1, ay1 = max(0, x0 - 1), max(0, y0 - 1), min(w, x1 + 1), min(h, y1 + 1)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[ay0:ay1, ax0:ax1]), cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(grey, cv2.CV_64F, ksize=3)
    return float(lap[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0].var())


def mouth_sharpness(frames: Iterable[np.ndarray], landmarks: np.ndarray) -> float:
    """Mean variance of the Laplacian of grey pixels in the mouth box of each frame.

    frames: RGB uint8 (H, W, 3) images, any iterable (decoded lazily is fine), paired
    with landmarks (n, 68, 2). Higher is sharper. The value depends on resolution, so
    compare videos of the same size. NaN when no frame has a face.
    """
    values = []
    for rgb, lm in zip(frames, np.asarray(landmarks, dtype=np.float64)):
        if not np.isfinite(lm).all():
            continue
        v = _laplacian_variance(rgb, mouth_box(lm, rgb.shape))
        if v is not None:
            values.append(v)
    return float(np.mean(values)) if values else float("nan")


def sharpness_ratio(
    gen_frames: Iterable[np.ndarray],
    gen_lm: np.ndarray,
    real_frames: Iterable[np.ndarray],
    real_lm: np.ndarray,
) -> float:
    """mouth_sharpness of the generated video over that of the real one (1 = as sharp)."""
    real = mouth_sharpness(real_frames, real_lm)
    gen = mouth_sharpness(gen_frames, gen_lm)
    return float(gen / real) if real > 0 else float("nan")


def _similarity_residual(p: np.ndarray, q: np.ndarray) -> float:
    """Mean distance left after the best similarity transform (shift, turn, scale) p -> q."""
    pc = (p[:, 0] - p[:, 0].mean()) + 1j * (p[:, 1] - p[:, 1].mean())
    qc = (q[:, 0] - q[:, 0].mean()) + 1j * (q[:, 1] - q[:, 1].mean())
    denom = (np.abs(pc) ** 2).sum()
    a = (np.conj(pc) * qc).sum() / denom if denom > 0 else 1.0
    return float(np.abs(a * pc - qc).mean())


def jitter(landmarks: np.ndarray) -> float:
    """Mean frame-to-frame non-rigid motion of the non-mouth landmarks, in IOD.

    For each pair of consecutive frames with a face, the best similarity transform
    between their jaw, brow, nose and eye-corner points is removed first: head sway,
    roll and breathing scale are intended motion; what remains is the face outline
    wobbling, which is what flicker looks like. NaN with fewer than two such pairs.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    ok = valid_frames(lm)
    values = []
    for t in np.nonzero(ok[1:] & ok[:-1])[0] + 1:
        iod = 0.5 * (geometry.interocular(lm[t - 1]) + geometry.interocular(lm[t]))
        if iod > 1e-6:
            values.append(_similarity_residual(lm[t - 1][STABLE_POINTS], lm[t][STABLE_POINTS]) / iod)
    return float(np.mean(values)) if len(values) >= 2 else float("nan")


def jitter_ratio(gen_lm: np.ndarray, real_lm: np.ndarray) -> float:
    """jitter of the generated landmarks over the real ones (1 = as steady as real)."""
    real = jitter(real_lm)
    return float(jitter(gen_lm) / real) if real > 0 else float("nan")


def face_box(lm: np.ndarray, shape: tuple[int, ...], pad: float = 0.1) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around all 68 landmarks grown by pad times the face size."""
    return geometry.bbox(np.asarray(lm, dtype=np.float64), pad=pad, shape=shape)


def face_psnr_ssim(
    gen_frame: np.ndarray, real_frame: np.ndarray, landmarks: np.ndarray
) -> tuple[float, float]:
    """PSNR (dB, inf when identical) and SSIM over the face box of two same-size RGB frames.

    landmarks: (68, 2) of the face in the real frame, which places the box.
    """
    if gen_frame.shape != real_frame.shape:
        raise ValueError(f"frame sizes differ: {gen_frame.shape} vs {real_frame.shape}")
    x0, y0, x1, y1 = face_box(landmarks, real_frame.shape)
    gen, real = gen_frame[y0:y1, x0:x1], real_frame[y0:y1, x0:x1]
    if min(gen.shape[:2]) < 7:  # SSIM's 7x7 window
        raise ValueError(f"face box too small for SSIM: {x1 - x0}x{y1 - y0} px")
    if np.array_equal(gen, real):
        psnr = float("inf")
    else:
        psnr = float(peak_signal_noise_ratio(real, gen, data_range=255))
    ssim = float(structural_similarity(real, gen, channel_axis=-1, data_range=255))
    return psnr, ssim
