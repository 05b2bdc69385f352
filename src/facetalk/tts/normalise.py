"""English text -> the words to say, before the engine sees it.

Numbers, money, percentages, ordinals and common abbreviations are written out as
words (with facetalk.speech.text's rules), punctuation and everything else are kept.
The engine then says exactly the words that forced alignment expects
(facetalk.speech.text.normalise_transcript of the result has no numeral left to read
differently), and says them better: espeak-ng alone reads "$12.50" as "dollar twelve
point five zero", "1999" as "nineteen hundred ninety nine" and "vs." as "v s".
"""

from __future__ import annotations

import re

from ..speech.text import money_words, number_words, ordinal_words

_ABBREVIATIONS = {
    "dr": "Doctor", "mr": "Mister", "mrs": "Missus", "ms": "Miz", "st": "Saint", "jr": "Junior",
    "sr": "Senior", "prof": "Professor", "mt": "Mount", "vs": "versus", "etc": "et cetera",
    "e.g": "for example", "i.e": "that is", "approx": "approximately", "dept": "department",
}  # fmt: skip
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at "}
_TOKEN = re.compile(
    r"(?P<money>[$£€]\d[\d,]*(?:\.\d+)?)"
    r"|(?P<ordinal>\b\d+(?:st|nd|rd|th)\b)"
    r"|(?P<percent>\d[\d,]*(?:\.\d+)?%)"
    r"|(?P<number>(?<![\w.])-?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?)"
    r"|(?P<abbrev>\b(?:e\.g|i\.e)\.?|\b(?:dr|mr|mrs|ms|st|jr|sr|prof|mt|vs|etc|approx|dept)\.)",
    re.IGNORECASE,
)


def _say(match: re.Match) -> str:
    kind, token = match.lastgroup, match.group()
    if kind == "money":
        words = money_words(token)
    elif kind == "ordinal":
        words = ordinal_words(int(token[:-2]))
    elif kind == "percent":
        words = number_words(token[:-1], as_year=False) + ["percent"]
    elif kind == "number":
        negative = token.startswith("-")
        words = (["minus"] if negative else []) + number_words(token.lstrip("-"))
    else:
        spoken = _ABBREVIATIONS[token.lower().rstrip(".")]
        # "etc." at the end of a sentence keeps its full stop
        return spoken + ("." if token.endswith(".") and token.lower().rstrip(".") in ("etc",) else "")
    return " ".join(words)


def spoken_form(text: str) -> str:
    """English text with numerals, money, percentages, ordinals and abbreviations as words."""
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    text = _TOKEN.sub(_say, text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def for_engine(sentence: str, language: str) -> str:
    """What the engine is given for one sentence: English is written out (spoken_form),
    other languages go as they are (the engine's own reading rules apply)."""
    return spoken_form(sentence) if language.lower().startswith("en") else sentence
