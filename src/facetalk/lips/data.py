"""Prepared lip data in memory: per clip its features, its targets normalised per speaker,
and its audio-video offset. Shared by training, cross-validation and the benchmark.

Targets are normalised per speaker so that amplitude comes from the face being rendered,
not from whoever was in the training data: opening 0 is the speaker's closed mouth (5th
percentile of their inner-lip gap) and 1 their wide-open mouth (95th percentile); width is
the corner distance relative to the clip's own median (a camera angle changes it per
clip), in units of the speaker's spread of that ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..types import ANALYSIS_RATE
from .augment import VARIANTS

MIN_USABLE = 10  # clips with fewer usable frames are left out


@dataclass
class LipClip:
    key: str
    speaker: str
    language: str
    fps: float
    mel: dict[str, np.ndarray]  # variant -> (m, n_mels) float32 log-mel
    open: np.ndarray  # (n,) raw inner-lip gap (IOD), NaN where unusable
    width: np.ndarray  # (n,) raw corner distance (IOD), NaN where unusable
    file: str = ""
    source: str = ""
    licence: str = ""
    target: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (n, 2) normalised
    offset: int = 0  # frames the picture is shifted by to meet its sound (already applied to target)

    @property
    def usable(self) -> np.ndarray:
        return np.isfinite(self.target).all(axis=1)

    def frame_rows(self) -> np.ndarray:
        """(n,) float64: each video frame's time as a feature row index."""
        return np.arange(len(self.open)) / self.fps * ANALYSIS_RATE


def load_prepared(folder: Path) -> list[LipClip]:
    """Every clip of a `lipsync prepare` folder (index.json order) with usable frames."""
    from safetensors.numpy import load_file

    index = json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))
    clips = []
    for row in index:
        d = load_file(str(Path(folder) / f"{row['key']}.safetensors"))
        if int(d["usable"].sum()) < MIN_USABLE:
            continue
        mel = {v: d[f"mel_{v}"].astype(np.float32) for v in VARIANTS if f"mel_{v}" in d}
        clips.append(LipClip(row["key"], row["speaker"], row["language"], float(row["fps"]), mel,
                             d["open"].astype(np.float64), d["width"].astype(np.float64), file=row["file"],
                             source=row.get("source", ""), licence=row.get("licence", "")))
    normalise_targets(clips)
    return clips


def normalise_targets(clips: list[LipClip]) -> None:
    """Fill each clip's target (n, 2) from its raw open and width, per speaker (see module)."""
    by_speaker: dict[str, list[LipClip]] = {}
    for c in clips:
        by_speaker.setdefault(c.speaker, []).append(c)
    for group in by_speaker.values():
        opening = np.concatenate([c.open[np.isfinite(c.open)] for c in group])
        lo, hi = np.percentile(opening, [5, 95])
        ratios = [c.width / np.nanmedian(c.width) - 1.0 for c in group]
        spread = float(np.nanstd(np.concatenate(ratios))) or 1.0
        for c, ratio in zip(group, ratios):
            c.target = np.stack([(c.open - lo) / max(hi - lo, 1e-3), ratio / spread], axis=1).astype(np.float32)


def lagged_r(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Pearson r of a[t + lag] with b[t] over frames where both are finite."""
    n = min(len(a), len(b))
    x, y = (a[lag:n], b[:n - lag]) if lag >= 0 else (a[:n + lag], b[-lag:n])
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5 or np.std(x[ok]) < 1e-9 or np.std(y[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])
