"""The render speed and memory targets, as benchmark cases (never timed tests).

    .venv/bin/python bench/bench_render.py           # 60 s of speech -> 1280x720, from a photo and from a 720p video
    .venv/bin/python bench/bench_render.py --long    # adds 10 minutes from a photo (memory must stay flat)

Targets on a 2-core CPU: photo at least 2x real time, video at least 1x, peak RSS under
1.5 GB whatever the length. Each case runs in its own process (facetalk.eval.bench), so
peak RSS belongs to that case alone; prints one row per case and a verdict, and writes
bench/results/render.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facetalk.eval.bench import format_row, run_bench

TARGET_RTF = {"photo": 2.0, "video": 1.0}
MAX_RSS_MB = 1536


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="also render 10 minutes from a photo")
    args = ap.parse_args()
    rows = run_bench(durations=(60.0,), sizes=((1280, 720),), inputs=("photo", "video"), on_row=lambda r: print(format_row(r)))
    if args.long:
        rows += run_bench(durations=(600.0,), sizes=((1280, 720),), inputs=("photo",), on_row=lambda r: print(format_row(r)))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "render.json").write_text(json.dumps(rows, indent=2))
    ok = True
    for row in rows:
        if "error" in row:
            ok = False
            continue
        met = row["rtf"] >= TARGET_RTF[row["input"]] and row["peak_rss_mb"] < MAX_RSS_MB
        ok &= met
        print(f"{row['case']}: {'meets' if met else 'MISSES'} its target "
              f"(RTF {row['rtf']:.2f} >= {TARGET_RTF[row['input']]}, RSS {row['peak_rss_mb']:.0f} MB < {MAX_RSS_MB})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
