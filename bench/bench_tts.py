"""Text-to-speech for a long lesson: speed and memory of the speech stage (no video).

    .venv/bin/python bench/bench_tts.py                 # ~2 and ~20 minutes of generated lesson text
    .venv/bin/python bench/bench_tts.py --minutes 20    # one length

Each case runs in its own process (peak RSS is its own): the text is spoken sentence by
sentence into a WAV (facetalk.tts.speak_to_wav) and turned into mouth cues
(speech_from_spoken), as `facetalk render --text` does before rendering. Prints wall
time, real-time factor (seconds of speech per second of work), peak RSS and the phone
and cue counts; memory must not grow with the length. Writes bench/results/tts.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS_PER_MINUTE = 175  # espeak-ng's default rate
MAX_RSS_MB = 600

_TOPICS = ("fractions", "the water cycle", "photosynthesis", "the Roman roads", "prime numbers", "volcanoes",
           "the human heart", "magnets", "the solar system", "rivers and deltas")
_SENTENCES = (
    "Today we look at {topic}, step by step.",
    "In lesson {n}, we saw that {topic} matter more than most people think.",
    "Write this down: {n} examples out of {m} followed the rule, about {p}% of them.",
    "Dr. Lee measured it in {year}, and the result cost only ${d}.{c:02d} per student.",
    "Think about it for a moment. [pause 500ms] Now compare your answer with your neighbour's.",
    ("The first case is simple; the second is harder, because it mixes two ideas, and the third one, which we will "
     "meet later in the term when we have more tools, combines everything we have learnt so far into one problem."),
    "Why does this happen?",
    "Because each part depends on the one before it!",
)


def lesson_text(minutes: float) -> str:
    """Generated lesson text of about `minutes` of speech at 175 words per minute:
    paragraphs (blank lines), pause tags, numbers, money, abbreviations, long sentences."""
    target = minutes * WORDS_PER_MINUTE
    paragraphs: list[str] = []
    words = 0
    k = 0
    while words < target:
        sentences = []
        for j, template in enumerate(_SENTENCES):
            s = template.format(topic=_TOPICS[(k + j) % len(_TOPICS)], n=k + 2, m=3 * k + 7, p=(k * 7) % 100,
                                year=1900 + (k * 13) % 120, d=k % 50 + 1, c=(k * 17) % 100)
            sentences.append(s)
            words += len(s.split())
        paragraphs.append(" ".join(sentences))
        k += 1
    return "\n\n".join(paragraphs)


def child(minutes: float) -> dict:
    from facetalk.tts import speak_to_wav, speech_from_spoken

    text = lesson_text(minutes)
    with tempfile.TemporaryDirectory(prefix="facetalk-bench-tts-") as tmp:
        t0 = time.perf_counter()
        spoken = speak_to_wav(text, "en-us", Path(tmp) / "lesson.wav")
        t1 = time.perf_counter()
        speech = speech_from_spoken(spoken)
        t2 = time.perf_counter()
        wav_mb = (Path(tmp) / "lesson.wav").stat().st_size / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "minutes_asked": minutes, "text_chars": len(text), "sentences": spoken.sentences,
        "speech_s": round(spoken.duration, 2), "wall_s": round(t2 - t0, 2), "tts_s": round(t1 - t0, 2),
        "cues_s": round(t2 - t1, 2), "rtf": round(spoken.duration / (t2 - t0), 1), "peak_rss_mb": round(peak_mb, 1),
        "phones": len(spoken.phones), "cues": len(speech.cues), "timing": spoken.timing, "wav_mb": round(wav_mb, 1),
        "warnings": len(spoken.warnings),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, action="append", help="lesson length (repeatable) [default: 2 and 20]")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    rows = []
    print(f"{'minutes':>7} {'speech s':>8} {'sentences':>9} {'wall s':>7} {'tts s':>6} {'cues s':>6} {'RTF':>6} {'RSS MB':>7}")
    for minutes in args.minutes or [2.0, 20.0]:
        out = subprocess.run([sys.executable, __file__, "--child", str(minutes)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{minutes:>7.1f} {row['speech_s']:>8.1f} {row['sentences']:>9} {row['wall_s']:>7.2f} {row['tts_s']:>6.2f} "
              f"{row['cues_s']:>6.2f} {row['rtf']:>6.1f} {row['peak_rss_mb']:>7.1f}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "tts.json").write_text(json.dumps(rows, indent=2))
    ok = all(r["peak_rss_mb"] < MAX_RSS_MB for r in rows)
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        print(f"peak RSS grows {growth:+.1f} MB from {rows[0]['speech_s']:.0f} s to {rows[-1]['speech_s']:.0f} s of speech")
    print(f"target: peak RSS < {MAX_RSS_MB} MB: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
