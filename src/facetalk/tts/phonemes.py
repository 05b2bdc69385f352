"""IPA phoneme names (what espeak-ng and Piper report) -> the ARPAbet labels the cue rules read.

facetalk.speech.cues turns ARPAbet phones into mouth shapes. Engines name phonemes in
IPA, for every language, so one table by articulation serves English and Mandarin
alike: bilabials close the lips (P B M), labiodentals tuck the lower lip (F V), vowels
go by openness and rounding (i -> IY, a -> AA, u -> UW, o -> OW, y -> UW ...).
English maps one to one; other languages map to the ARPAbet phone that looks the same
on the lips, which is all the cue rules need.

A name may hold several segments ("ʊɹ", "əl", Mandarin "iɛ", "uo"): known diphthongs
become the ARPAbet diphthong, anything else is split into one phone per segment.
"""

from __future__ import annotations

import unicodedata

SILENCE = "SIL"

# Segment -> ARPAbet label. Multi-character segments are matched first.
_SEGMENTS: dict[str, str] = {
    # affricates
    "tʃ": "CH", "dʒ": "JH", "ʈʂ": "CH", "ɖʐ": "JH", "tɕ": "CH", "dʑ": "JH", "ts": "CH", "dz": "JH",
    "pf": "F", "ər": "ER", "ɜr": "ER",
    # bilabial, labiodental
    "p": "P", "b": "B", "m": "M", "ɸ": "F", "β": "V", "f": "F", "v": "V", "ʋ": "V", "ɱ": "M",
    # dental, alveolar
    "θ": "TH", "ð": "DH", "t": "T", "d": "D", "n": "N", "s": "S", "z": "Z", "l": "L", "ɫ": "L",
    "ɬ": "L", "ɮ": "L", "r": "R", "ɹ": "R", "ɾ": "D", "ɽ": "D",
    # postalveolar, retroflex, alveolo-palatal
    "ʃ": "SH", "ʒ": "ZH", "ʂ": "SH", "ʐ": "ZH", "ɕ": "SH", "ʑ": "ZH", "ʈ": "T", "ɖ": "D",
    "ɳ": "N", "ɭ": "L", "ɻ": "R",
    # palatal, velar, uvular, glottal
    "j": "Y", "ʝ": "Y", "c": "K", "ɟ": "G", "ç": "HH", "ɲ": "N", "ʎ": "L", "k": "K", "g": "G",
    "ɡ": "G", "x": "HH", "ɣ": "G", "ŋ": "NG", "q": "K", "ɢ": "G", "χ": "HH", "ʁ": "R", "ʀ": "R",
    "ħ": "HH", "ʕ": "HH", "h": "HH", "ɦ": "HH", "ʔ": "T",
    # approximants with rounding
    "w": "W", "ʍ": "W", "ɥ": "W", "ɰ": "Y",
    # vowels: close
    "i": "IY", "ɪ": "IH", "ɨ": "IH", "ᵻ": "IH", "ɯ": "IH", "y": "UW", "ʏ": "UH", "ʉ": "UW",
    "u": "UW", "ʊ": "UH",
    # close-mid, mid
    "e": "EY", "ø": "UH", "ɘ": "AH", "ɵ": "UH", "ɤ": "AH", "o": "OW", "ə": "AH", "ɚ": "ER",
    "ɝ": "ER", "ɜ": "ER",
    # open-mid, open
    "ɛ": "EH", "œ": "AO", "ɞ": "AO", "ʌ": "AH", "ɔ": "AO", "æ": "AE", "ɐ": "AH", "a": "AA",
    "ɶ": "AO", "ɑ": "AA", "ɒ": "AA",
}  # fmt: skip

# Two-vowel names that are one ARPAbet diphthong.
_DIPHTHONGS: dict[str, str] = {
    "aɪ": "AY", "ai": "AY", "ɑɪ": "AY", "ɑi": "AY", "aʊ": "AW", "au": "AW", "ɑʊ": "AW", "ɑu": "AW",
    "eɪ": "EY", "ei": "EY", "ɛɪ": "EY", "ɛi": "EY", "oʊ": "OW", "əʊ": "OW", "ou": "OW", "oʊ̯": "OW",
    "ɔɪ": "OY", "ɔi": "OY", "oɪ": "OY", "ɔʏ": "OY", "ɔy": "OY",
}  # fmt: skip

_VOWEL_LABELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
_STOPS = frozenset({"P", "B", "T", "D", "K", "G", "CH", "JH"})
# Kirschenbaum (ASCII) modifiers espeak-ng 1.51 leaves in some IPA names: "s." is
# retroflex, "i." / "i[" the apical vowel of Mandarin "shi" / "si", "o-" Mandarin "e".
_RETROFLEX = {"s": "ʂ", "z": "ʐ", "t": "ʈ", "d": "ɖ", "n": "ɳ", "l": "ɭ", "r": "ɻ", "i": "ɨ"}
_DROP = set("ˈˌːˑ'\",;#|͜͡ʲʷˠˤ̃") | set("0123456789")


def _clean(name: str) -> str:
    """The name with stress, length, tone digits and diacritics removed, ASCII modifiers resolved."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", name):
        if ch == "." and out:
            out[-1] = _RETROFLEX.get(out[-1], out[-1])
        elif ch == "[" and out:
            out[-1] = "ɨ" if out[-1] == "i" else out[-1]
        elif ch == "-" and out:
            out[-1] = "ɤ" if out[-1] == "o" else out[-1]
        elif ch in _DROP or unicodedata.combining(ch):
            continue
        else:
            out.append(ch)
    return "".join(out)


def segments(name: str) -> list[str]:
    """ARPAbet labels of one IPA phoneme name; [] for a pause, boundary or language switch.

    Aspiration (h or ʰ after a stop) is dropped; unknown symbols are skipped, and a name
    made only of unknown symbols becomes AH (lips half open) so its time is not lost.
    """
    if not name or name[0] in "_(|":
        return []
    text = _clean(name)
    if not text:
        return []
    if text in _DIPHTHONGS:
        return [_DIPHTHONGS[text]]
    labels: list[str] = []
    i = 0
    while i < len(text):
        two = text[i : i + 2]
        if len(two) == 2 and two in _DIPHTHONGS and len(text) > 2:
            labels.append(_DIPHTHONGS[two])
            i += 2
            continue
        if len(two) == 2 and two in _SEGMENTS:
            labels.append(_SEGMENTS[two])
            i += 2
            continue
        ch = text[i]
        if ch in ("h", "ʰ") and labels and labels[-1] in _STOPS:
            i += 1  # aspiration: part of the stop
            continue
        if ch in _SEGMENTS:
            labels.append(_SEGMENTS[ch])
        i += 1
    return labels or ["AH"]


def is_vowel(label: str) -> bool:
    return label in _VOWEL_LABELS


def split_phone(labels: list[str], start: float, end: float) -> list[tuple[str, float, float]]:
    """(label, start, end) for each label of one phoneme name over [start, end].

    Vowels get twice the time of consonants ("əl": AH then a shorter L)."""
    if len(labels) <= 1:
        return [(labels[0], start, end)] if labels else []
    weights = [2.0 if is_vowel(lab) else 1.0 for lab in labels]
    total = sum(weights)
    out: list[tuple[str, float, float]] = []
    t = start
    for lab, w in zip(labels, weights):
        nxt = t + (end - start) * w / total
        out.append((lab, t, nxt))
        t = nxt
    out[-1] = (out[-1][0], out[-1][1], end)
    return out
