"""A tiny but valid identity version, written through the registry's staging API (the same
path a real build takes): a few synthetic mouth crops, face tensors, a reference photo
and a 5-frame clip."""

from __future__ import annotations

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from facetalk.identity.bank import BOUNDS, MouthBank, crop_size, save_bank
from facetalk.identity.model import (
    BANK_FILE,
    CLIP_FILE,
    FACE_FILE,
    REFERENCE_FILE,
    shapes_to_json,
)
from facetalk.identity.registry import Registry
from facetalk.media.encode import VideoWriter
from facetalk.motion.shapes import target_table

SCALE = 16.0  # crop pixels per inter-ocular distance: tiny crops, fast tests
CLIP_SIZE = 32
CLIP_FRAMES = 5


def synthetic_data(seed: int = 0, n_crops: int = 3) -> dict:
    """The arrays write_version stores for a seed, to compare with what loads back."""
    rng = np.random.default_rng(seed)
    h, w = crop_size(BOUNDS, SCALE)
    bank = MouthBank(
        images=rng.integers(0, 256, (n_crops, h, w, 3), dtype=np.uint8),
        landmarks=rng.normal(size=(n_crops, 68, 2)).astype(np.float32),
        source=np.stack([np.zeros(n_crops), np.arange(n_crops)], axis=1).astype(np.int32),
        bounds=BOUNDS,
        scale=SCALE,
    )
    embeddings = rng.normal(size=(4, 128)).astype(np.float32)
    face = {"embedding": embeddings.mean(axis=0), "embeddings": embeddings,
            "neutral": rng.normal(size=(68, 2)).astype(np.float32),
            "clip_landmarks": rng.normal(size=(CLIP_FRAMES, 68, 2)).astype(np.float32)}
    reference = rng.integers(0, 256, (CLIP_SIZE, CLIP_SIZE, 3), dtype=np.uint8)
    return {"bank": bank, "face": face, "reference": reference, "shapes": target_table()}


def write_version(reg: Registry, name: str, seed: int = 0, consent: str | None = "recorded with consent") -> str:
    """Build the next version of name from synthetic_data(seed); returns its ref."""
    data = synthetic_data(seed)
    with reg.stage(name) as st:
        save_bank(data["bank"], st.path / BANK_FILE)
        save_file(data["face"], str(st.path / FACE_FILE))
        Image.fromarray(data["reference"]).save(st.path / REFERENCE_FILE)
        with VideoWriter(st.path / CLIP_FILE, CLIP_SIZE, CLIP_SIZE, 25.0) as clip:
            for k in range(CLIP_FRAMES):
                clip.write(np.full((CLIP_SIZE, CLIP_SIZE, 3), 40 * k, np.uint8))
        st.manifest.update(
            consent=consent,
            footage=[{"file": "talk.mp4", "size": 123456, "sha256": f"{seed:02d}" * 32}],
            frames={"used": 5, "skipped": {"no_face": 1, "blurred": 0}},
            shapes=shapes_to_json(data["shapes"]),
            settings={"crop_scale": SCALE, "seed": seed},
        )
    return st.ref
