"""Text to talking video (facetalk.tts): text parsing, the espeak-ng engine and its
timings, Piper voice checks, the alignment path, and the render/tts/voices commands.

The 20-minute lesson is a benchmark (bench/bench_tts.py), not a test."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from facetalk.tts import (
    TextError,
    VoiceError,
    parse_text,
    speak_to_wav,
    speech_from_spoken,
)
from facetalk.tts.base import SynthResult
from facetalk.tts.espeak import EspeakEngine
from facetalk.tts.normalise import spoken_form
from facetalk.tts.phonemes import segments
from facetalk.tts.piper import alignment_phones
from facetalk.tts.registry import engine_name
from facetalk.tts.script import Pause, Sentence, check_script, split_sentences

from .cli_helpers import assert_one_line_error, run_cli
from .conftest import decode_video, read_wav, stream_durations

PAUSE_TEXT = "Hello, my name is Anna. [pause 800ms] Mom made a big apple pie."


# ------------------------------------------------------------------ text


def test_sentences_pauses_and_paragraphs():
    items = parse_text("Hello Dr. Smith, how are you? I am fine.\n\nNew part [pause 500ms] after [PAUSE 1.5s]\n你好。妈妈骂马吗？")
    assert items == [
        Sentence("Hello Dr. Smith, how are you?"), Sentence("I am fine."), Pause(0.6), Sentence("New part"),
        Pause(0.5), Sentence("after"), Pause(1.5), Sentence("你好。"), Sentence("妈妈骂马吗？"),
    ]  # fmt: skip
    assert split_sentences("It costs $3.50, e.g. a lot. See J. Smith! Done") == [
        "It costs $3.50, e.g. a lot.", "See J. Smith!", "Done"]


def test_long_sentence_is_cut_at_commas():
    clause = "one two three four five six seven eight"
    pieces = split_sentences(", ".join([clause] * 8) + ".")
    assert len(pieces) > 1 and all(len(p.split()) <= 30 for p in pieces)
    assert " ".join(pieces) == ", ".join([clause] * 8) + "."
    # no punctuation to cut at: cut every 30 words (characters for Chinese) all the same
    assert [len(p.split()) for p in split_sentences(" ".join(["word"] * 100) + ".")] == [30, 30, 30, 10]
    assert [len(p) for p in split_sentences("我" * 70 + "。")] == [30, 30, 11]


@pytest.mark.parametrize("text", ["", "   \n\n  ", "[pause 1s]", "... !!", "\n\n[pause 200ms]\n\n"])
def test_nothing_to_say_is_an_error(text):
    with pytest.raises(TextError, match="empty"):
        parse_text(text)


@pytest.mark.parametrize("text", ["hi [pause abc] there", "hi [pause 500ms there", "hi [pause] there", "x [pause 2 minutes]"])
def test_malformed_pause_tags(text):
    with pytest.raises(TextError, match="pause tag"):
        parse_text(text)


def test_script_check():
    check_script("Hello there", "en-us", "en-us")
    check_script("你好 hello", "cmn", "cmn")  # Latin is read by every voice
    check_script("Привет", "ru", "ru")
    with pytest.raises(VoiceError, match="Chinese characters.*--voice cmn"):
        check_script("我们今天学习数学", "en-us", "en-us")
    with pytest.raises(VoiceError, match="Cyrillic"):
        check_script("Привет", "fr", "fr")


def test_numbers_and_abbreviations_are_written_out_for_english():
    assert spoken_form("Dr. Smith paid $12.50 for 3 tickets on May 4th, 1999.") == (
        "Doctor Smith paid twelve dollars and fifty cents for three tickets on May fourth, nineteen ninety nine.")
    assert spoken_form("About 75% of 2,400 & -5 vs. etc.") == (
        "About seventy five percent of two thousand four hundred and minus five versus et cetera.")


# ------------------------------------------------------------------ phonemes and engines


@pytest.mark.parametrize("name, labels", [
    ("ð", ["DH"]), ("ə", ["AH"]), ("aɪ", ["AY"]), ("oʊ", ["OW"]), ("tʃ", ["CH"]), ("ɜː", ["ER"]), ("ɾ", ["D"]),
    ("ʊɹ", ["UH", "R"]), ("əl", ["AH", "L"]), ("m", ["M"]), ("f", ["F"]),
    ("tɕh", ["CH"]), ("s.", ["SH"]), ("i.", ["IH"]), ("iɛ", ["IY", "EH"]), ("y", ["UW"]), ("ɑu", ["AW"]), ("ər", ["ER"]),
    ("", []), ("_:", []), ("(en)", []),
])  # fmt: skip
def test_ipa_names_become_arpabet(name, labels):
    assert segments(name) == labels


def test_engine_is_chosen_by_the_voice_value():
    assert engine_name("voices/en_US-lessac.onnx") == "piper"
    assert engine_name("en-us") == engine_name("cmn") == "espeak-ng"


def test_espeak_gives_its_own_word_and_phone_timings():
    r = EspeakEngine("en-us").synthesize("Mom made a big apple pie.")
    assert r.sample_rate == 22050 and r.samples.dtype == np.float32 and r.duration > 1.0
    assert [w.text for w in r.words] == ["Mom", "made", "a", "big", "apple", "pie"]
    assert [p.label for p in r.words[0].phones] == ["M", "AA", "M"]
    for a, b in zip(r.phones, r.phones[1:]):  # contiguous, covering the audio
        assert a.end == pytest.approx(b.start) and a.end > a.start
    assert r.phones[0].start == 0.0 and r.phones[-1].end == pytest.approx(r.duration)
    zh = EspeakEngine("cmn").synthesize("妈妈骂马吗？")
    assert [p.label for p in zh.phones if p.label != "SIL"] == ["M", "AA"] * 5  # read as Mandarin, not "ma one"


def test_unknown_voice_names_similar_ones():
    with pytest.raises(VoiceError, match="similar: en-us"):
        EspeakEngine("en-uss")


def test_piper_alignments_become_phones():
    phones = alignment_phones([("^", 100), ("h", 800), ("ə", 900), ("l", 700), ("ˈ", 50), ("o", 1200), ("ʊ", 800),
                               (" ", 400), ("t", 600), ("ʃ", 900), (".", 2000), ("$", 10)], 22050)
    assert [p.label for p in phones] == ["SIL", "HH", "AH", "L", "OW", "SIL", "CH", "SIL"]
    assert phones[-1].end == pytest.approx(8460 / 22050)


# ------------------------------------------------------------------ speaking a text


def test_speak_to_wav_streams_sentences_with_pauses(tmp_path):
    wav = tmp_path / "s.wav"
    spoken = speak_to_wav("Hello there. [pause 1s] Good bye.\n\nSee you.", "en-us", wav)
    samples, sr = read_wav(wav)
    assert sr == spoken.sample_rate and len(samples) / sr == pytest.approx(spoken.duration)
    assert spoken.timing == "engine" and spoken.sentences == 3
    sil = [p for p in spoken.phones if p.label == "SIL"]
    longest = max(sil, key=lambda p: p.end - p.start)
    assert longest.end - longest.start >= 1.0
    inner = samples[int((longest.start + 0.1) * sr) : int((longest.end - 0.1) * sr)]
    assert np.abs(inner).max() < 1e-3  # digital silence in the pause
    speech = speech_from_spoken(spoken)
    assert speech.method == "engine" and speech.cues[0].start == 0 and speech.cues[-1].end == pytest.approx(spoken.duration)
    mid = (longest.start + longest.end) / 2
    assert next(c for c in speech.cues if c.start <= mid < c.end).shape.value == "X"  # mouth at rest in the pause
    # loudness and voicing match the core analysis of the same file, read in constant memory
    from facetalk.media.audio import load_audio
    from facetalk.speech.acoustic import analyse_features

    f = analyse_features(load_audio(wav))
    assert np.allclose(f.energy, speech.energy, atol=1e-6) and np.array_equal(f.voiced, speech.voiced)


class _Untimed:
    """An engine without timings (like most Piper voices): espeak-ng's audio, no phones;
    the sentence "Garbled noise." gives noise, which cannot be aligned."""

    name = "untimed"
    timed = False

    def __init__(self) -> None:
        self._inner = EspeakEngine("en-us")
        self.voice, self.sample_rate = self._inner.voice, self._inner.sample_rate

    def synthesize(self, sentence, rate=None, pitch=None):
        r = self._inner.synthesize(sentence, rate, pitch)
        if sentence.startswith("Garbled"):
            r.samples = (np.random.default_rng(0).normal(0, 0.3, len(r.samples))).astype(np.float32)
        return SynthResult(r.samples, r.sample_rate)


def test_alignment_path_when_the_engine_gives_no_timings(tmp_path):
    text = "The birch canoe slid on the smooth planks. Garbled noise. Glue the sheet to the dark blue background."
    engine = _Untimed()
    spoken = speak_to_wav(text, "untimed", tmp_path / "a.wav", prepared=(parse_text(text), engine))
    assert spoken.timing == "mixed" and len(spoken.warnings) == 1 and "sentence 2" in spoken.warnings[0]
    words = [w.text for w in spoken.words]
    assert words[:8] == ["the", "birch", "canoe", "slid", "on", "the", "smooth", "planks"] and words[-1] == "background"
    # the aligned phones agree with the engine's own timings of the same audio
    timed = EspeakEngine("en-us").synthesize("The birch canoe slid on the smooth planks.")
    first = [p for w in spoken.words[:8] for p in w.phones if p.label != "SIL"]
    engine_phones = [p for p in timed.phones if p.label != "SIL"]
    assert [p.label for p in first][:6] == [p.label for p in engine_phones][:6]
    assert np.mean([abs(a.start - b.start) for a, b in zip(first, engine_phones)]) < 0.04


# ------------------------------------------------------------------ commands


@pytest.fixture(scope="module")
def portraits(media, tmp_path_factory):
    return {"en": media / "faces" / "woman-portrait.png", "zh": media / "faces" / "young-woman.png"}


def _openness(path):
    from facetalk.eval.metrics import openness_series
    from facetalk.face.models import FaceModels
    from facetalk.face.track import track_faces

    frames, fps = decode_video(path)
    return openness_series(track_faces(iter(frames), FaceModels(), fps=fps, smooth=False).raw), fps


def test_render_english_text_mouth_closes_at_pause(capsys, portraits, tmp_path):
    out = tmp_path / "en.mp4"
    code, stdout, err = run_cli(capsys, "render", "--face", portraits["en"], "--text", PAUSE_TEXT, "--size", "160",
                                "--still", "-o", out)
    assert code == 0, err
    assert "lip-sync from engine" in stdout
    d = stream_durations(out)
    spoken = speak_to_wav(PAUSE_TEXT, "en-us", tmp_path / "ref.wav")
    assert abs(d["video"] - d["audio"]) <= 1 / d["fps"] + 1e-6
    assert d["video"] == pytest.approx(spoken.duration, abs=0.06)
    # the pause: the longest silence; mouth closed inside it, open during the words
    pause = max((p for p in spoken.phones if p.label == "SIL"), key=lambda p: p.end - p.start)
    openness, fps = _openness(out)
    assert np.isfinite(openness).mean() > 0.9
    t = np.arange(len(openness)) / fps
    in_pause = (t > pause.start + 0.15) & (t < pause.end - 0.15)
    speaking = np.array([any(w.start <= x < w.end for w in spoken.words) for x in t])
    assert in_pause.sum() >= 10
    assert np.nanmax(openness[in_pause]) < 0.06
    assert np.nanpercentile(openness[speaking], 75) > np.nanmean(openness[in_pause]) + 0.04


def test_render_mandarin_text(capsys, portraits, tmp_path):
    out = tmp_path / "zh.mp4"
    text = "你好，我们今天学习数学。妈妈骂马吗？"
    code, _, err = run_cli(capsys, "render", "--face", portraits["zh"], "--text", text, "--voice", "cmn", "--size", "160",
                           "-o", out, "--quiet")
    assert code == 0, err
    d = stream_durations(out)
    spoken = speak_to_wav(text, "cmn", tmp_path / "ref.wav")
    assert abs(d["video"] - d["audio"]) <= 1 / d["fps"] + 1e-6
    assert d["video"] == pytest.approx(spoken.duration, abs=0.06)
    openness, _ = _openness(out)
    assert np.nanmax(openness) > 0.08  # the mouth moves


def test_tts_command_writes_wav_and_cues(capsys, tmp_path):
    text_file = tmp_path / "lesson.txt"
    text_file.write_text("First line of the lesson.\n\nSecond paragraph [pause 500ms] ends here.", encoding="utf-8")
    wav, cues = tmp_path / "lesson.wav", tmp_path / "lesson.tsv"
    code, stdout, err = run_cli(capsys, "tts", "--text-file", text_file, "-o", wav, "--cues", cues, "--rate", "160")
    assert code == 0, err
    samples, sr = read_wav(wav)
    lines = cues.read_text().strip().splitlines()
    assert float(lines[-1].split("\t")[0]) == pytest.approx(len(samples) / sr, abs=0.011)  # Rhubarb's end line
    assert f"{len(samples) / sr:.2f} s" in stdout and "3 sentences" in stdout
    assert 3.0 < len(samples) / sr < 8.0
    assert not list(tmp_path.glob(".*part*"))


def test_voices_command_lists_english_and_mandarin(capsys):
    code, stdout, _ = run_cli(capsys, "voices")
    assert code == 0
    names = {line.split()[0] for line in stdout.splitlines()[1:] if line.strip()}
    assert {"en-us", "cmn", "en-gb"} <= names and "piper" in stdout.lower()
    code, stdout, _ = run_cli(capsys, "voices", "--json", "--language", "cmn")
    assert code == 0 and "cmn" in [v["name"] for v in json.loads(stdout)]


@pytest.fixture
def piper_files(tmp_path):
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"not really onnx")
    return model


@pytest.mark.parametrize("case, words", [
    ("empty", ["empty"]),
    ("only_pauses", ["empty"]),
    ("unknown_voice", ["unknown voice", "similar", "en-us"]),
    ("chinese_with_english_voice", ["Chinese characters", "en-us", "--voice cmn"]),
    ("bad_pause", ["malformed pause tag"]),
    ("audio_and_text", ["not both"]),
    ("piper_missing", ["Piper voice model not found"]),
    ("piper_no_json", ["no config", "voice.onnx.json"]),
    ("piper_bad_json", ["not valid JSON"]),
    ("piper_malformed", ["malformed", "sample_rate"]),
    ("piper_not_installed", ["pip install piper-tts"]),
    ("rate", ["--rate", "80 to 450"]),
])  # fmt: skip
@pytest.mark.parametrize("command", ["render", "tts"])
def test_text_errors_are_one_line_and_write_nothing(capsys, tmp_path, piper_files, monkeypatch, command, case, words):
    text, voice, extra = "Hello there.", None, []
    if case == "empty":
        text = "  \n  "
    elif case == "only_pauses":
        text = "[pause 500ms]\n\n[pause 1s]"
    elif case == "unknown_voice":
        voice = "en-uss"
    elif case == "chinese_with_english_voice":
        text = "我们今天学习数学。"
    elif case == "bad_pause":
        text = "Hello [pause soon] there."
    elif case == "audio_and_text":
        if command == "tts":
            pytest.skip("tts takes no audio")
        speech = tmp_path / "speech.wav"
        EspeakEngine("en-us")  # the library loads
        from .conftest import write_wav

        write_wav(speech, np.zeros(16000, np.float32), 16000)
        extra = ["--audio", speech]
    elif case == "piper_missing":
        voice = str(tmp_path / "nope.onnx")
    elif case.startswith("piper"):
        voice = str(piper_files)
        config = piper_files.with_name("voice.onnx.json")
        if case == "piper_bad_json":
            config.write_text("{ not json", encoding="utf-8")
        elif case == "piper_malformed":
            config.write_text(json.dumps({"audio": {}, "phoneme_id_map": {"a": [1]}}), encoding="utf-8")
        elif case == "piper_not_installed":
            config.write_text(json.dumps({"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"},
                                          "phoneme_id_map": {"a": [1]}}), encoding="utf-8")
            monkeypatch.setitem(sys.modules, "piper", None)  # as if piper-tts were not installed
    elif case == "rate":
        extra = ["--rate", "1000"]
    out = tmp_path / ("out.mp4" if command == "render" else "out.wav")
    args = [command, "--text", text, "-o", out, *extra] + (["--voice", voice] if voice else [])
    if command == "render":
        args += ["--face", piper_files]  # never read: the text is checked first
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, *words)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
