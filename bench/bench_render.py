"""Speed and memory of `render` on a 2-core CPU.

Each case runs in a fresh process so peak RSS belongs to that case alone. Prints one
row per case (real-time factor overall and per stage, frames per second, peak RSS) and
writes them to bench/results/render.json.

    .venv/bin/python bench/bench_render.py                 # photo and video, 60 s, 720p
    .venv/bin/python bench/bench_render.py --long          # adds a 10-minute photo render (memory)

Real-time factor (RTF) here is audio seconds over wall seconds: 2.0 means twice as fast as
real time. Per-stage figures are wall seconds of that stage over audio seconds.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def make_speech(seconds: float, path: Path) -> Path:
    """Real English speech looped to the wanted length (16 kHz mono WAV)."""
    import soundfile

    src, sr = soundfile.read(str(MEDIA / "speech" / "en-60s.wav"), dtype="float32", always_2d=True)
    src = src.mean(axis=1)
    reps = int(np.ceil(seconds * sr / len(src)))
    samples = np.tile(src, reps)[: int(seconds * sr)]
    soundfile.write(str(path), samples, sr, subtype="PCM_16")
    return path


def make_portrait(path: Path) -> Path:
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def run_case(face: str, audio: str, size: str, out: str) -> dict:
    """Render in this process and return timings; called in a child process."""
    from facetalk.framing import parse_size
    from facetalk.pipeline import RenderRequest, render

    t0 = time.perf_counter()
    result = render(RenderRequest(face=face, audio=audio, output=out, size=parse_size(size)))
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "audio_s": result.duration, "frames": result.n_frames,
            "size": f"{result.width}x{result.height}", "peak_rss_mb": peak_mb, "stages_s": result.timings}


def child(args) -> None:
    print(json.dumps(run_case(args.face, args.audio, args.size, args.out)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="also render 10 minutes from a photo (memory check)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--face"), ap.add_argument("--audio"), ap.add_argument("--size"), ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return child(args)

    tmp = Path(tempfile.mkdtemp(prefix="facetalk-bench-"))
    portrait = make_portrait(tmp / "portrait.png")
    cases = [
        ("photo", str(portrait), args.seconds, "1280x720"),
        ("video", str(MEDIA / "talking" / "presenter-1080p-7s.mp4"), args.seconds, "1280x720"),
    ]
    if args.long:
        cases.append(("photo-10min", str(portrait), 600.0, "1280x720"))
    rows = []
    for name, face, seconds, size in cases:
        audio = make_speech(seconds, tmp / f"speech-{int(seconds)}.wav")
        cmd = [sys.executable, __file__, "--child", "--face", face, "--audio", str(audio), "--size", size,
               "--out", str(tmp / f"{name}.mp4")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
            continue
        row = {"case": name, **json.loads(proc.stdout.strip().splitlines()[-1])}
        row["rtf"] = row["audio_s"] / row["wall_s"]
        row["fps"] = row["frames"] / row["wall_s"]
        rows.append(row)
        stages = "  ".join(f"{k} {v / row['audio_s']:.3f}" for k, v in sorted(row["stages_s"].items()))
        print(f"{name:12s} {row['size']:>9s} audio {row['audio_s']:6.1f}s  wall {row['wall_s']:6.1f}s  "
              f"RTF {row['rtf']:.2f}x  {row['fps']:5.1f} fps  peak RSS {row['peak_rss_mb']:.0f} MB")
        print(f"{'':12s} stage seconds per audio second: {stages}")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "render.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
