"""Text to talking video: speech synthesis with the phone timings the lips follow.

    from facetalk.tts import speak_to_wav, speech_from_spoken
    spoken = speak_to_wav("Hello. [pause 500ms] Welcome.", "en-us", "hello.wav")
    speech = speech_from_spoken(spoken)   # a facetalk Speech: mouth cues, loudness, voicing

Engines: espeak-ng (default; its C library, with its own word and phoneme timings) and
Piper (--voice path/to/voice.onnx; timings by forced alignment). See facetalk.tts.base
for the engine interface and facetalk.tts.registry for how a --voice picks an engine.
"""

from __future__ import annotations

from .base import DEFAULT_RATE, SynthResult, TextError, VoiceError, VoiceInfo
from .registry import engine_for, list_voices
from .script import Pause, Sentence, parse_text
from .speak import (
    SpokenText,
    check_text_request,
    prepare,
    speak_to_wav,
    speech_from_spoken,
)

DEFAULT_VOICE = "en-us"

__all__ = [
    "DEFAULT_RATE", "DEFAULT_VOICE", "Pause", "Sentence", "SpokenText", "SynthResult", "TextError", "VoiceError",
    "VoiceInfo", "check_text_request", "engine_for", "list_voices", "parse_text", "prepare", "speak_to_wav", "speech_from_spoken",
]  # fmt: skip
