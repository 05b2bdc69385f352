"""Generated faces for the neural renderer's tests: cartoon faces drawn from 68 landmarks
(a canonical template whose mouth is moved by the motion stage's own shape rules), one
palette per "person", and a tiny base model trained a few steps on them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facetalk.neural.config import ModelConfig, TrainSettings
from facetalk.neural.data import Samples, concat, samples_from_frames
from facetalk.render.mouth_shape import shape_canonical
from facetalk.types import MOUTH_PARAMS

# A closed neutral face in canonical space (eye midpoint at 0, inter-ocular distance 1),
# measured once on skimage's astronaut.
TEMPLATE = np.array([
    -1.048, 0.089, -1.033, 0.363, -0.995, 0.612, -0.957, 0.885, -0.85, 1.136, -0.701, 1.308, -0.484, 1.472, -0.269,
    1.603, 0.007, 1.626, 0.257, 1.596, 0.5, 1.462, 0.719, 1.318, 0.866, 1.107, 0.967, 0.889, 1.02, 0.611, 1.05, 0.335,
    1.08, 0.058, -0.902, -0.149, -0.773, -0.294, -0.591, -0.327, -0.406, -0.292, -0.219, -0.234, 0.238, -0.237, 0.418,
    -0.293, 0.601, -0.303, 0.785, -0.291, 0.907, -0.161, 0.0, 0.006, 0.011, 0.188, 0.021, 0.371, 0.032, 0.554, -0.214,
    0.659, -0.099, 0.676, 0.018, 0.715, 0.131, 0.685, 0.244, 0.656, -0.687, -0.001, -0.577, -0.076, -0.417, -0.085,
    -0.295, 0.046, -0.432, 0.053, -0.592, 0.063, 0.3, 0.034, 0.431, -0.065, 0.568, -0.073, 0.686, -0.011, 0.576, 0.064,
    0.438, 0.049, -0.499, 0.882, -0.318, 0.857, -0.112, 0.86, 0.004, 0.896, 0.14, 0.869, 0.323, 0.845, 0.507, 0.847,
    0.337, 1.041, 0.16, 1.08, 0.001, 1.122, -0.137, 1.097, -0.326, 1.063, -0.429, 0.901, -0.13, 0.977, 0.008, 0.985,
    0.144, 0.962, 0.462, 0.872, 0.153, 0.962, 0.016, 0.985, -0.121, 0.977,
]).reshape(68, 2)

PALETTES = [  # skin, lips, background, hair
    ((222, 180, 150), (170, 70, 80), (60, 90, 140), (60, 40, 30)),
    ((140, 95, 70), (110, 50, 55), (200, 200, 190), (20, 20, 20)),
    ((240, 205, 185), (200, 110, 120), (90, 140, 90), (180, 140, 60)),
]


def draw_face(lm: np.ndarray, shape: tuple[int, int], palette) -> np.ndarray:
    """A cartoon face (H, W, 3) uint8 drawn from (68, 2) pixel landmarks."""
    skin, lips, bg, hair = palette
    h, w = shape
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = bg
    ys = np.linspace(0, 1, h)[:, None, None]
    img = np.clip(img * (0.8 + 0.4 * ys), 0, 255).astype(np.uint8)  # a gradient: not flat
    s = 16
    p = lambda idx: np.round(lm[idx] * s).astype(np.int32)
    iod = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    top = lm[17:27].copy()
    top[:, 1] -= 0.5 * iod
    face = np.concatenate([lm[0:17], top[::-1]])
    cv2.fillPoly(img, [np.round(face * s).astype(np.int32)], skin, cv2.LINE_AA, 4)
    cv2.polylines(img, [p(list(range(17, 22))), p(list(range(22, 27)))], False, hair, max(1, int(iod / 8)), cv2.LINE_AA, 4)
    for eye in (list(range(36, 42)), list(range(42, 48))):
        cv2.fillPoly(img, [p(eye)], (250, 250, 250), cv2.LINE_AA, 4)
        c = lm[eye].mean(0)
        cv2.circle(img, tuple(np.round(c * s).astype(int)), max(1, int(iod * 0.08 * s)), (40, 30, 20), -1, cv2.LINE_AA, 4)
    cv2.polylines(img, [p(list(range(27, 31))), p(list(range(31, 36)))], False, tuple(int(v * 0.8) for v in skin), 1,
                  cv2.LINE_AA, 4)
    cv2.fillPoly(img, [p(list(range(48, 60)))], lips, cv2.LINE_AA, 4)
    inner = p(list(range(60, 68)))
    cv2.fillPoly(img, [inner], (40, 10, 15), cv2.LINE_AA, 4)
    gap = float(np.mean(lm[[65, 66, 67], 1] - lm[[63, 62, 61], 1]))
    if gap > 1.0:  # teeth under the upper lip
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [inner], 255, cv2.LINE_8, 4)
        band = np.zeros_like(mask)
        y0 = int(lm[[61, 62, 63], 1].mean())
        band[y0 : y0 + max(1, int(gap * 0.4))] = 255
        img[(mask > 0) & (band > 0)] = (235, 235, 225)
    return img


def person_frames(person: int, n: int, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n frames (n, size, size, 3) of one generated person talking, and their landmarks (n, 68, 2)."""
    rng = np.random.default_rng([seed, person])
    palette = PALETTES[person % len(PALETTES)]
    frames, lms = [], []
    for _ in range(n):
        mouth = np.zeros(len(MOUTH_PARAMS))
        mouth[:3] = rng.uniform(0, 1, 3) * [1.0, 0.6, 0.6]
        canon = shape_canonical(TEMPLATE, mouth)
        iod = size * rng.uniform(0.30, 0.34)
        angle = np.deg2rad(rng.uniform(-6, 6))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = np.array([size / 2, size * 0.36]) + rng.uniform(-2, 2, 2)
        lm = canon @ rot.T * iod + centre
        frames.append(draw_face(lm, (size, size), palette))
        lms.append(lm.astype(np.float32))
    return np.stack(frames), np.stack(lms)


def synthetic_samples(persons: list[int], n: int, crop: int, seed: int = 0) -> Samples:
    parts = []
    for p in persons:
        frames, lms = person_frames(p, n, seed=seed)
        parts.append(samples_from_frames(frames, lms, crop, f"person{p}"))
    return concat(parts)


TINY = ModelConfig(size=64, channels=(8, 16, 32), groups=4, heads=2)


def tiny_settings(steps: int, **kw) -> TrainSettings:
    base = dict(steps=steps, batch=4, lr=2e-3, ssim_weight=0.5, gan_weight=0.01, seed=0, checkpoint_every=0,
                preview_every=0)
    base.update(kw)
    return TrainSettings(**base)


def tiny_base(folder: Path, steps: int = 6) -> Path:
    """A tiny base model trained a few steps on two generated people, saved in folder."""
    import torch

    from facetalk.neural.train import train_base

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: two threads only spin against each other on a busy machine
    try:
        train_base(synthetic_samples([0, 1], 12, TINY.size), folder, TINY, tiny_settings(steps), name="tiny")
    finally:
        torch.set_num_threads(threads)
    return folder


def write_talking_identity(reg, name: str, person: int, frames: int = 12) -> str:
    """A version of identity `name` whose face clip is a generated person talking (with
    its landmarks), so adapters can be trained on it; returns its ref."""
    from PIL import Image
    from safetensors.numpy import save_file

    from facetalk.identity.bank import save_bank
    from facetalk.identity.model import (
        BANK_FILE,
        CLIP_FILE,
        FACE_FILE,
        REFERENCE_FILE,
        shapes_to_json,
    )
    from facetalk.media.encode import VideoWriter
    from facetalk.motion.shapes import target_table

    from .identity_fixtures import synthetic_data

    data = synthetic_data(person)
    video, lms = person_frames(person, frames)
    with reg.stage(name) as st:
        save_bank(data["bank"], st.path / BANK_FILE)
        face = dict(data["face"], clip_landmarks=lms.astype(np.float32))
        save_file(face, str(st.path / FACE_FILE))
        Image.fromarray(video[0]).save(st.path / REFERENCE_FILE)
        with VideoWriter(st.path / CLIP_FILE, video.shape[2], video.shape[1], 25.0, crf=0) as clip:
            for f in video:
                clip.write(f)
        st.manifest.update(consent="generated", footage=[], frames={"used": frames}, shapes=shapes_to_json(target_table()),
                           settings={})
    return st.ref
