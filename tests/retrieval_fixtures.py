"""A real MouthBank from a talking clip, and frames of the same person outside it, built
once per test session (tracking and cropping take a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np

from facetalk.face.geometry import interocular, neutral_frame_index
from facetalk.identity.bank import BOUNDS, MAX_SCALE, MouthBank, extract_crop

CLIP = "news-anchor-de-20s.mp4"  # 512x512, 25 fps, a man talking to camera (teeth shown)
BANK_FRAMES = range(0, 300, 2)  # every 2nd frame of the first 12 s
HELD_FRAMES = range(320, 400, 4)  # later frames of the same person, never in the bank
N_TRACKED = 400


@dataclass(frozen=True)
class TalkingClip:
    """bank: crops of BANK_FRAMES; reference, reference_lm: the bank part's neutral
    frame (mouth closed) and its landmarks; held: {frame index: (frame, landmarks)}
    for HELD_FRAMES; fps of the clip."""

    bank: MouthBank
    reference: np.ndarray
    reference_lm: np.ndarray
    held: dict[int, tuple[np.ndarray, np.ndarray]]
    fps: float


@lru_cache(maxsize=2)
def talking_clip(media: Path) -> TalkingClip:
    from facetalk.face.models import FaceModels
    from facetalk.face.track import track_faces
    from facetalk.media.video import iter_frames, probe_video

    path = media / "talking" / CLIP
    fps = probe_video(path).fps
    wanted = set(BANK_FRAMES) | set(HELD_FRAMES)
    kept: dict[int, np.ndarray] = {}

    def frames():
        for i, f in enumerate(islice(iter_frames(path), N_TRACKED)):
            if i in wanted:
                kept[i] = f
            yield f

    track = track_faces(frames(), FaceModels(), fps=fps)
    lm = track.landmarks
    bank_idx = [i for i in BANK_FRAMES if track.present[i]]
    ref = bank_idx[neutral_frame_index(lm[bank_idx])]
    reference = kept[ref]
    scale = float(min(MAX_SCALE, np.median([interocular(lm[i]) for i in bank_idx])))
    crops, canon = zip(*(extract_crop(kept[i], lm[i], scale) for i in bank_idx))
    bank = MouthBank(np.stack(crops), np.stack(canon), np.array([[0, i] for i in bank_idx], np.int32), BOUNDS, scale)
    held = {i: (kept[i], lm[i].copy()) for i in HELD_FRAMES if track.present[i]}
    return TalkingClip(bank, reference, lm[ref].copy(), held, fps)
