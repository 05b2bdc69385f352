"""The speech stage: audio (+ optional transcript) -> Speech (cues, energy, voicing, words)."""

from __future__ import annotations

import numpy as np

from ..context import RunContext
from ..errors import SpeechError
from ..lips.features import log_mel
from ..types import ANALYSIS_RATE, SAMPLE_RATE, Audio, Cue, Shape, Speech, Word
from .acoustic import analyse_features, acoustic_cues
from .align import Aligner, AlignmentError, align_words
from .cues import phones_to_cues
from .text import normalise_transcript

STAGE = "speech"
MIN_COVERAGE = 0.5  # share of voice-active frames that aligned words must cover


def word_coverage(words: list[Word], voiced: np.ndarray) -> float:
    """Share of voice-active frames (voiced: (m,) bool) inside an aligned word.

    PocketSphinx forces any text through when it can: a transcript much shorter than
    the speech aligns to a corner of it and leaves the rest silent.
    """
    inside = np.zeros(voiced.shape, dtype=bool)
    for w in words:
        inside[int(w.start * ANALYSIS_RATE) : int(np.ceil(w.end * ANALYSIS_RATE))] = True
    return float(inside[voiced].mean()) if voiced.any() else 1.0


def analyse_speech(audio: Audio, transcript: str | None, ctx: RunContext, aligner: Aligner | None = None) -> Speech:
    """Mouth cues and per-frame loudness/voicing for `audio`.

    With a transcript the words are force-aligned and phones drive the cues
    (method "alignment"); without one, or when alignment fails (a warning says so),
    acoustic features drive them (method "acoustic"). Deterministic.
    Raises SpeechError for zero-length audio.
    """
    source = audio.source or "the audio"
    if len(audio.samples) == 0:
        raise SpeechError(f"{source} has no samples; give audio with speech in it")
    if audio.sample_rate != SAMPLE_RATE:
        raise SpeechError(f"{source} is at {audio.sample_rate} Hz; load it through facetalk's audio loader (16 kHz)")
    duration = audio.duration
    ctx.report(STAGE, 0.0, "measuring loudness and voice activity")
    features = analyse_features(audio)
    energy, voiced = features.energy, features.voiced
    mel = log_mel(audio.samples)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        ctx.warn(message)

    if not voiced.any():
        warn(f"no speech found in {source}; the mouth stays closed")
        ctx.report(STAGE, 1.0, "no speech")
        return Speech(duration, [Cue(0.0, duration, Shape.X)], "acoustic", energy, voiced, warnings=warnings, mel=mel)

    words = normalise_transcript(transcript) if transcript and transcript.strip() else []
    if transcript and transcript.strip() and not words:
        warn(f"the transcript for {source} has no English words; mouth shapes come from the sound alone")
    if words:
        ctx.report(STAGE, 0.2, f"aligning {len(words)} words")
        try:
            aligned = align_words(audio, words, aligner)
        except AlignmentError as exc:
            warn(f"could not align the transcript to {source} ({exc}); mouth shapes come from the sound alone")
        else:
            spoken = [w for w in aligned if w.text != "<sil>"]
            coverage = word_coverage(spoken, voiced)
            if coverage < MIN_COVERAGE:
                warn(
                    f"the transcript covers only {coverage:.0%} of the speech in {source}; "
                    "mouth shapes come from the sound alone (check the transcript matches the audio)"
                )
            else:
                phones = [p for w in aligned for p in w.phones]
                ctx.report(STAGE, 0.8, "choosing mouth shapes")
                cues = phones_to_cues(phones, duration)
                ctx.report(STAGE, 1.0, "done")
                return Speech(duration, cues, "alignment", energy, voiced, spoken, phones, warnings, mel)
    ctx.report(STAGE, 0.6, "choosing mouth shapes from the sound")
    cues = acoustic_cues(features, duration)
    ctx.report(STAGE, 1.0, "done")
    return Speech(duration, cues, "acoustic", energy, np.asarray(voiced, dtype=bool), warnings=warnings, mel=mel)
