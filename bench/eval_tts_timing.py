"""Lip timing of the text path, measured on synthesised English (facetalk.tts.evaluate).

    .venv/bin/python bench/eval_tts_timing.py [--voice en-us] [--rate 175]

(1) espeak-ng's own phone boundaries against PocketSphinx forced alignment of the same
audio (target: mean within 30 ms); (2) the mouth-cue timeline from the engine's phones
against the core pipeline's timelines for the same audio without the text (acoustic)
and with it (alignment); (3) lips closing at bilabials and opening at open vowels in
English and Mandarin, engine cues vs acoustic cues. Prints a table and writes
bench/results/tts_timing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facetalk.tts.evaluate import (
    HARVARD,
    MANDARIN,
    evaluate_timing,
    format_report,
    format_visemes,
    viseme_check,
)

TARGET_MEAN_MS = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voice", default="en-us")
    ap.add_argument("--rate", type=int, default=None)
    args = ap.parse_args()
    report = evaluate_timing(HARVARD, args.voice, args.rate)
    print(format_report(report))
    report["visemes"] = [viseme_check(HARVARD, args.voice, args.rate), viseme_check(MANDARIN, "cmn", args.rate)]
    for v in report["visemes"]:
        print(format_visemes(v))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "tts_timing.json").write_text(json.dumps(report, indent=2))
    ok = report["boundaries"]["mean_ms"] is not None and report["boundaries"]["mean_ms"] <= TARGET_MEAN_MS
    print(f"target: engine vs alignment mean <= {TARGET_MEAN_MS:.0f} ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
