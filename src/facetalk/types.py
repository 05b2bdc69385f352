"""Plain data passed between stages. Arrays are numpy; shapes are documented per field.

Conventions used everywhere:
- images are RGB uint8 arrays of shape (H, W, 3);
- landmarks are float32 arrays of shape (68, 2) holding (x, y) in pixels of the image
  they were found in, in dlib's 68-point order (jaw 0-16, brows 17-26, nose 27-35,
  eyes 36-47, outer lips 48-59, inner lips 60-67);
- times are seconds from the start of the audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

ANALYSIS_RATE = 100.0  # frames per second of every per-frame speech feature (10 ms hop)
SAMPLE_RATE = 16_000  # internal audio rate for analysis


class Shape(StrEnum):
    """Mouth shapes of Rhubarb Lip Sync (Preston Blair set plus G, H and X)."""

    A = "A"  # closed: M, B, P
    B = "B"  # slightly open, clenched teeth: most consonants, EE
    C = "C"  # open: EH, AE
    D = "D"  # wide open: AA
    E = "E"  # slightly rounded: AO, ER
    F = "F"  # puckered: UW, OW, W
    G = "G"  # upper teeth on lower lip: F, V
    H = "H"  # tongue raised: long L
    X = "X"  # idle, at rest


@dataclass(frozen=True)
class Audio:
    """Speech for analysis: mono float32 samples in [-1, 1] at SAMPLE_RATE."""

    samples: np.ndarray  # (n,) float32
    sample_rate: int = SAMPLE_RATE
    source: str = ""  # file it came from, for messages

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Phone:
    """One phone: ARPAbet label without stress digit (AA, B, ...), or "SIL" for silence."""

    label: str
    start: float
    end: float


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    phones: tuple[Phone, ...] = ()


@dataclass(frozen=True)
class Cue:
    """A mouth shape held from start to end (seconds)."""

    start: float
    end: float
    shape: Shape


@dataclass
class Speech:
    """What the speech stage learns from the audio.

    Per-frame features run at ANALYSIS_RATE (one value per 10 ms) over the whole audio.
    """

    duration: float
    cues: list[Cue]  # contiguous, covering [0, duration]
    method: str  # "alignment" (transcript) or "acoustic"
    energy: np.ndarray  # (m,) float32 in [0, 1], loudness normalised to the clip's speech level
    voiced: np.ndarray  # (m,) bool, voice activity
    words: list[Word] = field(default_factory=list)  # with their phones, when aligned
    phones: list[Phone] = field(default_factory=list)  # all phones in order
    warnings: list[str] = field(default_factory=list)
    mel: np.ndarray | None = None  # (m, 40) float32 log-mel at ANALYSIS_RATE: the lip model's input


# Columns of the mouth motion curves, each in [0, 1] unless said otherwise.
MOUTH_PARAMS: tuple[str, ...] = (
    "open",  # jaw/lip opening: 0 closed, 1 widest this renderer allows
    "wide",  # lip spreading (smile-like corners out): 0 neutral, 1 widest
    "round",  # lip rounding/protrusion (corners in): 0 neutral, 1 puckered
    "upper",  # upper lip raise (shows upper teeth): 0 neutral, 1 raised
    "lower",  # lower lip: 0 neutral, 1 tucked up under upper teeth (F, V)
    "teeth",  # how much teeth show when open: 0 none, 1 fully
)


@dataclass
class Motion:
    """Per-output-frame targets for the renderer, sampled at fps.

    mouth: (n, len(MOUTH_PARAMS)) float32.
    blink: (n,) float32, 0 eyes as in the source, 1 fully closed.
    head: (n, 4) float32 idle head motion: dx, dy (fraction of inter-ocular distance),
          roll (degrees), scale (1 + breathing); zeros/ones when still.
    """

    fps: float
    mouth: np.ndarray
    blink: np.ndarray
    head: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.mouth.shape[0])


@dataclass(frozen=True)
class Patch:
    """A rendered region of a frame, ready to be composited.

    image: (h, w, 3) uint8 pixels to place at rows y0:y0+h, cols x0:x0+w of the frame.
    mask: (h, w) float32 in [0, 1], 1 where the patch replaces the frame; already feathered.
    """

    image: np.ndarray
    mask: np.ndarray
    x0: int
    y0: int
