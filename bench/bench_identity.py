"""The identity-building target as a benchmark case (never a timed test).

    .venv/bin/python bench/bench_identity.py              # 3 minutes of 1280x720 footage
    .venv/bin/python bench/bench_identity.py --seconds 60

Target on a 2-core CPU: learning an identity from 3 minutes of 720p footage takes under
3 minutes. The footage is a real talking clip with its own soundtrack, scaled to 720p and
looped (facetalk.eval.bench.make_footage); the build runs in its own process, so its peak
RSS is its own. Prints the figures and a verdict, and writes bench/results/identity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from facetalk.eval.bench import make_footage, machine, run_isolated

MAX_WALL_PER_FOOTAGE_S = 1.0  # seconds of building per second of footage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0, help="length of the footage")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="facetalk-bench-identity-") as tmp:
        footage = make_footage(Path(tmp) / "footage.mp4", args.seconds)
        row = run_isolated({"what": "identity", "face": str(footage), "home": str(Path(tmp) / "home")})
    row |= {"footage_s": args.seconds, "size": "1280x720", "machine": machine()}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "identity.json").write_text(json.dumps(row, indent=2))
    ratio = row["wall_s"] / args.seconds
    met = ratio < MAX_WALL_PER_FOOTAGE_S
    print(f"identity from {args.seconds:g} s of 1280x720: {row['wall_s']:.1f} s ({ratio:.2f} s per footage s), "
          f"{row['used']}/{row['frames']} frames used, peak RSS {row['peak_rss_mb']:.0f} MB: "
          f"{'meets' if met else 'MISSES'} its target (< {MAX_WALL_PER_FOOTAGE_S:g} s per s)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
