"""The engine interface: what any local text-to-speech engine gives facetalk.

An engine turns one sentence into samples and, where it can, the times of its phones
and words. Adding an engine is one module with a class like EspeakEngine or PiperEngine
and one line in facetalk.tts.registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..types import Phone, Word

DEFAULT_RATE = 175  # words per minute: espeak-ng's own default
RATE_RANGE = (80, 450)  # what espeak-ng accepts
PITCH_RANGE = (0, 100)  # espeak-ng's scale; 50 is the voice's own pitch


class VoiceError(InputError):
    """A voice that is unknown, broken, or cannot speak the text it was given."""


class TextError(InputError):
    """Text that cannot be spoken: empty, a malformed [pause ...] tag, a script the voice does not read."""


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine offers. name: what --voice takes; language: a BCP-47-like code
    ("en-us", "cmn"); engine: "espeak-ng" or "piper"; description: a human name."""

    name: str
    language: str
    engine: str
    description: str = ""


@dataclass
class SynthResult:
    """One sentence spoken.

    samples: (n,) float32 in [-1, 1], mono, at sample_rate.
    phones / words: times in seconds from the start of samples, as the engine reports
    them (phones labelled like facetalk.speech: ARPAbet without stress, "SIL" for
    pauses); None when the engine gives no timings (they are then found by forced
    alignment of the known text).
    """

    samples: np.ndarray
    sample_rate: int
    phones: list[Phone] | None = None
    words: list[Word] | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class Engine(Protocol):
    """A text-to-speech engine bound to one voice.

    language: the voice's language code (for the script check and for alignment);
    sample_rate: the rate every synthesize() returns; timed: whether synthesize() gives
    phone timings. synthesize() speaks one sentence (plain text, no tags)."""

    name: str
    voice: VoiceInfo
    sample_rate: int
    timed: bool

    def synthesize(self, sentence: str, rate: int | None = None, pitch: int | None = None) -> SynthResult: ...


def check_rate_pitch(rate: int | None, pitch: int | None) -> None:
    """InputError (one line) for a --rate or --pitch outside what the engines accept."""
    if rate is not None and not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise InputError(f"--rate {rate} is out of range ({RATE_RANGE[0]} to {RATE_RANGE[1]} words per minute)")
    if pitch is not None and not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise InputError(f"--pitch {pitch} is out of range ({PITCH_RANGE[0]} to {PITCH_RANGE[1]}; 50 is the voice's own)")
