"""Piper (piper-tts) voices: --voice path/to/voice.onnx with voice.onnx.json beside it.

The voice files are checked before piper is imported (missing model, missing or
malformed config), so those errors read the same with or without piper installed.
Piper gives phone timings only for models exported with alignments (piper-tts >= 1.3,
include_alignments); otherwise facetalk.tts.speak aligns each sentence's known words to
its audio. Rate maps to Piper's length_scale (175 words per minute = 1.0); Piper has no
pitch control.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..types import Phone
from .base import DEFAULT_RATE, SynthResult, VoiceError, VoiceInfo
from .phonemes import SILENCE, segments, split_phone

ENGINE = "piper"
INSTALL = "pip install piper-tts"
_MARKS = frozenset({"ˈ", "ˌ", "ː", "ˑ"})  # stress and length: part of a neighbouring phoneme


def config_path(model: Path) -> Path | None:
    """The config of a model: voice.onnx.json (Piper's name for it), else voice.json."""
    for candidate in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def read_config(model: Path) -> tuple[Path, dict]:
    """(config path, config) of a Piper model, checked. VoiceError naming what is wrong."""
    if not model.exists():
        raise VoiceError(f"Piper voice model not found: {model}")
    if not model.is_file():
        raise VoiceError(f"Piper voice {model} is not a file: give the .onnx model")
    config = config_path(model)
    if config is None:
        raise VoiceError(
            f"Piper voice {model.name} has no config beside it: put {model.name}.json "
            f"(downloaded with the model) in {model.parent}"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise VoiceError(f"Piper voice config {config} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VoiceError(f"cannot read Piper voice config {config}: {e}") from None
    problem = _config_problem(data)
    if problem:
        raise VoiceError(f"Piper voice config {config} is malformed: {problem} (download the model's .json again)")
    return config, data


def _config_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "it is not a JSON object"
    audio = data.get("audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("sample_rate"), int) or audio["sample_rate"] <= 0:
        return "no audio.sample_rate"
    if not isinstance(data.get("phoneme_id_map"), dict) or not data["phoneme_id_map"]:
        return "no phoneme_id_map"
    if language_of(data) is None:
        return "no language (espeak.voice or language.code)"
    return None


def language_of(config: dict) -> str | None:
    """The voice's language code: espeak.voice ("en-us"), else language.code ("en_US" -> "en-us")."""
    espeak = config.get("espeak")
    if isinstance(espeak, dict) and isinstance(espeak.get("voice"), str) and espeak["voice"]:
        return espeak["voice"].lower()
    language = config.get("language")
    if isinstance(language, dict) and isinstance(language.get("code"), str) and language["code"]:
        return language["code"].replace("_", "-").lower()
    return None


class PiperEngine:
    """A Piper voice model. timed: only when the model reports phoneme alignments."""

    name = ENGINE
    timed = False
    supports_pitch = False

    def __init__(self, model: str) -> None:
        path = Path(model).expanduser()
        if path.name.endswith(".onnx.json"):
            path = path.with_name(path.name[: -len(".json")])
        config, data = read_config(path)
        self.voice = VoiceInfo(str(path), language_of(data), ENGINE, str(data.get("dataset") or path.stem))
        self.sample_rate = int(data["audio"]["sample_rate"])
        try:
            from piper import PiperVoice
        except ImportError:
            raise VoiceError(f"Piper voices need the piper-tts package, which is not installed: {INSTALL}") from None
        try:
            self._voice = PiperVoice.load(str(path), config_path=str(config))
        except Exception as e:  # noqa: BLE001 - onnxruntime's own errors for a broken model
            raise VoiceError(f"cannot load Piper voice {path}: {type(e).__name__}: {e}".split("\n")[0]) from None

    def synthesize(self, sentence: str, rate: int | None = None, pitch: int | None = None) -> SynthResult:
        length_scale = DEFAULT_RATE / rate if rate else None
        v = self._voice
        if hasattr(v, "synthesize_stream_raw"):  # piper-tts 1.2
            kwargs = {"length_scale": length_scale} if length_scale else {}
            pcm = b"".join(v.synthesize_stream_raw(sentence, **kwargs))
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            return SynthResult(samples, self.sample_rate)
        from piper import SynthesisConfig  # piper-tts >= 1.3

        syn = SynthesisConfig(length_scale=length_scale) if length_scale else None
        try:
            chunks = list(v.synthesize(sentence, syn_config=syn, include_alignments=True))
        except TypeError:  # a release without alignments
            chunks = list(v.synthesize(sentence, syn_config=syn))
        if not chunks:
            return SynthResult(np.zeros(0, np.float32), self.sample_rate)
        samples = np.concatenate([np.asarray(c.audio_float_array, dtype=np.float32).reshape(-1) for c in chunks])
        phones = None
        if all(getattr(c, "phoneme_alignments", None) for c in chunks):
            phones = []
            offset = 0
            for c in chunks:
                phones += [Phone(p.label, p.start + offset / self.sample_rate, p.end + offset / self.sample_rate)
                           for p in alignment_phones([(a.phoneme, int(a.num_samples)) for a in c.phoneme_alignments], self.sample_rate)]
                offset += len(np.asarray(c.audio_float_array).reshape(-1))
        return SynthResult(samples, self.sample_rate, phones, None)


def alignment_phones(alignments: list[tuple[str, int]], sr: int) -> list[Phone]:
    """Phones from Piper's (phoneme, samples) alignments: one IPA codepoint each, with
    stress and length marks and word spaces among them. Marks join the phoneme before
    them, two vowels forming a known diphthong join, spaces and punctuation are SIL."""
    merged: list[tuple[str, int, int]] = []  # (name, start sample, end sample)
    t = 0
    for name, n in alignments:
        start, t = t, t + n
        if name in _MARKS:
            if merged:
                merged[-1] = (merged[-1][0] + name, merged[-1][1], t)
            continue
        if name in ("^", "$", "_") or not any(ch.isalpha() for ch in name):
            merged.append(("_", start, t))
            continue
        if merged and merged[-1][0] != "_" and len(segments(merged[-1][0])) == 1 and len(segments(merged[-1][0] + name)) == 1:
            merged[-1] = (merged[-1][0] + name, merged[-1][1], t)  # "a" + "ɪ" -> AY
            continue
        merged.append((name, start, t))
    phones: list[Phone] = []
    for name, s, e in merged:
        if e <= s:
            continue
        labels = segments(name)
        if not labels:
            if phones and phones[-1].label == SILENCE:
                phones[-1] = Phone(SILENCE, phones[-1].start, e / sr)
            else:
                phones.append(Phone(SILENCE, s / sr, e / sr))
            continue
        phones += [Phone(lab, a, b) for lab, a, b in split_phone(labels, s / sr, e / sr)]
    return phones
