"""Transcript text -> lower-case words spelled as CMUdict spells them, plus a
letter-to-sound fallback for words the dictionary lacks (names, made-up words).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_ABBREVIATIONS = {
    "dr": "doctor", "mr": "mister", "mrs": "missus", "ms": "miz", "st": "saint", "jr": "junior",
    "sr": "senior", "prof": "professor", "mt": "mount", "vs": "versus", "etc": "et cetera",
    "e.g": "for example", "i.e": "that is", "approx": "approximately", "dept": "department",
}  # fmt: skip
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}  # fmt: skip
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at "}

_TOKEN = re.compile(
    r"(?P<money>[$£€]\d[\d,]*(?:\.\d+)?)"
    r"|(?P<ordinal>\d+(?:st|nd|rd|th)\b)"
    r"|(?P<percent>\d[\d,]*(?:\.\d+)?%)"
    r"|(?P<number>\d[\d,]*(?:\.\d+)?)"
    r"|(?P<abbrev>\b(?:e\.g|i\.e)\.?|\b(?:dr|mr|mrs|ms|st|jr|sr|prof|mt|vs|etc|approx|dept)\.)"
    r"|(?P<word>[a-z]+(?:'[a-z]+)*)",
    re.IGNORECASE,
)


def integer_words(n: int) -> list[str]:
    """English words of a whole number: 1234 -> one thousand two hundred thirty four."""
    if n < 0:
        return ["minus", *integer_words(-n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (integer_words(n % 100) if n % 100 else [])
    for scale, name in _SCALES:
        if n >= scale:
            return integer_words(n // scale) + [name] + (integer_words(n % scale) if n % scale else [])
    return [_ONES[0]]  # unreachable


def year_words(n: int) -> list[str]:
    """Years read in pairs: 1999 -> nineteen ninety nine, 1900 -> nineteen hundred, 2005 -> two thousand five."""
    high, low = divmod(n, 100)
    if 2000 <= n < 2010 or n % 1000 == 0:
        return integer_words(n)
    if low == 0:
        return integer_words(high) + ["hundred"]
    if low < 10:
        return integer_words(high) + ["oh", _ONES[low]]
    return integer_words(high) + integer_words(low)


def ordinal_words(n: int) -> list[str]:
    """1 -> first, 22 -> twenty second, 100 -> one hundredth."""
    words = integer_words(n)
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def number_words(text: str, *, as_year: bool = True) -> list[str]:
    """A numeral as words: integers, decimals (3.5 -> three point five), years when it looks like one."""
    grouped = "," in text  # "1,999" is a count, not a year
    whole, _, frac = text.replace(",", "").partition(".")
    if not whole:
        whole = "0"
    n = int(whole)
    if frac:
        return integer_words(n) + ["point"] + [_ONES[int(d)] for d in frac]
    if as_year and len(whole) == 4 and 1100 <= n <= 2099 and not grouped:
        return year_words(n)
    return integer_words(n)


def money_words(text: str) -> list[str]:
    """$5 -> five dollars; $5.50 -> five dollars fifty cents; £1 -> one pound."""
    one, many, cent, cents = _CURRENCIES[text[0]]
    whole, _, frac = text[1:].replace(",", "").partition(".")
    n = int(whole or "0")
    words = integer_words(n) + [one if n == 1 else many]
    if frac:
        c = int((frac + "0")[:2])
        if c:
            words += ["and", *integer_words(c), cent if c == 1 else cents]
    return words


def normalise_transcript(text: str) -> list[str]:
    """Transcript -> lower-case words as CMUdict spells them.

    Numbers, money, percentages, ordinals, years and common abbreviations become words;
    hyphens split words; other punctuation is dropped; inner apostrophes are kept
    (don't, it's). Accented letters lose their accents; other scripts are dropped.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    # Keep currency symbols, strip accents from letters ("café" -> "cafe").
    text = "".join(
        ch if ch in _CURRENCIES else unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        for ch in text
    )
    text = re.sub(r"(?<=[a-zA-Z])-(?=[a-zA-Z0-9])|(?<=[0-9])-(?=[a-zA-Z])", " ", text)
    words: list[str] = []
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind == "money":
            words += money_words(token)
        elif kind == "ordinal":
            words += ordinal_words(int(token[:-2]))
        elif kind == "percent":
            words += number_words(token[:-1], as_year=False) + ["percent"]
        elif kind == "number":
            start = match.start()
            negative = start > 0 and text[start - 1] == "-" and (start < 2 or not text[start - 2].isalnum())
            words += (["minus"] if negative else []) + number_words(token)
        elif kind == "abbrev":
            words += _ABBREVIATIONS[token.lower().rstrip(".")].split()
        else:
            words.append(token.lower())
    return words


# ------------------------------------------------------------ letter to sound

_LETTER_NAMES = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
    "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
    "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
    "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY",
}  # fmt: skip
# Longest spellings first; each maps to ARPAbet phones (no stress digits).
_GRAPHEMES = {
    "tch": "CH", "sch": "SH", "igh": "AY", "eau": "OW",
    "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "ck": "K", "ng": "NG", "qu": "K W", "wh": "W",
    "kn": "N", "wr": "R", "gh": "G", "ee": "IY", "ea": "IY", "oo": "UW", "ou": "AW", "ow": "OW",
    "ai": "EY", "ay": "EY", "oi": "OY", "oy": "OY", "au": "AO", "aw": "AO", "ie": "IY", "ei": "EY",
    "ey": "IY", "oa": "OW", "ue": "UW", "ew": "UW", "ar": "AA R", "er": "ER", "ir": "ER", "ur": "ER",
    "or": "AO R",
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH",
    "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R",
    "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "IY", "z": "Z",
}  # fmt: skip
_VOWEL_LETTERS = set("aeiouy")


def spell_letters(word: str) -> list[str]:
    """Phones of a word said letter by letter (acronyms, words with no vowel)."""
    return [p for ch in word if ch in _LETTER_NAMES for p in _LETTER_NAMES[ch].split()]


def letter_to_sound(word: str) -> list[str]:
    """Rough English pronunciation of an unknown word (good enough for names).

    Greedy longest-match over spellings, with a few context rules: soft c/g before
    e/i/y, a silent final e, y as a consonant at the start, and doubled consonants
    said once. Words without a vowel letter are spelled out.
    """
    w = "".join(ch for ch in word.lower() if ch.isalpha())
    if not w:
        return []
    if not _VOWEL_LETTERS & set(w):
        return spell_letters(w)
    if len(w) > 3 and w.endswith("e") and w[-2] not in _VOWEL_LETTERS and w[-3] in _VOWEL_LETTERS:
        w = w[:-1]  # silent final e ("jane", "rose")
    phones: list[str] = []
    i = 0
    while i < len(w):
        if i > 0 and w[i] == w[i - 1] and w[i] not in _VOWEL_LETTERS:
            i += 1  # "ll", "tt": one sound
            continue
        nxt = w[i + 1] if i + 1 < len(w) else ""
        if w[i] == "c" and nxt in ("e", "i", "y"):
            phones.append("S")
            i += 1
            continue
        if w[i] == "y" and i == 0 and nxt in _VOWEL_LETTERS:
            phones.append("Y")
            i += 1
            continue
        for size in (3, 2, 1):
            chunk = w[i : i + size]
            if len(chunk) == size and chunk in _GRAPHEMES:
                if chunk == "gh" and i > 0:
                    pass  # "gh" after a vowel is silent ("leigh")
                else:
                    phones += _GRAPHEMES[chunk].split()
                i += size
                break
    return phones


def pronounce(word: str, lookup: Callable[[str], str | None]) -> tuple[str, list[str] | None]:
    """The spelling to align and, when the dictionary lacks it, phones to add for it.

    `lookup` answers a dictionary query (a word -> phones string, or None).
    A possessive or contraction the dictionary lacks falls back to the bare word's
    pronunciation plus S/Z where it can.
    """
    if lookup(word) is not None:
        return word, None
    if "'" in word:
        base, _, tail = word.partition("'")
        base_phones = lookup(base)
        if base_phones is not None and tail == "s":
            end = base_phones.split()[-1]
            return word, base_phones.split() + (["IH", "Z"] if end in ("S", "Z", "SH", "ZH", "CH", "JH") else ["Z"])
        bare = word.replace("'", "")
        if lookup(bare) is not None:
            return bare, None
        return bare, compound_phones(bare, lookup) or letter_to_sound(bare) or ["AH"]
    return word, compound_phones(word, lookup) or letter_to_sound(word) or ["AH"]


def compound_phones(word: str, lookup: Callable[[str], str | None], max_parts: int = 3) -> list[str] | None:
    """Phones of a word the dictionary lacks but whose parts it has ("facetalk" = face + talk).

    Letter-to-sound rules get such compounds wrong often enough to derail alignment
    ("face" read as F AE S EH), so a split into the fewest dictionary words (each of two
    letters or more) is tried first.
    """
    n = len(word)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for i in range(n):
        if best[i] is None or len(best[i]) >= max_parts:
            continue
        for j in range(i + 2, n + 1):
            piece = word[i:j]
            if lookup(piece) is not None and (best[j] is None or len(best[i]) + 1 < len(best[j])):
                best[j] = best[i] + [piece]
    parts = best[n]
    if not parts or len(parts) < 2:
        return None
    return [ph for part in parts for ph in lookup(part).split()]


def read_transcript(path: str | None) -> str | None:
    """The text of a transcript file (UTF-8, a BOM allowed), or None when no path is given."""
    from pathlib import Path

    from ..errors import InputError

    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"transcript file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read transcript {path}: {e}") from None
