"""Which engine speaks a --voice value.

    path/to/voice.onnx   Piper (piper-tts), with voice.onnx.json beside it
    anything else        an espeak-ng voice: en-us, en-gb, cmn, fr, ... (`facetalk voices`)

To add an engine: a module with a class following facetalk.tts.base.Engine, and one
row in ENGINES (its name, a test on the --voice value, the class).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Engine, VoiceInfo


def _is_piper(voice: str) -> bool:
    v = voice.strip().lower()
    return v.endswith((".onnx", ".onnx.json"))


def _piper(voice: str) -> Engine:
    from .piper import PiperEngine

    return PiperEngine(voice)


def _espeak(voice: str) -> Engine:
    from .espeak import EspeakEngine

    return EspeakEngine(voice)


# (engine name, whether it takes this --voice value, factory); the first that takes it wins
ENGINES: tuple[tuple[str, Callable[[str], bool], Callable[[str], Engine]], ...] = (
    ("piper", _is_piper, _piper),
    ("espeak-ng", lambda voice: True, _espeak),
)


def engine_name(voice: str) -> str:
    """The engine a --voice value picks, without loading anything."""
    return next(name for name, takes, _ in ENGINES if takes(voice))


def engine_for(voice: str) -> Engine:
    """The engine speaking with `voice`, loaded. VoiceError for an unknown or broken voice."""
    from .base import VoiceError

    if not voice or not voice.strip():
        raise VoiceError("no voice given: use --voice en-us (see 'facetalk voices')")
    for _name, takes, factory in ENGINES:
        if takes(voice):
            return factory(voice.strip())
    raise VoiceError(f"no engine speaks voice {voice!r}")  # unreachable: espeak-ng takes any name


def list_voices() -> list[VoiceInfo]:
    """The installed voices that are named (espeak-ng's); Piper voices are files, given by path."""
    from .espeak import list_voices as espeak_voices

    return espeak_voices()
