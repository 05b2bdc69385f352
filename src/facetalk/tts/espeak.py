"""espeak-ng through its C library (libespeak-ng.so.1, from the Debian package), by ctypes.

The library reports, while it synthesises, an event at the start of every word and
every phoneme with its exact sample position; those are the engine's own timings, so the
lips need no alignment pass. Phoneme names come as IPA (espeakINITIALIZE_PHONEME_IPA)
and become ARPAbet labels by facetalk.tts.phonemes.

The library keeps its state (current voice, rate, pitch, the synthesis callback) in
process-wide globals, so there is one handle per process (`library()`) and every use
holds its lock: two threads speak one after the other, never at once.

Mandarin: espeak-ng 1.51's `cmn` voice reads Chinese characters with their tone numbers
said in English ("ni three hao three", espeak-ng issues #1028, #1370); its
`cmn-latn-pinyin` variant reads them right, so a sentence with Chinese characters is
spoken with that variant.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..types import Phone, Word
from .base import DEFAULT_RATE, SynthResult, VoiceError, VoiceInfo
from .phonemes import SILENCE, segments, split_phone

ENGINE = "espeak-ng"
_LIB_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.1.dylib")
_INSTALL = "install it with 'apt-get install espeak-ng' (or run scripts/setup)"

# espeak_ng/speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_END, EVENT_MSG_TERMINATED, EVENT_PHONEME = 0, 1, 5, 6, 7
PARAM_RATE, PARAM_PITCH = 1, 3
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]  # fmt: skip


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int), ("spare", ctypes.c_void_p),
    ]  # fmt: skip


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Collector:
    """What one espeak_Synth call produced: int16 chunks and (type, text_position, length, sample, name) events."""

    chunks: list[np.ndarray] = field(default_factory=list)
    events: list[tuple[int, int, int, int, str]] = field(default_factory=list)

    def __call__(self, wav, n: int, events) -> None:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (EVENT_WORD, EVENT_PHONEME):
                name = bytes(e.id.string).split(b"\0", 1)[0].decode("utf-8", "replace") if e.type == EVENT_PHONEME else ""
                self.events.append((e.type, e.text_position, e.length, e.sample, name))
            i += 1


class Library:
    """The process-wide libespeak-ng: loaded and initialised once (see module docstring)."""

    def __init__(self) -> None:
        lib = None
        for name in (*_LIB_NAMES, ctypes.util.find_library("espeak-ng")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise VoiceError(f"the espeak-ng library (libespeak-ng.so.1) is not installed: {_INSTALL}")
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        options = INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT
        self.sample_rate = int(lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options))
        if self.sample_rate <= 0:
            raise VoiceError(f"espeak-ng could not start (its data files are missing?): {_INSTALL}")
        self._lib = lib
        self._sink: _Collector | None = None
        self._callback = _SynthCallback(self._on_synth)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()
        self._voices: list[VoiceInfo] | None = None
        path = ctypes.c_char_p()
        lib.espeak_Info(ctypes.byref(path))
        self.data_path = Path(path.value.decode()) if path.value else None

    def _on_synth(self, wav, n, events) -> int:
        if self._sink is not None:
            self._sink(wav, n, events)
        return 0

    def voices(self) -> list[VoiceInfo]:
        """Every installed voice, one entry per language it speaks (its main language first)."""
        with self.lock:
            if self._voices is None:
                self._voices = self._list_voices()
            return list(self._voices)

    def _list_voices(self) -> list[VoiceInfo]:
        out: list[VoiceInfo] = []
        arr = self._lib.espeak_ListVoices(None)
        i = 0
        while arr[i]:
            v = arr[i].contents
            name = (v.name or b"").decode("utf-8", "replace")
            ident = (v.identifier or b"").decode("utf-8", "replace")
            for _priority, lang in _languages(v.languages):
                out.append(VoiceInfo(name=lang.lower(), language=lang.lower(), engine=ENGINE,
                                     description=f"{name.replace('_', ' ')} ({ident})"))
            i += 1
        return out

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> _Collector:
        data = text.encode("utf-8")
        collector = _Collector()
        with self.lock:
            if self._lib.espeak_SetVoiceByName(voice.encode("utf-8")) != EE_OK:
                raise VoiceError(f"espeak-ng cannot load voice {voice!r}")
            self._lib.espeak_SetParameter(PARAM_RATE, int(rate), 0)
            self._lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
            self._sink = collector
            try:
                rc = self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            finally:
                self._sink = None
        if rc != EE_OK:
            raise RuntimeError(f"espeak-ng failed to speak (status {rc:#x})")
        return collector


def _languages(ptr: int | None) -> list[tuple[int, str]]:
    """espeak_VOICE.languages: (priority byte, NUL-terminated name) pairs, ended by a 0 byte."""
    out: list[tuple[int, str]] = []
    if not ptr:
        return out
    offset = 0
    while True:
        priority = ctypes.string_at(ptr + offset, 1)[0]
        if priority == 0:
            return out
        name = ctypes.string_at(ptr + offset + 1).decode("utf-8", "replace")
        out.append((priority, name))
        offset += 2 + len(name.encode("utf-8"))


@functools.cache
def library() -> Library:
    """The one handle per process (the library's own state is process-wide)."""
    return Library()


def installed() -> bool:
    """Whether espeak-ng can be used here (the library loads)."""
    try:
        library()
    except VoiceError:
        return False
    return True


def list_voices() -> list[VoiceInfo]:
    """espeak-ng's voices: each language code it speaks, e.g. en-us, en-gb, cmn, fr-fr."""
    seen: dict[str, VoiceInfo] = {}
    for v in library().voices():
        seen.setdefault(v.name, v)
    return sorted(seen.values(), key=lambda v: v.name)


def resolve_voice(value: str) -> VoiceInfo:
    """The voice --voice names: a language code (en-us, cmn, zh), optionally with an
    espeak-ng variant (en-us+f3). VoiceError with similar names for an unknown one."""
    base, plus, variant = value.strip().partition("+")
    voices = {v.name: v for v in list_voices()}
    key = base.lower().replace("_", "-")
    found = voices.get(key)
    if found is None:  # espeak-ng's own name, "English_(America)"
        by_name = {v.description.rsplit(" (", 1)[0].lower(): v for v in voices.values()}
        found = by_name.get(base.lower().replace("_", " "))
    if found is None:
        close = difflib.get_close_matches(key, list(voices), n=4, cutoff=0.6)
        words = key.replace("-", " ")
        named = [v for v in voices.values() if len(words) > 2 and words in v.description.lower()]
        close += [v.name for v in sorted(named, key=lambda v: not v.description.lower().startswith(words))]
        if not close:
            close = [n for n in voices if n.split("-")[0] == key.split("-")[0]]
        close = list(dict.fromkeys(close))[:5]
        hint = f"similar: {', '.join(close)}; " if close else ""
        raise VoiceError(f"unknown voice {value!r}: {hint}see 'facetalk voices' for every voice")
    if plus:
        known = variants()
        if known and variant.lower() not in known:
            raise VoiceError(f"unknown voice variant {variant!r} in {value!r}: use one of {', '.join(sorted(known)[:8])}, ...")
        return VoiceInfo(f"{found.name}+{variant}", found.language, ENGINE, found.description)
    return found


def variants() -> set[str]:
    """espeak-ng's voice variants (f3, m3, klatt, whisper, ...): files in its voices/!v folder."""
    lib = library()
    folder = lib.data_path / "voices" / "!v" if lib.data_path else None
    if folder is None or not folder.is_dir():
        return set()
    return {p.name.lower() for p in folder.iterdir() if p.is_file()}


def _has_han(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)


class EspeakEngine:
    """espeak-ng speaking with one voice; synthesize() gives the engine's own word and phone timings."""

    name = ENGINE
    timed = True

    def __init__(self, voice: str) -> None:
        self.voice = resolve_voice(voice)
        self.sample_rate = library().sample_rate

    def _voice_for(self, sentence: str) -> str:
        if self.voice.language in ("cmn", "zh", "zh-cmn") and _has_han(sentence):
            variant = self.voice.name.partition("+")[1:]
            return "cmn-latn-pinyin" + "".join(variant)
        return self.voice.name

    def synthesize(self, sentence: str, rate: int | None = None, pitch: int | None = None) -> SynthResult:
        got = library().synthesize(sentence, self._voice_for(sentence), rate or DEFAULT_RATE, 50 if pitch is None else pitch)
        samples = (np.concatenate(got.chunks).astype(np.float32) / 32768.0) if got.chunks else np.zeros(0, np.float32)
        phones, words = timings(got.events, len(samples), self.sample_rate, sentence)
        return SynthResult(samples, self.sample_rate, phones, words)


def timings(events: list[tuple[int, int, int, int, str]], n_samples: int, sr: int, text: str) -> tuple[list[Phone], list[Word]]:
    """Phones and words from espeak-ng's events (type, text_position, length, sample, name).

    A phoneme lasts until the next one starts; pauses and boundaries become SIL; a word
    holds the phones after its event up to the next word's event."""
    phoneme_events = [(i, e) for i, e in enumerate(events) if e[0] == EVENT_PHONEME]
    phones: list[Phone] = []
    owner: list[int] = []  # index of the word event each phone follows (-1: none)
    word_events = [i for i, e in enumerate(events) if e[0] == EVENT_WORD]
    current = -1
    wi = 0
    for k, (i, (_t, _pos, _len, sample, name)) in enumerate(phoneme_events):
        while wi < len(word_events) and word_events[wi] < i:
            current = wi
            wi += 1
        start = min(sample, n_samples) / sr
        end = (min(phoneme_events[k + 1][1][3], n_samples) if k + 1 < len(phoneme_events) else n_samples) / sr
        if end <= start:
            continue
        labels = segments(name)
        if not labels:
            if phones and phones[-1].label == SILENCE and owner[-1] == -1:
                phones[-1] = Phone(SILENCE, phones[-1].start, end)
            else:
                phones.append(Phone(SILENCE, start, end))
                owner.append(-1)
            continue
        for label, s, e in split_phone(labels, start, end):
            phones.append(Phone(label, s, e))
            owner.append(current)
    if phones and phones[0].start > 0:
        phones.insert(0, Phone(SILENCE, 0.0, phones[0].start))
        owner.insert(0, -1)
    if phones and phones[-1].end < n_samples / sr:
        phones.append(Phone(SILENCE, phones[-1].end, n_samples / sr))
        owner.append(-1)
    words: list[Word] = []
    for w, i in enumerate(word_events):
        mine = tuple(p for p, o in zip(phones, owner) if o == w)
        if not mine:
            continue
        _t, pos, length, _s, _n = events[i]
        words.append(Word(text[max(0, pos - 1) : max(0, pos - 1) + max(1, length)], mine[0].start, mine[-1].end, mine))
    return phones, words
