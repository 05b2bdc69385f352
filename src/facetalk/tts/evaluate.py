"""How good the text path's lip timing is, measured on synthesised speech.

1. Engine vs forced alignment: the engine's own phone boundaries against PocketSphinx's
   forced alignment of the known words on the same audio (facetalk.speech.align, the
   core pipeline's aligner). Phones are paired by label (a longest-common-subsequence
   match of the two label sequences) and both boundaries of each pair compared.
2. Mouth-cue timelines: the cues from the engine's phones against the cues the core
   pipeline finds in the same audio without the text (acoustic path) and with it as a
   transcript (alignment path): the share of 10 ms frames whose shape differs, and how
   far each change of shape is from the nearest change in the other timeline.
3. Visemes any language (Mandarin has no aligner here): the share of bilabial phones
   (M, P, B) whose lips close (shape A) and of open vowels (AA, AE, AW, AY) whose mouth
   opens (C or D), in the engine's cues and in the acoustic path's for the same audio.

    from facetalk.tts.evaluate import evaluate_timing, viseme_check, HARVARD, MANDARIN
    report = evaluate_timing(HARVARD, "en-us")
    visemes = viseme_check(MANDARIN, "cmn")
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from ..types import ANALYSIS_RATE, Cue, Phone

# Harvard sentences (IEEE 1969 recommended practice, public domain), lists 1-4, plus a
# few with numbers, money and abbreviations to exercise text normalisation.
HARVARD: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "Dr. Smith paid $12.50 for 3 tickets on May 4th, 1999.",
    "About 75% of the 2,400 students passed the test.",
)


# Everyday Mandarin sentences, rich in m/b/p and open a.
MANDARIN: tuple[str, ...] = (
    "妈妈骂马吗？", "爸爸买了一本书。", "我们明天去北京。", "你好，我们今天学习数学。", "木门被风吹开了。",
    "白色的猫跑得很快。", "朋友们都喜欢吃面包。", "请把苹果放在桌子上。", "他每天早上八点半上班。",
    "冬天北方很冷，南方比较暖和。", "没有问题，马上就好。", "不怕慢，就怕站。",
)

CLOSING = frozenset({"M", "P", "B"})
OPENING = frozenset({"AA", "AE", "AW", "AY"})


def match_phones(engine: Sequence[Phone], aligned: Sequence[Phone]) -> list[tuple[Phone, Phone]]:
    """Pairs of same-label phones in order (silences left out), by longest common subsequence."""
    a = [p for p in engine if p.label != "SIL"]
    b = [p for p in aligned if p.label != "SIL"]
    sm = difflib.SequenceMatcher(a=[p.label for p in a], b=[p.label for p in b], autojunk=False)
    return [(a[i + k], b[j + k]) for i, j, n in sm.get_matching_blocks() for k in range(n)]


def boundary_differences(pairs: Sequence[tuple[Phone, Phone]]) -> np.ndarray:
    """|start - start| and |end - end| in seconds for each matched pair."""
    if not pairs:
        return np.zeros(0)
    return np.array([abs(x.start - y.start) for x, y in pairs] + [abs(x.end - y.end) for x, y in pairs])


def cue_frames(cues: Sequence[Cue], n: int) -> np.ndarray:
    """(n,) shape letters per 10 ms frame."""
    out = np.full(n, "X", dtype="<U1")
    for c in cues:
        s, e = round(c.start * ANALYSIS_RATE), round(c.end * ANALYSIS_RATE)
        out[max(0, s) : min(n, e)] = c.shape.value
    return out


def change_points(frames: np.ndarray) -> np.ndarray:
    return np.flatnonzero(frames[1:] != frames[:-1]) + 1


def compare_frames(fa: np.ndarray, fb: np.ndarray) -> dict:
    """How two per-frame shape timelines of one audio differ: the share of 10 ms frames
    with another shape (and with the mouth closed, A or X, in one and open in the other),
    and for each change of shape in `fa` the distance to the nearest change in `fb`
    (mean absolute and signed, ms; + = fb changes later)."""
    closed_a, closed_b = np.isin(fa, ["A", "X"]), np.isin(fb, ["A", "X"])
    ca, cb = change_points(fa), change_points(fb)
    if len(ca) and len(cb):
        idx = np.clip(np.searchsorted(cb, ca), 0, len(cb) - 1)
        left = cb[np.maximum(idx - 1, 0)]
        right = cb[idx]
        nearest = np.where(np.abs(left - ca) <= np.abs(right - ca), left, right)
        offsets = (nearest - ca) * 1000.0 / ANALYSIS_RATE
    else:
        offsets = np.zeros(0)
    return {
        "frames": len(fa),
        "shape_differs": float(np.mean(fa != fb)),
        "open_closed_differs": float(np.mean(closed_a != closed_b)),
        "changes": len(ca),
        "change_offset_abs_ms": float(np.mean(np.abs(offsets))) if len(offsets) else None,
        "change_offset_mean_ms": float(np.mean(offsets)) if len(offsets) else None,
        "change_within_50ms": float(np.mean(np.abs(offsets) <= 50)) if len(offsets) else None,
    }


def evaluate_timing(sentences: Sequence[str] = HARVARD, voice: str = "en-us", rate: int | None = None) -> dict:
    """Both measurements over `sentences`, each synthesised on its own (English:
    PocketSphinx aligns English only). Cue timelines are compared per sentence and the
    frames of all sentences pooled."""
    from ..context import RunContext
    from ..speech.align import Aligner, AlignmentError
    from ..speech.analyse import analyse_speech
    from ..speech.cues import phones_to_cues
    from ..speech.text import normalise_transcript
    from ..types import Audio
    from .normalise import for_engine
    from .registry import engine_for
    from .speak import align_sentence, to_analysis_rate

    engine = engine_for(voice)
    aligner = Aligner()
    per_sentence = []
    all_diffs: list[np.ndarray] = []
    frames: dict[str, list[np.ndarray]] = {"engine": [], "alignment": [], "acoustic": []}
    n_engine = n_matched = failed = 0
    seconds = 0.0
    for s in sentences:
        said = for_engine(s, engine.voice.language)
        r = engine.synthesize(said, rate)
        samples = to_analysis_rate(r.samples, r.sample_rate)
        seconds += r.duration
        try:
            aligned = [p for w in align_sentence(samples, normalise_transcript(said), aligner) for p in w.phones]
        except AlignmentError:
            failed += 1
            continue
        pairs = match_phones(r.phones or [], aligned)
        d = boundary_differences(pairs)
        all_diffs.append(d)
        n_engine += sum(1 for p in r.phones or [] if p.label != "SIL")
        n_matched += len(pairs)
        per_sentence.append({"text": s, "phones": len(pairs), "mean_ms": float(d.mean() * 1000) if len(d) else None})
        n = int(np.ceil(r.duration * ANALYSIS_RATE))
        frames["engine"].append(cue_frames(phones_to_cues(r.phones or [], r.duration), n))
        frames["alignment"].append(cue_frames(phones_to_cues(aligned, r.duration), n))
        frames["acoustic"].append(cue_frames(analyse_speech(Audio(samples), None, RunContext()).cues, n))
    diffs = np.concatenate(all_diffs) if all_diffs else np.zeros(0)
    boundaries = {
        "sentences": len(sentences),
        "alignment_failed": failed,
        "phones_matched": n_matched,
        "phones_engine": n_engine,
        "mean_ms": float(diffs.mean() * 1000) if len(diffs) else None,
        "median_ms": float(np.median(diffs) * 1000) if len(diffs) else None,
        "p90_ms": float(np.percentile(diffs, 90) * 1000) if len(diffs) else None,
        "within_30ms": float(np.mean(diffs <= 0.030)) if len(diffs) else None,
        "per_sentence": per_sentence,
    }
    pooled = {k: np.concatenate(v) if v else np.zeros(0, dtype="<U1") for k, v in frames.items()}
    cues = {
        "duration_s": seconds,
        "engine_vs_acoustic": compare_frames(pooled["engine"], pooled["acoustic"]),
        "engine_vs_alignment": compare_frames(pooled["engine"], pooled["alignment"]),
        "alignment_vs_acoustic": compare_frames(pooled["alignment"], pooled["acoustic"]),
    }
    return {"voice": engine.voice.name, "engine": engine.name, "rate": rate, "boundaries": boundaries, "cues": cues}


def viseme_check(sentences: Sequence[str], voice: str, rate: int | None = None) -> dict:
    """Lips closing at bilabials and opening at open vowels (see the module docstring),
    engine cues vs acoustic cues. A bilabial counts as closed when shape A shows from
    60 ms before it (a plosive's closure comes first) to its end; an open vowel of 80 ms
    or more counts as open when C or D shows during it."""
    from ..context import RunContext
    from ..speech.analyse import analyse_speech
    from ..speech.cues import phones_to_cues
    from ..types import Audio
    from .normalise import for_engine
    from .registry import engine_for
    from .speak import to_analysis_rate

    engine = engine_for(voice)
    closed = {"engine": 0, "acoustic": 0}
    opened = {"engine": 0, "acoustic": 0}
    n_closing = n_opening = 0
    for s in sentences:
        r = engine.synthesize(for_engine(s, engine.voice.language), rate)
        if not r.phones:
            continue
        n = int(np.ceil(r.duration * ANALYSIS_RATE))
        frames = {
            "engine": cue_frames(phones_to_cues(r.phones, r.duration), n),
            "acoustic": cue_frames(analyse_speech(Audio(to_analysis_rate(r.samples, r.sample_rate)), None, RunContext()).cues, n),
        }
        for p in r.phones:
            a = int(p.start * ANALYSIS_RATE)
            b = max(a + 1, int(p.end * ANALYSIS_RATE))
            if p.label in CLOSING:
                n_closing += 1
                for k, f in frames.items():
                    closed[k] += bool((f[max(0, a - 6) : b] == "A").any())
            elif p.label in OPENING and b - a >= 8:
                n_opening += 1
                for k, f in frames.items():
                    opened[k] += bool(np.isin(f[a:b], ["C", "D"]).any())
    return {
        "voice": engine.voice.name, "sentences": len(sentences), "bilabials": n_closing, "open_vowels": n_opening,
        "closed_at_bilabials": {k: v / max(1, n_closing) for k, v in closed.items()},
        "open_at_open_vowels": {k: v / max(1, n_opening) for k, v in opened.items()},
    }


def format_visemes(v: dict) -> str:
    c, o = v["closed_at_bilabials"], v["open_at_open_vowels"]
    return (f"visemes, voice {v['voice']} ({v['sentences']} sentences): lips closed at {v['bilabials']} bilabials "
            f"engine {c['engine']:.0%} / acoustic {c['acoustic']:.0%}; mouth open at {v['open_vowels']} open vowels "
            f"engine {o['engine']:.0%} / acoustic {o['acoustic']:.0%}")


def format_report(r: dict) -> str:
    b, c = r["boundaries"], r["cues"]
    lines = [
        f"voice {r['voice']} ({r['engine']}), {b['sentences']} sentences, {c['duration_s']:.1f} s of speech",
        (f"engine phone boundaries vs PocketSphinx forced alignment: mean {b['mean_ms']:.1f} ms, "
         f"median {b['median_ms']:.1f} ms, p90 {b['p90_ms']:.1f} ms, {b['within_30ms']:.0%} within 30 ms "
         f"({b['phones_matched']}/{b['phones_engine']} phones paired, {b['alignment_failed']} sentences not aligned)"),
        "mouth cues (10 ms frames)          shape differs  open/closed differs  change offset |mean| (signed)  changes within 50 ms",
    ]
    for key in ("engine_vs_acoustic", "engine_vs_alignment", "alignment_vs_acoustic"):
        x = c[key]
        lines.append(
            f"  {key:<32} {x['shape_differs']:>12.1%}  {x['open_closed_differs']:>18.1%}  "
            f"{x['change_offset_abs_ms']:>14.1f} ms ({x['change_offset_mean_ms']:+.1f})  {x['change_within_50ms']:>18.1%}"
        )
    return "\n".join(lines)
