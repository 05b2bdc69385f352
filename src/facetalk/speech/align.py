"""Forced alignment of known words to speech with PocketSphinx (stack.md section 3b).

Two passes per utterance: a word pass (`set_align_text`) and a phone pass
(`set_alignment`) over the same audio. Long audio is split at the pauses the word
pass finds, so the phone pass never sees more than about CHUNK_S seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..types import ANALYSIS_RATE, SAMPLE_RATE, Audio, Phone, Word
from .text import pronounce

CHUNK_S = 30.0  # longest stretch given to one decoder pass
# The default beams lose the only path on long utterances (68 s of speech: no
# hypothesis); these keep it at about the same cost.
WIDE_BEAMS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
MIN_SPLIT_PAUSE_FRAMES = 5  # a <sil> of >= 50 ms is a safe place to split
_FILLERS = ("<sil>", "<s>", "</s>", "SIL", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+SMACK+", "+UM+", "+UH+")


class AlignmentError(Exception):
    """Forced alignment failed (transcript does not match the audio, noise, no words).

    Internal: analyse.py turns it into a warning and the acoustic path.
    """


@dataclass
class Aligner:
    """Holds one PocketSphinx decoder and the pronunciations added to it."""

    _decoder: object | None = field(default=None, repr=False)

    def decoder(self):  # -> pocketsphinx.Decoder
        """The decoder, created on first use (model load takes ~0.5 s)."""
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(
                samprate=SAMPLE_RATE, bestpath=False, dither=True, loglevel="FATAL", **WIDE_BEAMS
            )
        return self._decoder

    def prepare_words(self, words: Sequence[str]) -> list[str]:
        """Spellings the decoder knows, adding letter-to-sound pronunciations where needed."""
        d = self.decoder()
        ready: list[str] = []
        for word in words:
            spelling, phones = pronounce(word, d.lookup_word)
            if phones is not None and d.lookup_word(spelling) is None:
                d.add_word(spelling, " ".join(phones), True)
            ready.append(spelling)
        return ready

    def _decode(self, pcm: bytes) -> None:
        d = self.decoder()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()

    def word_pass(self, pcm: bytes, words: Sequence[str]) -> list[tuple[str, int, int]]:
        """(word, start_frame, end_frame_exclusive) for words and pauses, from the word pass."""
        d = self.decoder()
        try:
            d.set_align_text(" ".join(words))
            self._decode(pcm)
        except RuntimeError as exc:
            raise AlignmentError(f"word alignment failed: {exc}") from exc
        if d.hyp() is None:
            raise AlignmentError("word alignment found no hypothesis")
        segs = [(s.word, s.start_frame, s.end_frame + 1) for s in d.seg() or ()]
        if not any(w not in _FILLERS for w, _, _ in segs):
            raise AlignmentError("word alignment found no hypothesis")
        return segs

    def phone_pass(self, pcm: bytes, words: Sequence[str], offset: float) -> list[Word]:
        """Words with phones for one utterance; times shifted by `offset` seconds."""
        d = self.decoder()
        self.word_pass(pcm, words)
        try:
            d.set_alignment()
            self._decode(pcm)
            alignment = d.get_alignment()
        except RuntimeError as exc:
            raise AlignmentError(f"phone alignment failed: {exc}") from exc
        if alignment is None:
            raise AlignmentError("phone alignment gave no result")
        result: list[Word] = []
        for w in alignment:
            phones = tuple(
                Phone(phone_label(p.name), *_seconds(p.start, p.duration, offset)) for p in w
            )
            start, end = _seconds(w.start, w.duration, offset)
            name = "<sil>" if w.name in _FILLERS else strip_alternative(w.name)
            result.append(Word(name, start, end, phones))
        return result


def _seconds(start_frame: int, n_frames: int, offset: float) -> tuple[float, float]:
    """(start, end) in seconds of a span given in 10 ms frames."""
    return offset + start_frame / ANALYSIS_RATE, offset + (start_frame + n_frames) / ANALYSIS_RATE


def phone_label(name: str) -> str:
    """ARPAbet label without stress digit; silence and filler phones (+NSN+ ...) -> SIL."""
    label = name.rstrip("012").upper()
    return "SIL" if label == "SIL" or label.startswith("+") else label


def strip_alternative(word: str) -> str:
    """CMUdict alternative pronunciations are named "word(2)"; keep the word."""
    return word.split("(")[0]


def to_pcm(samples: np.ndarray) -> bytes:
    """(n,) float32 in [-1, 1] -> 16-bit little-endian PCM bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def split_points(
    segs: Sequence[tuple[str, int, int]], n_frames: int, chunk_frames: int
) -> list[tuple[int, int, int, int]]:
    """Chunks (frame_start, frame_end, word_index_start, word_index_end) split mid-pause.

    Walks the word-pass segments and cuts in the middle of the last long-enough pause
    before each chunk would exceed `chunk_frames`.
    """
    chunks: list[tuple[int, int, int, int]] = []
    chunk_start, word_start, word_index = 0, 0, 0
    best: tuple[int, int] | None = None  # (cut frame, word index after the cut)
    for word, start, end in segs:
        is_pause = word in _FILLERS
        if is_pause and end - start >= MIN_SPLIT_PAUSE_FRAMES and word_index > word_start:
            best = ((start + end) // 2, word_index)
        if end - chunk_start > chunk_frames and best is not None:
            cut, cut_word = best
            chunks.append((chunk_start, cut, word_start, cut_word))
            chunk_start, word_start, best = cut, cut_word, None
        if not is_pause:
            word_index += 1
    chunks.append((chunk_start, n_frames, word_start, word_index))
    return chunks


def align_words(audio: Audio, words: Sequence[str], aligner: Aligner | None = None) -> list[Word]:
    """Words (normalised, see text.normalise_transcript) aligned to `audio`, with their phones.

    Pauses appear as words named "<sil>" with one SIL phone. Raises AlignmentError
    when the words cannot be aligned to the audio.
    """
    if not words:
        raise AlignmentError("no words to align")
    aligner = aligner or Aligner()
    spellings = aligner.prepare_words(words)
    samples = np.asarray(audio.samples, dtype=np.float32)
    pcm = to_pcm(samples)
    n_frames = int(len(samples) * ANALYSIS_RATE / SAMPLE_RATE)
    if audio.duration <= CHUNK_S:
        return aligner.phone_pass(pcm, spellings, 0.0)
    segs = aligner.word_pass(pcm, spellings)
    if sum(1 for w, _, _ in segs if w not in _FILLERS) != len(spellings):
        raise AlignmentError("word alignment lost words")
    hop = SAMPLE_RATE // int(ANALYSIS_RATE)
    result: list[Word] = []
    for f0, f1, w0, w1 in split_points(segs, n_frames, int(CHUNK_S * ANALYSIS_RATE)):
        if w1 <= w0:
            continue
        chunk_pcm = pcm[f0 * hop * 2 : f1 * hop * 2]
        result += aligner.phone_pass(chunk_pcm, spellings[w0:w1], f0 / ANALYSIS_RATE)
    return result
