"""Side-by-side videos for looking at lip-sync: real clip | learned motion | rule path.

    .venv/bin/python bench/lipsync_side_by_side.py [CLIP ...] --out artifacts/lipsync-sbs

Each panel after the first is rendered from one frame of the clip (the closed-mouth,
frontal frame `facetalk eval` uses as its photo) with the clip's own soundtrack, no
transcript. Writes OUT/<clip>.mp4 (with the sound) and OUT/<clip>.png (a strip of
mouth crops at moments of speech: real above learned above rules).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "media" / "talking"


def mouth_box(lm: np.ndarray, w: int, h: int) -> list[int]:
    pad = 0.6 * (lm[54, 0] - lm[48, 0])
    x0, y0 = lm[48:68].min(axis=0) - pad
    x1, y1 = lm[48:68].max(axis=0) + pad
    return [int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))]


def main() -> None:
    from PIL import Image

    from facetalk.context import RunContext
    from facetalk.eval.run import pick_photo_frame
    from facetalk.face.models import FaceModels
    from facetalk.face.track import track_faces
    from facetalk.media.encode import VideoWriter
    from facetalk.media.video import FrameReader, iter_frames, probe_video
    from facetalk.pipeline import RenderRequest, render

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "lipsync-sbs")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--height", type=int, default=360)
    args = ap.parse_args()
    clips = args.clips or sorted(SHARED.glob("*.mp4"))
    args.out.mkdir(parents=True, exist_ok=True)
    models = FaceModels()
    for clip in clips:
        info = probe_video(clip)
        track = track_faces(iter_frames(clip), models, fps=info.fps)
        with FrameReader(clip) as reader:
            k_photo = pick_photo_frame(track.raw)
            photo = reader.get(k_photo)
        work = args.out / clip.stem
        work.mkdir(exist_ok=True)
        Image.fromarray(photo).save(work / "photo.png")
        renders = {}
        for mode in ("learned", "rules"):
            out = work / f"{mode}.mp4"
            render(RenderRequest(face=str(work / "photo.png"), audio=str(clip), output=str(out), fps=info.fps,
                                 size=(info.width, info.height), seed=0, still=True, mouth=mode), RunContext(), models)
            renders[mode] = out
        h = args.height
        w = int(round(info.width * h / info.height / 2)) * 2
        n = int(min(info.n_frames, args.seconds * info.fps))
        streams = [iter_frames(clip, size=(w, h))] + [iter_frames(renders[m], size=(w, h)) for m in ("learned", "rules")]
        strip_frames = set(np.linspace(0, n - 1, 8).astype(int).tolist())
        strips = []
        with VideoWriter(args.out / f"{clip.stem}.mp4", 3 * w, h, info.fps, audio_path=str(clip)) as writer:
            for k, frames in enumerate(zip(*streams)):
                if k >= n:
                    break
                writer.write(np.hstack(frames))
                if k in strip_frames and np.isfinite(track.landmarks[k]).all():
                    # the real head moves; the renders keep the photo's pose (--still)
                    boxes = [mouth_box(track.landmarks[k] * (h / info.height), w, h)]
                    boxes += 2 * [mouth_box(track.landmarks[k_photo] * (h / info.height), w, h)]
                    crops = [np.asarray(Image.fromarray(f[b[1]:b[3], b[0]:b[2]]).resize((160, 100)))
                             for f, b in zip(frames, boxes)]
                    strips.append(np.vstack(crops))
        if strips:
            Image.fromarray(np.hstack(strips)).save(args.out / f"{clip.stem}.png")
        print(f"wrote {args.out / clip.stem}.mp4 and .png", flush=True)


if __name__ == "__main__":
    main()
