"""What the whole finishing chain costs on a 1080p render (a benchmark, never a timed test).

    .venv/bin/python bench/bench_finish.py              # 7 s of the 1080p presenter clip, 2 pairs
    .venv/bin/python bench/bench_finish.py --pairs 3 --seconds 4

Renders the same request without finishing (A: --no-label), with the whole chain (B: a
33^3 .cube LUT made here, --enhance, the label; not an --enhancer model, which users bring)
and with the chain less the LUT (C: --enhance and the label), alternately A/B/C/A/B/C in
one process (face models loaded once), so load from other work on the
machine falls on both sides alike. Reports wall and CPU seconds (this process, all threads,
from resource.getrusage) per run, the median added share, the load average, and the
finishing stage's own thread-seconds; writes bench/results/finish.json.

Target: the chain adds under 15% to the render time on 2 cores (the wall clock, medians;
the added CPU seconds are reported beside it).
A look's first use builds its table (about 1.3 s of CPU, on a thread beside speech and
face analysis) and keeps it in FACETALK_HOME/cache/luts; that run is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CLIP = MEDIA / "talking" / "presenter-1080p-7s.mp4"
TARGET = 0.15


def write_look(path: Path, size: int = 33) -> Path:
    """A warm, contrasty 'look' as a 33^3 .cube (a smooth S-curve and a little cross-talk)."""
    x = np.linspace(0.0, 1.0, size)
    b, g, r = np.meshgrid(x, x, x, indexing="ij")  # red fastest in the file's order
    s = lambda v: v + 0.15 * np.sin(2 * np.pi * v) / (2 * np.pi) * -1  # noqa: E731 - S-curve
    out = np.stack([s(0.92 * r + 0.08 * g) * 1.0, s(g), s(0.9 * b + 0.05 * g) * 0.95], axis=-1)
    rows = np.clip(out, 0, 1).reshape(-1, 3)
    path.write_text(f'TITLE "bench look"\nLUT_3D_SIZE {size}\n' + "\n".join(f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in rows) + "\n")
    return path


def cut_audio(src: Path, seconds: float, dst: Path) -> Path:
    from facetalk.media.audio import load_audio
    import soundfile

    audio = load_audio(str(src))
    samples = np.asarray(audio.samples)[: int(seconds * audio.sample_rate)]
    soundfile.write(str(dst), samples, audio.sample_rate)
    return dst


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2, help="A/B pairs to run [2]")
    ap.add_argument("--seconds", type=float, default=7.0, help="seconds of speech (and of video; the clip has 7.4) [7]")
    args = ap.parse_args()
    if not CLIP.is_file():
        print(f"test media missing: {CLIP}", file=sys.stderr)
        return 2

    from facetalk.context import RunContext
    from facetalk.face.models import FaceModels
    from facetalk.pipeline import RenderRequest, render

    models = FaceModels()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-finish-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("FACETALK_HOME", str(tmp / "home"))
        look = write_look(tmp / "look.cube")
        audio = cut_audio(CLIP, args.seconds, tmp / "speech.wav")
        variants = {
            "A": {"label": False},
            "B": {"label": True, "lut": str(look), "enhance": True},
            "C": {"label": True, "enhance": True},  # B without the LUT: what the LUT's share is
        }
        # one warm-up render (caches, lazy imports) not counted
        render(RenderRequest(face=str(CLIP), audio=str(audio), output=str(tmp / "warm.mp4"), label=False),
               RunContext(), models=models)
        # the first use of a look builds its 256^3 table (then kept in FACETALK_HOME/cache/luts):
        # timed apart, as what a new look costs once
        c0, t0 = cpu_seconds(), time.perf_counter()
        render(RenderRequest(face=str(CLIP), audio=str(audio), output=str(tmp / "first.mp4"), **variants["B"]),
               RunContext(), models=models)
        first_use = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(cpu_seconds() - c0, 3)}
        print(json.dumps({"variant": "B, first use of the look"} | first_use), flush=True)
        for pair in range(args.pairs):
            for name, extra in variants.items():
                out = tmp / f"{name}{pair}.mp4"
                c0, t0 = cpu_seconds(), time.perf_counter()
                result = render(RenderRequest(face=str(CLIP), audio=str(audio), output=str(out), **extra), RunContext(),
                                models=models)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                row = {"variant": name, "pair": pair, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                       "frames": result.n_frames, "size": f"{result.width}x{result.height}",
                       "finish_thread_s": round(result.timings.get("finish", 0.0), 3),
                       "load_avg_1m": round(os.getloadavg()[0], 2)}
                runs.append(row)
                print(json.dumps(row), flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["variant"] == name)

    added_wall = median("B", "wall_s") / median("A", "wall_s") - 1
    added_cpu = median("B", "cpu_s") / median("A", "cpu_s") - 1
    by_pair = [{r["variant"]: r for r in runs if r["pair"] == k} for k in range(args.pairs)]
    pair_wall = [p["B"]["wall_s"] / p["A"]["wall_s"] - 1 for p in by_pair]
    frames = runs[0]["frames"]
    summary = {
        "clip": CLIP.name, "seconds_of_speech": args.seconds, "frames": frames, "size": runs[0]["size"],
        "chain": "33^3 LUT (tetrahedral, strength 1) + enhance + label", "cpus": os.cpu_count(),
        "median_wall_s": {"A": median("A", "wall_s"), "B": median("B", "wall_s")},
        "median_cpu_s": {"A": median("A", "cpu_s"), "B": median("B", "cpu_s")},
        "added_wall": round(added_wall, 4), "added_cpu": round(added_cpu, 4),
        "added_wall_per_pair": [round(x, 4) for x in pair_wall],
        "added_without_lut": {"wall": round(median("C", "wall_s") / median("A", "wall_s") - 1, 4),
                              "cpu": round(median("C", "cpu_s") / median("A", "cpu_s") - 1, 4)},
        "finish_ms_per_frame": round(1000 * median("B", "finish_thread_s") / frames, 2),
        "first_use_of_the_look": first_use,
        "target_added": TARGET, "met": added_wall < TARGET,  # render time: the wall clock; CPU is reported beside it "runs": runs,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "finish.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"without the LUT: {summary['added_without_lut']['wall']:+.1%} wall, {summary['added_without_lut']['cpu']:+.1%} CPU")
    print(f"finishing adds {added_wall:+.1%} wall, {added_cpu:+.1%} CPU "
          f"({summary['finish_ms_per_frame']} ms a frame in the chain, thread time); target < {TARGET:.0%}: "
          + ("met" if summary["met"] else "NOT met"))
    return 0 if summary["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
