"""`facetalk lipsync prepare`: talking-head footage -> lip model training data.

One safetensors file per clip (never pickle): the log-mel features of its soundtrack as
recorded and through each augmentation of augment.VARIANTS (float16, 100 rows a second),
and per video frame the mouth targets (targets.mouth_targets) with their usable mask.
A corpus is a folder with a MANIFEST.tsv (file, speaker, language, ...; see
../shared/corpus/README.md); a clip already prepared from the same file is kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import replacing
from ..errors import InputError
from .augment import VARIANTS
from .features import log_mel

PREPARE_VERSION = "1"


@dataclass(frozen=True)
class Clip:
    """One row of a corpus manifest: the file, who speaks, in which language."""

    path: Path
    speaker: str
    language: str
    source: str = ""
    licence: str = ""

    @property
    def key(self) -> str:
        """A file name for its prepared data: readable, unique per path."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:8]
        return f"{self.path.stem}-{digest}"


def read_manifest(corpus: Path) -> list[Clip]:
    """The clips of a corpus folder's MANIFEST.tsv (columns file, speaker, language at least)."""
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        raise InputError(f"{corpus} has no MANIFEST.tsv (a tab-separated file, speaker, language table)")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"file", "speaker"} <= set(rows[0]):
        raise InputError(f"{manifest} needs the columns file and speaker (language is optional)")
    clips = [Clip((corpus / r["file"]).resolve(), r["speaker"], r.get("language") or "?", r.get("source") or "",
                  r.get("licence") or "") for r in rows]
    missing = [c.path for c in clips if not c.path.is_file()]
    if missing:
        raise InputError(f"{manifest} names {len(missing)} missing files, first {missing[0]}")
    return clips


def track_clip(path: Path, models) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Landmarks of the main face of a clip: smoothed and raw (n, 68, 2), present (n,),
    mouth sharpness (n,) measured on the frame as it is decoded, and the frame rate."""
    from ..eval.metrics import mouth_sharpness
    from ..face.track import follow_face, smooth_landmarks
    from ..media.video import iter_frames, probe_video

    fps = probe_video(path).fps
    current: list[np.ndarray] = []

    def frames():
        for f in iter_frames(path):
            current[:] = [f]
            yield f

    raw, sharp = [], []
    for lm in follow_face(frames(), models, fps=fps):
        raw.append(lm)
        sharp.append(mouth_sharpness(current, lm[None]) if lm is not None else np.nan)
    n = len(raw)
    raw_arr = np.full((n, 68, 2), np.nan, np.float32)
    present = np.array([lm is not None for lm in raw], bool)
    for i, lm in enumerate(raw):
        if lm is not None:
            raw_arr[i] = lm
    return smooth_landmarks(raw_arr, present, fps), raw_arr, present, np.asarray(sharp, np.float64), fps


def prepare_clip(clip: Clip, out: Path, seed: int = 0) -> Path:
    """Prepare one clip into out/<key>.safetensors (kept when already there for this file)."""
    from safetensors.numpy import save_file

    from ..face.models import FaceModels
    from ..media.audio import load_audio
    from .targets import mouth_targets

    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{clip.key}.safetensors"
    size = str(clip.path.stat().st_size)
    if dest.is_file() and _meta(dest).get("source_size") == size and _meta(dest).get("version") == PREPARE_VERSION:
        return dest
    lm, raw, present, sharp, fps = track_clip(clip.path, FaceModels())
    t = mouth_targets(lm, raw, present, sharp)
    samples = load_audio(clip.path).samples
    rng = np.random.default_rng([seed, int(hashlib.sha1(clip.key.encode()).hexdigest()[:8], 16)])
    tensors = {"open": t.open, "width": t.width, "mouth": t.mouth, "usable": t.usable.astype(np.uint8)}
    for name, fn in VARIANTS.items():
        x = samples if fn is None else fn(samples, rng)
        tensors[f"mel_{name}"] = log_mel(x).astype(np.float16)
    meta = {"version": PREPARE_VERSION, "file": str(clip.path), "source_size": size, "speaker": clip.speaker,
            "language": clip.language, "fps": repr(float(fps)), "frames": str(len(t.open)),
            "usable": str(int(t.usable.sum()))}
    with replacing(dest, keep_suffix=True) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return dest


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return dict(f.metadata() or {})
    except Exception:  # an unreadable cache entry is prepared again
        return {}


def prepare_corpus(corpus: Path, out: Path, jobs: int = 1, seed: int = 0,
                   progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Prepare every clip of a corpus folder into out/, jobs clips at a time. Writes
    out/index.json (one entry per clip: key, file, speaker, language, fps, frames, usable,
    and the manifest's source and licence, which a trained model's card lists)."""
    clips = read_manifest(corpus)
    out.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    if jobs <= 1:
        for i, c in enumerate(clips):
            done.append(prepare_clip(c, out, seed))
            if progress:
                progress(i + 1, len(clips), c.path.name)
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for i, p in enumerate(pool.map(prepare_clip, clips, [out] * len(clips), [seed] * len(clips))):
                done.append(p)
                if progress:
                    progress(i + 1, len(clips), clips[i].path.name)
    index = [{"key": p.stem, **{k: _meta(p)[k] for k in ("file", "speaker", "language", "fps", "frames", "usable")},
              "source": c.source, "licence": c.licence} for p, c in zip(done, clips)]
    with replacing(out / "index.json", keep_suffix=True) as tmp:
        tmp.write_text(json.dumps(index, indent=1))
    return done
