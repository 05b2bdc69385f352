"""A text to speak -> sentences and pauses.

    A blank line            a paragraph pause (PARAGRAPH_PAUSE_S)
    [pause 500ms] [pause 1.5s]   a pause of that length, anywhere in the text
    . ! ? … 。 ！ ？         end a sentence (not after Dr., e.g., a single initial ...)
    , ; : ， 、 ； ：          where a sentence longer than MAX_WORDS is cut

Each sentence is synthesised (and, without engine timings, aligned) on its own, so a
long text streams in constant memory and one bad sentence cannot derail the rest.
Also here: the script check, which refuses text in a writing system the voice does not
read (Chinese characters for an English voice would be spelled out as "Chinese letter").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .base import TextError, VoiceError

PARAGRAPH_PAUSE_S = 0.6
MAX_PAUSE_S = 60.0
MAX_WORDS = 30  # a sentence longer than this is cut at commas

_PAUSE_TAG = re.compile(r"\[\s*pause\b([^\[\]]*)\]", re.IGNORECASE)
_PAUSE_OPEN = re.compile(r"\[\s*pause\b", re.IGNORECASE)
_PAUSE_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?)\s*$", re.IGNORECASE)
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends at . ! ? … (Latin: followed by space) or 。！？ (CJK: anywhere), with
# closing quotes and brackets kept on the sentence.
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[\"'”’」』）)]*)")
_CLAUSE_END = re.compile(r"(?:[,;:]+(?=\s)|[，、；：]+)")
_ABBREVIATIONS = frozenset(
    ["mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "vs", "etc", "approx", "dept", "fig", "vol", "ca", "cf", "e.g", "i.e", "a.m", "p.m", "u.s"]
)


@dataclass(frozen=True)
class Sentence:
    text: str


@dataclass(frozen=True)
class Pause:
    seconds: float


Item = Sentence | Pause


def parse_pause(tag: str, body: str) -> float:
    """Seconds of a [pause ...] tag's body ("500ms", "1.5s"); TextError when malformed."""
    m = _PAUSE_VALUE.match(body)
    if not m:
        raise TextError(f"malformed pause tag {tag!r}: write it like [pause 500ms] or [pause 1.5s]")
    value = float(m.group(1)) / (1000.0 if m.group(2).lower() == "ms" else 1.0)
    if value > MAX_PAUSE_S:
        raise TextError(f"pause tag {tag!r} is too long: at most {MAX_PAUSE_S:.0f} s")
    return value


def _words(text: str) -> int:
    """Words for the length limit: Latin-like words, and each CJK character counts as one."""
    cjk = sum(1 for ch in text if _script(ch) in ("Han", "Hiragana", "Katakana", "Hangul"))
    return len(re.findall(r"[^\W\d_]+|\d+", re.sub(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", " ", text))) + cjk


def _ends_with_abbreviation(text: str) -> bool:
    tail = text.rstrip(".!?…\"'”’)]").split()
    if not tail:
        return False
    last = tail[-1].lower().rstrip(".")
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha() and text.rstrip()[-1] == ".")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (no pause tags in it), each stripped; long ones cut at commas."""
    text = " ".join(paragraph.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start : m.end()]
        if m.group().startswith(".") and len(m.group().rstrip("\"'”’)]")) == 1 and _ends_with_abbreviation(piece):
            continue  # "Dr. Smith", "e.g. this", "J. Smith"
        if piece.strip():
            sentences.append(piece.strip())
        start = m.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    out: list[str] = []
    for s in sentences:
        out += split_long(s)
    return [s for s in out if speakable(s)]


def split_long(sentence: str, max_words: int = MAX_WORDS) -> list[str]:
    """A sentence of more than max_words cut at clause punctuation into pieces of at most
    about max_words (a clause longer than that stays whole, up to twice max_words)."""
    if _words(sentence) <= max_words:
        return [sentence]
    clauses: list[str] = []
    start = 0
    for m in _CLAUSE_END.finditer(sentence):
        clauses.append(sentence[start : m.end()].strip())
        start = m.end()
    clauses.append(sentence[start:].strip())
    clauses = [c for c in clauses if c]
    pieces: list[str] = []
    current = ""
    for clause in clauses:
        joined = f"{current} {clause}".strip() if current and not _is_cjk_end(current) else current + clause
        if current and _words(joined) > max_words:
            pieces.append(current)
            current = clause
        else:
            current = joined
    if current:
        pieces.append(current)
    return [cut for piece in pieces for cut in _hard_cut(piece, max_words)]


def _hard_cut(piece: str, max_words: int) -> list[str]:
    """A piece of more than twice max_words with no clause punctuation to cut at, cut
    every max_words words (characters for CJK): no sentence grows without bound."""
    if _words(piece) <= 2 * max_words:
        return [piece]
    tokens = piece.split()
    if len(tokens) > 1:
        return [" ".join(tokens[i : i + max_words]) for i in range(0, len(tokens), max_words)]
    return [piece[i : i + max_words] for i in range(0, len(piece), max_words)]


def _is_cjk_end(text: str) -> bool:
    return bool(text) and text[-1] in "，、；：。！？"


def speakable(text: str) -> bool:
    """Whether text has anything to say: a letter or a digit (not only punctuation)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def parse_text(text: str) -> list[Item]:
    """Sentences and pauses of a text, in order. TextError for a malformed [pause ...] tag
    or a text with nothing to say (empty, whitespace, only pauses or punctuation)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    items: list[Item] = []
    for p_index, paragraph in enumerate(_PARAGRAPH.split(text.strip())):
        if p_index > 0:
            items.append(Pause(PARAGRAPH_PAUSE_S))
        pos = 0
        for m in _PAUSE_TAG.finditer(paragraph):
            items += [Sentence(s) for s in split_sentences(_check_no_open_tag(paragraph[pos : m.start()]))]
            items.append(Pause(parse_pause(m.group(), m.group(1))))
            pos = m.end()
        items += [Sentence(s) for s in split_sentences(_check_no_open_tag(paragraph[pos:]))]
    if not any(isinstance(i, Sentence) for i in items):
        raise TextError("the text is empty: give words to speak (pauses and punctuation alone say nothing)")
    return _merge_pauses(items)


def _check_no_open_tag(chunk: str) -> str:
    m = _PAUSE_OPEN.search(chunk)
    if m:
        snippet = chunk[m.start() : m.start() + 20].split("\n")[0]
        raise TextError(f"malformed pause tag {snippet!r}: close it like [pause 500ms] or [pause 1.5s]")
    return chunk


def _merge_pauses(items: list[Item]) -> list[Item]:
    """Adjacent pauses add up; pauses at the very start and end are kept (the user wrote them)."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Pause) and out and isinstance(out[-1], Pause):
            out[-1] = Pause(out[-1].seconds + item.seconds)
        else:
            out.append(item)
    return out


# ------------------------------------------------------------------ scripts

# Writing systems each language is written in, for the languages whose script is not
# Latin (Latin text is read by every espeak-ng voice, as English where the language's is not).
_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"Han"}) for lang in ("cmn", "zh", "yue", "hak", "nan", "wuu")},
    "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul", "Han"}),
    **{lang: frozenset({"Cyrillic"}) for lang in ("ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "tt", "ba", "cv", "mn", "nog", "tg")},
    **{lang: frozenset({"Greek"}) for lang in ("el", "grc")},
    **{lang: frozenset({"Arabic"}) for lang in ("ar", "fa", "ur", "ps", "sd", "ug", "ku-arab")},
    "he": frozenset({"Hebrew"}),
    **{lang: frozenset({"Devanagari"}) for lang in ("hi", "mr", "ne", "kok", "sa", "bh")},
    **{lang: frozenset({"Bengali"}) for lang in ("bn", "as", "bpy")},
    "ta": frozenset({"Tamil"}), "te": frozenset({"Telugu"}), "kn": frozenset({"Kannada"}),
    "ml": frozenset({"Malayalam"}), "gu": frozenset({"Gujarati"}), "pa": frozenset({"Gurmukhi"}),
    "or": frozenset({"Oriya"}), "si": frozenset({"Sinhala"}), "th": frozenset({"Thai"}),
    "my": frozenset({"Myanmar"}), "ka": frozenset({"Georgian"}), "hy": frozenset({"Armenian"}),
    "hyw": frozenset({"Armenian"}), "am": frozenset({"Ethiopic"}), "chr": frozenset({"Cherokee"}),
    "shn": frozenset({"Myanmar"}),
}  # fmt: skip
_SCRIPT_NAMES = {"Han": "Chinese characters", "Hiragana": "Japanese kana", "Katakana": "Japanese kana",
                 "Hangul": "Korean Hangul"}  # fmt: skip
# Unicode character-name prefixes -> script (enough for the check; unicodedata has no script property)
_NAME_PREFIXES = (
    ("CJK", "Han"), ("HIRAGANA", "Hiragana"), ("KATAKANA", "Katakana"), ("HANGUL", "Hangul"),
    ("LATIN", "Latin"), ("CYRILLIC", "Cyrillic"), ("GREEK", "Greek"), ("ARABIC", "Arabic"), ("HEBREW", "Hebrew"),
    ("DEVANAGARI", "Devanagari"), ("BENGALI", "Bengali"), ("TAMIL", "Tamil"), ("TELUGU", "Telugu"),
    ("KANNADA", "Kannada"), ("MALAYALAM", "Malayalam"), ("GUJARATI", "Gujarati"), ("GURMUKHI", "Gurmukhi"),
    ("ORIYA", "Oriya"), ("SINHALA", "Sinhala"), ("THAI", "Thai"), ("MYANMAR", "Myanmar"), ("GEORGIAN", "Georgian"),
    ("ARMENIAN", "Armenian"), ("ETHIOPIC", "Ethiopic"), ("CHEROKEE", "Cherokee"), ("LAO", "Lao"), ("KHMER", "Khmer"),
    ("TIBETAN", "Tibetan"), ("MONGOLIAN", "Mongolian"), ("THAANA", "Thaana"), ("SYRIAC", "Syriac"),
    ("BOPOMOFO", "Han"),
)  # fmt: skip
# A voice that speaks one of these languages is suggested for text in that script.
_SUGGEST = {"Han": "cmn", "Hiragana": "ja", "Katakana": "ja", "Hangul": "ko", "Cyrillic": "ru", "Greek": "el",
            "Arabic": "ar", "Hebrew": "he", "Devanagari": "hi", "Thai": "th"}  # fmt: skip


def _script(ch: str) -> str | None:
    """The writing system of a letter (None for digits, punctuation, symbols)."""
    if unicodedata.category(ch)[0] != "L":
        return None
    name = unicodedata.name(ch, "")
    for prefix, script in _NAME_PREFIXES:
        if name.startswith(prefix):
            return script
    return "Other"


def text_scripts(text: str) -> dict[str, int]:
    """Letters per writing system in text."""
    counts: dict[str, int] = {}
    for ch in text:
        s = _script(ch)
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    return counts


def check_script(text: str, language: str, voice: str) -> None:
    """VoiceError when text has letters in a writing system the voice's language is not
    written in. Latin passes for every voice (espeak-ng reads it, as English where the
    language is not written in Latin); a language without an entry in the table is
    written in Latin; letters of scripts facetalk cannot name pass."""
    lang = language.lower()
    base = lang.split("-")[0]
    own = _LANGUAGE_SCRIPTS.get(lang, _LANGUAGE_SCRIPTS.get(base))
    allowed = {"Latin"} | (own or set())
    for script, count in sorted(text_scripts(text).items(), key=lambda kv: -kv[1]):
        if script in allowed or script == "Other":
            continue
        what = _SCRIPT_NAMES.get(script, f"{script} script")
        hint = f" (for example --voice {_SUGGEST[script]})" if script in _SUGGEST else ""
        raise VoiceError(
            f"the text is written in {what} ({count} letters), which voice {voice} ({language}) does not read: "
            f"choose a voice for that language{hint}"
        )
