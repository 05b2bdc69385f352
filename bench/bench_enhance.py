"""Does --enhance make the mouth sharper without making the face less steady? (a benchmark,
never a timed test)

    .venv/bin/python bench/bench_enhance.py            # 3 clips, 3 s of speech each

Renders each case with and without --enhance (both --no-label, so only the enhancement
differs), then measures the outputs with facetalk.eval's metrics: mouth sharpness (the
variance of the Laplacian in the mouth box, higher is sharper) and jitter (frame-to-frame
non-rigid motion of the non-mouth landmarks, in IODs, lower is steadier), on landmarks
tracked on the output itself with smoothing off, as `facetalk eval` does. Writes
bench/results/enhance.json.

Target: sharpness up, jitter no higher than without --enhance (within 5%).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CASES = {
    "anchor-video": ("talking/news-anchor-de-20s.mp4", "speech/en-film-7s.wav", None),
    "woman-turned-video": ("talking/congresswoman-8s.mp4", "speech/en-reading-16s.wav", None),
    "man-photo": ("faces/smiling-man.jpg", "speech/en-film-7s.wav", 720),
}
JITTER_SLACK = 0.05


def cut(src: Path, seconds: float, dst: Path) -> Path:
    import soundfile

    from facetalk.media.audio import load_audio

    audio = load_audio(str(src))
    soundfile.write(str(dst), np.asarray(audio.samples)[: int(seconds * audio.sample_rate)], audio.sample_rate)
    return dst


def measure(path: Path, models) -> dict:
    from facetalk.eval import metrics
    from facetalk.face.track import track_faces
    from facetalk.media.video import iter_frames, probe_video

    track = track_faces(iter_frames(str(path)), models, fps=probe_video(str(path)).fps, smooth=False)
    lm = track.raw
    return {"mouth_sharpness": round(metrics.mouth_sharpness(iter_frames(str(path)), lm), 2),
            "jitter": round(metrics.jitter(lm), 5), "frames_with_face": int(track.present.sum())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    from facetalk.context import RunContext
    from facetalk.face.models import FaceModels
    from facetalk.pipeline import RenderRequest, render

    models = FaceModels()
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-enhance-") as tmp:
        tmp = Path(tmp)
        for name, (face, speech, size) in CASES.items():
            audio = cut(MEDIA / speech, args.seconds, tmp / f"{name}.wav")
            row = {"case": name, "face": face, "size": size}
            for variant, enhance in (("plain", False), ("enhance", True)):
                out = tmp / f"{name}-{variant}.mp4"
                render(RenderRequest(face=str(MEDIA / face), audio=str(audio), output=str(out), size=size,
                                     label=False, enhance=enhance, still=True), RunContext(), models=models)
                row[variant] = measure(out, models)
            p, e = row["plain"], row["enhance"]
            row["sharpness_gain"] = round(e["mouth_sharpness"] / p["mouth_sharpness"], 3)
            row["jitter_ratio"] = round(e["jitter"] / p["jitter"], 3) if p["jitter"] > 0 else None
            row["met"] = row["sharpness_gain"] > 1.0 and (row["jitter_ratio"] or 1.0) <= 1 + JITTER_SLACK
            ok &= row["met"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "enhance.json").write_text(json.dumps({"seconds": args.seconds, "cases": rows, "met": ok}, indent=2) + "\n")
    print("enhance: " + ("sharper mouths, jitter unchanged (met)" if ok else "target NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
