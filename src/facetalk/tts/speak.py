"""Text -> a WAV file and the phone timeline of its speech, sentence by sentence.

    spoken = speak_to_wav(text, "en-us", "lesson.wav")
    speech = speech_from_spoken(spoken)        # mouth cues, loudness, voicing

Each sentence is synthesised, timed and written before the next starts, so memory does
not grow with the text (a 20-minute lesson holds only its phone list and 100 fps
levels). Timings come from the engine where it gives them (espeak-ng's phoneme events);
otherwise the sentence's known words are force-aligned to its audio (PocketSphinx, as
facetalk.speech does for a transcript); a sentence that cannot be aligned gets its
mouth shapes from its sound alone, with a warning, and the others are unaffected.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..context import RunContext
from ..errors import OutputError
from ..types import ANALYSIS_RATE, SAMPLE_RATE, Audio, Phone, Speech, Word
from .base import Engine, SynthResult, check_rate_pitch
from .normalise import for_engine
from .registry import engine_for
from .script import Pause, Sentence, check_script, parse_text

STAGE = "speech"
MAX_SENTENCE_WARNINGS = 3  # sentences named in warnings; more are counted in one line


@dataclass
class SpokenText:
    """A text spoken into `path` (16-bit PCM WAV at sample_rate).

    phones: every phone in order, times in seconds from the start of the file, SIL in
    pauses; words: the spoken words with their phones. timing: "engine" when every
    sentence was timed by the engine, "alignment" when by forced alignment, "mixed".
    """

    path: Path
    duration: float
    sample_rate: int
    phones: list[Phone]
    words: list[Word]
    sentences: int
    timing: str
    voice: str
    language: str
    engine: str
    warnings: list[str] = field(default_factory=list)


def prepare(text: str, voice: str, rate: int | None = None, pitch: int | None = None) -> tuple[list, Engine]:
    """Check everything before any audio is made: the text's sentences and pauses, the
    voice (its engine loaded), the text's script against the voice's language, rate and
    pitch. Raises TextError, VoiceError or InputError with one line."""
    check_rate_pitch(rate, pitch)
    items = parse_text(text)
    engine = engine_for(voice)
    check_script(" ".join(i.text for i in items if isinstance(i, Sentence)), engine.voice.language, engine.voice.name)
    return items, engine


def check_text_request(audio: str | None, transcript: str | None, text: str, voice: str | None,
                       rate: int | None, pitch: int | None) -> tuple[list, Engine]:
    """A render's text options checked as the render will check them (one-line errors):
    not with --audio or --transcript, words to say, a known voice that reads the text.
    Returns what prepare() does (the text's items and the loaded engine)."""
    from ..errors import InputError
    from . import DEFAULT_VOICE

    if audio:
        raise InputError("give --audio (a recording) or --text (words to speak), not both")
    if transcript:
        raise InputError("--transcript gives the words of --audio; with --text the words are already known")
    return prepare(text, voice or DEFAULT_VOICE, rate, pitch)


def speak_to_wav(
    text: str, voice: str, path: str | Path, rate: int | None = None, pitch: int | None = None,
    ctx: RunContext | None = None, prepared: tuple[list, Engine] | None = None,
) -> SpokenText:
    """Speak `text` with `voice` into the WAV `path`, written atomically (a hidden
    temporary file renamed into place when complete). See the module docstring."""
    ctx = ctx or RunContext()
    items, engine = prepared or prepare(text, voice, rate, pitch)
    path = Path(path)
    if not path.absolute().parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.absolute().parent} does not exist")
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        ctx.warn(message)

    if pitch is not None and not getattr(engine, "supports_pitch", True):
        warn(f"{engine.name} voices have no pitch control: --pitch is ignored")
    import soundfile

    sr = engine.sample_rate
    tmp = path.absolute().parent / f".{path.name}.{secrets.token_hex(4)}.part.wav"
    phones: list[Phone] = []
    words: list[Word] = []
    kinds: set[str] = set()
    aligner = None
    failed: list[int] = []  # sentences whose timings come from the sound alone
    n_sentences = sum(1 for i in items if isinstance(i, Sentence))
    done_sentences = 0
    written = 0
    try:
        with soundfile.SoundFile(str(tmp), "w", samplerate=sr, channels=1, subtype="PCM_16", format="WAV") as out:
            for item in items:
                offset = written / sr
                if isinstance(item, Pause):
                    n = round(item.seconds * sr)
                    _write_silence(out, n)
                    written += n
                    _add_silence(phones, offset, written / sr)
                    continue
                ctx.report(STAGE, done_sentences / n_sentences, f"speaking sentence {done_sentences + 1}/{n_sentences}")
                said = for_engine(item.text, engine.voice.language)
                result = engine.synthesize(said, rate, pitch)
                samples = np.clip(np.asarray(result.samples, dtype=np.float32), -1.0, 1.0)
                out.write(samples)
                written += len(samples)
                if result.phones is not None:
                    s_phones, s_words, kind = result.phones, result.words or [], "engine"
                else:
                    if aligner is None:
                        from ..speech.align import Aligner

                        aligner = Aligner()
                    s_phones, s_words, kind, problem = timed_by_alignment(result, said, engine.voice.language, aligner)
                    if problem and not engine.voice.language.lower().startswith("en"):
                        if not failed:
                            warn(f"{problem}: mouth shapes for voice {engine.voice.name} come from the sound")
                        failed.append(done_sentences + 1)
                    elif problem:
                        failed.append(done_sentences + 1)
                        if len(failed) <= MAX_SENTENCE_WARNINGS:
                            warn(f"sentence {done_sentences + 1} ({_short(item.text)}): {problem}; "
                                 "its mouth shapes come from the sound")
                kinds.add(kind)
                phones += [_shift(p, offset) for p in s_phones]
                words += [Word(w.text, w.start + offset, w.end + offset, tuple(_shift(p, offset) for p in w.phones)) for w in s_words]
                done_sentences += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if len(failed) > MAX_SENTENCE_WARNINGS and engine.voice.language.lower().startswith("en"):
        warn(f"{len(failed) - MAX_SENTENCE_WARNINGS} more sentences could not be aligned "
             f"({len(failed)} of {n_sentences} in all); their mouth shapes come from the sound")
    ctx.report(STAGE, 1.0, f"spoke {n_sentences} sentences")
    timing = kinds.pop() if len(kinds) == 1 else "mixed"
    return SpokenText(path, written / sr, sr, _joined(phones), words, n_sentences, timing,
                      engine.voice.name, engine.voice.language, engine.name, warnings)


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _write_silence(out, n: int, block: int = 1 << 16) -> None:
    while n > 0:
        k = min(n, block)
        out.write(np.zeros(k, np.float32))
        n -= k


def _add_silence(phones: list[Phone], start: float, end: float) -> None:
    if end > start:
        phones.append(Phone("SIL", start, end))


def _shift(p: Phone, offset: float) -> Phone:
    return Phone(p.label, p.start + offset, p.end + offset)


def _joined(phones: list[Phone]) -> list[Phone]:
    """Adjacent SIL phones joined into one."""
    out: list[Phone] = []
    for p in phones:
        if out and p.label == "SIL" and out[-1].label == "SIL":
            out[-1] = Phone("SIL", out[-1].start, p.end)
        else:
            out.append(p)
    return out


# ------------------------------------------------------------ timing without the engine


def to_analysis_rate(samples: np.ndarray, sr: int) -> np.ndarray:
    """(n,) float32 at sr -> float32 at facetalk's 16 kHz analysis rate."""
    if sr == SAMPLE_RATE:
        return np.asarray(samples, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(SAMPLE_RATE, sr)
    return resample_poly(np.asarray(samples, dtype=np.float64), SAMPLE_RATE // g, sr // g).astype(np.float32)


def timed_by_alignment(result: SynthResult, sentence: str, language: str, aligner=None) -> tuple[list[Phone], list[Word], str, str | None]:
    """(phones, words, kind, problem) of one synthesised sentence without engine timings:
    its known words force-aligned to its audio (kind "alignment"), else phones read
    from the sound alone (kind "acoustic") with the problem that stopped alignment."""
    from ..speech.acoustic import analyse_features
    from ..speech.align import AlignmentError
    from ..speech.analyse import MIN_COVERAGE, word_coverage
    from ..speech.text import normalise_transcript

    audio = Audio(to_analysis_rate(result.samples, result.sample_rate))
    duration = result.duration
    if len(audio.samples) == 0:
        return [Phone("SIL", 0.0, duration)] if duration > 0 else [], [], "acoustic", "no audio"
    features = analyse_features(audio)
    problem: str | None
    if not language.lower().startswith("en"):
        problem = f"forced alignment reads English only, not {language}"
    else:
        words = normalise_transcript(sentence)
        problem = None if words else "no English words to align"
        if words:
            try:
                aligned = align_sentence(audio.samples, words, aligner)
            except AlignmentError as exc:
                problem = f"could not align its words ({exc})"
            else:
                spoken = [w for w in aligned if w.text != "<sil>"]
                coverage = word_coverage(spoken, features.voiced)
                if coverage >= MIN_COVERAGE:
                    return [p for w in aligned for p in w.phones], spoken, "alignment", None
                problem = f"its words cover only {coverage:.0%} of its speech"
    return acoustic_phones(features, duration), [], "acoustic", problem


ALIGN_PADS_S = (0.1, 0.25)  # silence around a sentence for the aligner, tried in turn


def align_sentence(samples: np.ndarray, words: list[str], aligner=None) -> list[Word]:
    """facetalk.speech.align.align_words on one sentence (16 kHz samples), with a little
    silence added around it: PocketSphinx's word pass loses its only hypothesis on some
    sentences that start or end right at the edge of the audio (3 of 108 synthesised
    sentences without padding, none with 0.1 s). Times are of the unpadded samples.
    Raises AlignmentError when no padding helps."""
    from ..speech.align import AlignmentError, align_words

    duration = len(samples) / SAMPLE_RATE
    error: AlignmentError | None = None
    for pad_s in ALIGN_PADS_S:
        pad = np.zeros(int(pad_s * SAMPLE_RATE), np.float32)
        try:
            aligned = align_words(Audio(np.concatenate([pad, samples, pad])), words, aligner)
        except AlignmentError as exc:
            error = exc
            continue

        def shift(p: Phone, pad_s: float = pad_s) -> Phone:
            return Phone(p.label, min(max(p.start - pad_s, 0.0), duration), min(max(p.end - pad_s, 0.0), duration))

        out: list[Word] = []
        for w in aligned:
            phones = tuple(q for q in (shift(p) for p in w.phones) if q.end > q.start)
            start, end = min(max(w.start - pad_s, 0.0), duration), min(max(w.end - pad_s, 0.0), duration)
            if end > start:
                out.append(Word(w.text, start, end, phones))
        return out
    raise error


def acoustic_phones(features, duration: float) -> list[Phone]:
    """Phone-like labels from the sound alone (facetalk.speech.acoustic's per-frame
    classes: AA for open vowels, M for near-closures, S for noise ...), SIL outside speech."""
    from ..speech.acoustic import frame_shapes, smooth_labels

    labels = smooth_labels(frame_shapes(features))
    phones: list[Phone] = []
    for i, (_shape, label) in enumerate(labels):
        name = label or "SIL"
        start, end = i / ANALYSIS_RATE, min(duration, (i + 1) / ANALYSIS_RATE)
        if end <= start:
            break
        if phones and phones[-1].label == name:
            phones[-1] = Phone(name, phones[-1].start, end)
        else:
            phones.append(Phone(name, start, end))
    return phones


# ------------------------------------------------------------ the Speech for a render


def stream_levels(path: str | Path, n_frames: int) -> np.ndarray:
    """(n_frames,) frame levels in dBFS of an audio file, read a chunk at a time: the same
    numbers facetalk.speech.acoustic gives the whole file loaded at 16 kHz, in constant memory."""
    from numpy.lib.stride_tricks import sliding_window_view

    from ..media.audio import decode_audio
    from ..speech.acoustic import HOP, WINDOW, frame_levels

    levels = np.empty(n_frames, dtype=np.float64)
    buf = np.zeros((WINDOW - HOP) // 2, dtype=np.float32)  # the same padding as acoustic._padded
    done = 0

    def drain(final: bool) -> None:
        nonlocal buf, done
        if final:
            need = (n_frames - done - 1) * HOP + WINDOW
            if len(buf) < need:
                buf = np.concatenate([buf, np.zeros(need - len(buf), np.float32)])
        if len(buf) < WINDOW or done >= n_frames:
            return
        k = min(n_frames - done, (len(buf) - WINDOW) // HOP + 1)
        frames = sliding_window_view(buf, WINDOW)[: k * HOP : HOP]
        levels[done : done + k] = frame_levels(frames)
        done += k
        buf = buf[k * HOP :]

    for chunk in decode_audio(path, SAMPLE_RATE, "mono"):
        buf = np.concatenate([buf, np.clip(chunk[0], -1.0, 1.0)])
        drain(False)
    drain(True)
    return levels


def speech_from_spoken(spoken: SpokenText, ctx: RunContext | None = None) -> Speech:
    """The Speech of a spoken text: mouth cues from its phones by facetalk.speech.cues'
    rules, loudness and voice activity from its audio as facetalk.speech.acoustic
    measures them. method: "engine" (engine timings), "alignment", or "mixed"."""
    from ..speech.acoustic import normalised_energy, speech_level, voice_activity
    from ..lips.features import log_mel
    from ..media.audio import load_audio
    from ..speech.cues import n_frames, phones_to_cues

    ctx = ctx or RunContext()
    ctx.report(STAGE, 1.0, "choosing mouth shapes")
    m = n_frames(spoken.duration)
    level = stream_levels(spoken.path, m)
    reference, floor = speech_level(level)
    energy = normalised_energy(level, reference)
    voiced = voice_activity(level, reference, floor)
    cues = phones_to_cues(spoken.phones, spoken.duration)
    mel = log_mel(load_audio(spoken.path).samples)
    return Speech(spoken.duration, cues, spoken.timing, energy, voiced, spoken.words, spoken.phones,
                  list(spoken.warnings), mel)
