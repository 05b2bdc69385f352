"""The speech stage: text normalisation, forced alignment, acoustic analysis, analyse_speech."""

from __future__ import annotations

import subprocess
import time
from math import gcd
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from facetalk.context import RunContext
from facetalk.errors import SpeechError
from facetalk.speech.acoustic import analyse_features, acoustic_cues, frame_levels, frame_signal
from facetalk.speech.align import AlignmentError, Aligner, align_words, phone_label
from facetalk.speech.analyse import analyse_speech
from facetalk.speech.text import letter_to_sound, normalise_transcript, pronounce
from facetalk.types import SAMPLE_RATE, Audio, Cue, Shape

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "speech"
CLOSED = (Shape.A, Shape.X)


def load(path: Path) -> Audio:
    """Any WAV -> mono float32 at 16 kHz."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    g = gcd(sr, 16000)
    return Audio(resample_poly(x.mean(axis=1), 16000 // g, sr // g).astype(np.float32), source=str(path))


def espeak(text: str, path: Path) -> np.ndarray:
    """espeak-ng speech at 16 kHz (float32)."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return load(path).samples


def trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0] : loud[-1] + 1]


def cue_frames(cues: list[Cue], m: int) -> np.ndarray:
    out = np.empty(m, dtype=object)
    for c in cues:
        out[int(round(c.start * 100)) : int(round(c.end * 100))] = c.shape
    return out


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    return Aligner()


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Dr. Smith paid $5.50.", "doctor smith paid five dollars and fifty cents"),
        ("3.5% of 1999", "three point five percent of nineteen ninety nine"),
        ("the 21st & 2nd", "the twenty first and second"),
        ("Don't! It's well-known, e.g. vs. Mr. Jones", "don't it's well known for example versus mister jones"),
        ("1,250 people in 2005", "one thousand two hundred fifty people in two thousand five"),
        ("Café Müller", "cafe muller"),
        ("你好 ... ?!", ""),
    ],
)
def test_normalise_transcript(text: str, words: str) -> None:
    assert normalise_transcript(text) == words.split()


def test_unknown_words_get_pronunciations(aligner: Aligner) -> None:
    d = aligner.decoder()
    assert pronounce("hello", d.lookup_word) == ("hello", None)
    spelling, phones = pronounce("zblorfington", d.lookup_word)
    assert phones and all(p.isupper() for p in phones)
    assert letter_to_sound("xkcd") == ["EH", "K", "S", "K", "EY", "S", "IY", "D", "IY"]  # no vowel: spelled
    assert phone_label("AH1") == "AH" and phone_label("+NSN+") == "SIL" and phone_label("SIL") == "SIL"


# ------------------------------------------------------------------ alignment


def test_alignment_word_starts_within_50ms(tmp_path: Path, aligner: Aligner) -> None:
    words = ["morning", "people", "should", "carefully", "watch", "yellow", "boats", "sailing"]
    gap = np.zeros(int(0.25 * 16000), dtype=np.float32)
    pieces, starts, t = [gap], [], len(gap)
    for i, w in enumerate(words):
        x = trim(espeak(w, tmp_path / f"{i}.wav"))
        starts.append(t / 16000)
        pieces += [x, gap]
        t += len(x) + len(gap)
    joined = np.concatenate(pieces)
    joined += np.random.default_rng(0).normal(0, 3e-4, joined.size).astype(np.float32)  # dither-level noise
    t0 = time.perf_counter()
    aligned = [w for w in align_words(Audio(joined), words, aligner) if w.text != "<sil>"]
    speed = len(joined) / 16000 / (time.perf_counter() - t0)
    assert [w.text for w in aligned] == words
    errors = np.abs(np.array([w.start for w in aligned]) - starts)
    print(f"alignment: mean word-start error {errors.mean() * 1000:.0f} ms, max {errors.max() * 1000:.0f} ms, {speed:.0f}x real time")
    assert errors.mean() < 0.05 and errors.max() < 0.12
    assert all(p.label.isalpha() and not p.label[-1].isdigit() for w in aligned for p in w.phones)


def test_mama_papa_closes_at_m_and_p(tmp_path: Path) -> None:
    x = espeak("mama papa", tmp_path / "mp.wav")
    speech = analyse_speech(Audio(x), "mama papa", RunContext())
    assert speech.method == "alignment"
    closures = [p for p in speech.phones if p.label in ("M", "P")]
    assert len(closures) == 4
    frames = cue_frames(speech.cues, len(speech.energy))
    for p in closures:
        # An M holds A; a P's closure sits just before its release.
        t = (p.start + p.end) / 2 if p.label == "M" else p.start - 0.02
        assert frames[int(t * 100)] == Shape.A, p
    assert Shape.D in set(frames) or Shape.C in set(frames)


def test_long_alignment_60s(tmp_path: Path, aligner: Aligner) -> None:
    text = (
        "It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith slipped quickly "
        "through the glass doors of Victory Mansions, though not quickly enough to prevent a swirl of gritty dust "
        "from entering along with him. The hallway smelt of boiled cabbage and old rag mats. At one end of it a "
        "coloured poster, too large for indoor display, had been tacked to the wall. It depicted simply an enormous "
        "face, more than a metre wide: the face of a man of about forty-five, with a heavy black moustache and "
        "ruggedly handsome features. Winston made for the stairs. It was no use trying the lift. Even at the best "
        "of times it was seldom working, and at present the electric current was cut off during daylight hours. "
        "It was part of the economy drive in preparation for Hate Week. The flat was seven flights up, and Winston, "
        "who was thirty-nine and had a varicose ulcer above his right ankle, went slowly, resting several times."
    )
    x = espeak(text, tmp_path / "long.wav")
    assert len(x) / 16000 > 60
    words = normalise_transcript(text)
    t0 = time.perf_counter()
    aligned = [w for w in align_words(Audio(x), words, aligner) if w.text != "<sil>"]
    elapsed = time.perf_counter() - t0
    print(f"60 s alignment: {len(x) / 16000:.1f} s audio in {elapsed:.1f} s ({len(x) / 16000 / elapsed:.0f}x real time)")
    assert len(aligned) == len(words)
    assert all(a.start <= b.start for a, b in zip(aligned, aligned[1:]))
    assert aligned[-1].end > len(x) / 16000 - 2.0  # the last word is near the end, not squashed


@pytest.mark.parametrize("transcript", ["completely different words about a yellow submarine " * 6, "hello"])
def test_wrong_transcript_falls_back_to_acoustic(tmp_path: Path, transcript: str) -> None:
    x = espeak("the quick brown fox jumps over the lazy dog", tmp_path / "fox.wav")
    ctx = RunContext()
    speech = analyse_speech(Audio(x, source="fox.wav"), transcript, ctx)
    assert speech.method == "acoustic" and len(ctx.warnings) == 1 and "fox.wav" in ctx.warnings[0]
    assert speech.warnings == ctx.warnings and len(speech.cues) > 5
    with pytest.raises(AlignmentError):
        align_words(Audio(np.zeros(16000, dtype=np.float32)), [], Aligner())


# ------------------------------------------------------------------ acoustic


def test_energy_tracks_rms_and_ignores_gain() -> None:
    audio = load(MEDIA / "en-film-7s.wav")
    feats = analyse_features(audio)
    quiet = analyse_features(Audio(audio.samples * 0.1))  # -20 dB
    assert np.abs(feats.energy - quiet.energy).max() < 0.02
    rms = 10 ** (frame_levels(frame_signal(audio.samples, len(feats.energy))) / 20)
    assert np.corrcoef(feats.energy, rms)[0, 1] > 0.7
    assert feats.energy.dtype == np.float32 and 0 <= feats.energy.min() and feats.energy.max() <= 1


@pytest.mark.parametrize("name", ["en-film-7s.wav", "ja-9s.wav"])
def test_acoustic_mouth_open_in_speech_closed_in_pauses(name: str) -> None:
    audio = load(MEDIA / name)
    feats = analyse_features(audio)
    frames = cue_frames(acoustic_cues(feats, audio.duration), len(feats.energy))
    closed = np.isin(frames, CLOSED)
    assert 0.3 < feats.voiced.mean() < 0.95
    assert (~closed[feats.voiced]).mean() > 0.5
    assert closed[~feats.voiced].mean() > 0.9


@pytest.mark.parametrize("name", ["zh-news-8s.wav", "ja-9s.wav"])
def test_other_languages_move_the_mouth(name: str) -> None:
    audio = load(MEDIA / name)
    speech = analyse_speech(audio, None, RunContext())
    frames = cue_frames(speech.cues, len(speech.energy))
    assert speech.method == "acoustic"
    assert len({c.shape for c in speech.cues}) >= 4
    # Pauses longer than 350 ms rest the mouth (shorter ones relax it, as Rhubarb does).
    v = np.concatenate(([True], speech.voiced, [True])).astype(np.int8)
    edges = np.flatnonzero(np.diff(v))
    long_pause = np.zeros(len(speech.voiced), dtype=bool)
    for s, e in zip(edges[::2], edges[1::2]):
        if e - s > 35:
            long_pause[s:e] = True
    assert long_pause.any() and np.isin(frames[long_pause], CLOSED).mean() > 0.9


def test_noise_and_digital_silence_are_not_speech() -> None:
    rng = np.random.default_rng(1)
    noise = Audio(rng.normal(0, 0.02, 3 * 16000).astype(np.float32), source="noise.wav")
    ctx = RunContext()
    speech = analyse_speech(noise, None, ctx)
    assert not speech.voiced.any() and [c.shape for c in speech.cues] == [Shape.X]
    assert ctx.warnings == ["no speech found in noise.wav; the mouth stays closed"]
    silent = analyse_speech(Audio(np.zeros(8000, dtype=np.float32)), "hello", RunContext())
    assert silent.cues == [Cue(0.0, 0.5, Shape.X)] and len(silent.energy) == 50


def test_zero_length_audio_raises() -> None:
    with pytest.raises(SpeechError):
        analyse_speech(Audio(np.zeros(0, dtype=np.float32), source="empty.wav"), None, RunContext())


def test_analyse_speech_reports_progress_and_is_deterministic(tmp_path: Path) -> None:
    x = espeak("She sells sea shells by the sea shore", tmp_path / "s.wav")
    seen: list[float] = []
    ctx = RunContext(progress=lambda stage, f, msg: seen.append(f))
    a = analyse_speech(Audio(x), "She sells sea shells by the sea shore", ctx)
    b = analyse_speech(Audio(x), "She sells sea shells by the sea shore", RunContext())
    assert a.cues == b.cues and a.method == "alignment" and seen[0] == 0.0 and seen[-1] == 1.0
    assert [w.text for w in a.words] == "she sells sea shells by the sea shore".split()
    assert a.cues[0].start == 0 and a.cues[-1].end == pytest.approx(a.duration)
    assert all(p.end <= q.start + 1e-9 for p, q in zip(a.cues, a.cues[1:]))
    assert len(a.energy) == len(a.voiced) == int(np.ceil(a.duration * 100))


def test_compound_words_missing_from_the_dictionary_align(tmp_path, aligner):
    """A made-up compound ("facetalk") is pronounced from its parts and aligns."""
    from facetalk.speech.align import align_words
    from facetalk.speech.text import compound_phones, normalise_transcript

    lookup = aligner.decoder().lookup_word
    assert compound_phones("facetalk", lookup) == lookup("face").split() + lookup("talk").split()
    assert compound_phones("zzqx", lookup) is None
    text = "I am a talking portrait made by facetalk and it runs on your computer"
    wav = tmp_path / "compound.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    words = align_words(load(wav), normalise_transcript(text), aligner)
    spoken = [w.text for w in words if w.text != "<sil>"]
    assert "facetalk" in spoken


def test_features_computed_in_blocks_equal_one_pass() -> None:
    """Long audio is framed 30 s at a time for flat memory; the features must not change."""
    from facetalk.speech import acoustic

    rng = np.random.default_rng(0)
    t = np.arange(int(75 * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
               + rng.normal(0, 0.01, t.size)).astype(np.float32)
    m = acoustic.n_frames(t.size / SAMPLE_RATE)
    whole = acoustic.frame_levels(acoustic.frame_signal(samples, m))
    assert m > 2 * acoustic.BLOCK_FRAMES
    assert np.array_equal(acoustic.blockwise(samples, m, acoustic.frame_levels), whole)
