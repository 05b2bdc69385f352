"""The mouth drawn from a single photo, measured on the render (a benchmark, never a timed
test).

    .venv/bin/python bench/bench_photo_mouth.py                  # every portrait + the astronaut
    .venv/bin/python bench/bench_photo_mouth.py --faces smiling-man.jpg,astronaut --seconds 4

Every portrait under ../shared/media/faces, plus skimage's astronaut, speaks one speech
recording (default en-film-7s.wav) through the default motion (the learned lip model) and
the warp renderer, frame by frame as `facetalk render` draws a still photo (--still: no
head sway, so only the mouth moves). On every frame the landmarks are re-found (dlib, on
the frame enlarged to 120 px between the eyes: facetalk.eval.mouth.redetect) and:

- width r: Pearson r of the re-detected mouth width (corner to corner over IOD) against
  the motion's width target, wide - round (target >= 0.8);
- "oo": on the frames inside a Rhubarb F cue (the rule path's cues of the same speech),
  the re-detected width over the width of the same photo rendered at rest; and the same
  for the pose F itself (motion.shapes) drawn alone (target <= 0.85);
- closed: on the frames whose target lips meet (the renderer's target shape has only the
  hairline mouth_shape.MIN_GAP between them), the re-detected inner-lip gap
  (eval.mouth.lip_gap: target <= 0.02 IOD) and the teeth-bright pixels in the lip seam
  (eval.mouth.teeth_in_seam: target none).

It writes one contact sheet per portrait, docs/photo_mouth/<name>.png (the photo, then
the mouth drawn at rest X, closed A, wide open D, "oo" F and f/v G), and the figures to
bench/results/photo_mouth.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
SHEET_POSES = (("rest", "X"), ("closed", "A"), ("wide open", "D"), ("oo", "F"), ("f/v", "G"))
CROP_W = 136  # px of each mouth crop in a contact sheet (a sheet stays under 150 KB)
TARGET_R, TARGET_OO, TARGET_GAP = 0.8, 0.85, 0.02


def load_face(name: str, models):
    """The photo as `facetalk render` frames it, and its landmarks."""
    from facetalk.face.detect import find_faces, select_face
    from facetalk.face.track import track_image
    from facetalk.framing import plan_framing
    from facetalk.media.image import load_image

    if name == "astronaut":
        from skimage import data

        image = data.astronaut()
    else:
        image = load_image(MEDIA / "faces" / name).rgb
    box = select_face(find_faces(models, image))
    framing = plan_framing(image.shape[1], image.shape[0], None, ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2))
    image = framing.apply(image)
    return image, track_image(models, image, source=name)


def mouth_crop(frame: np.ndarray, lm: np.ndarray, width: int = CROP_W) -> np.ndarray:
    """A fixed box around the photo's mouth (the same for every pose), resized to width."""
    from facetalk.face.geometry import interocular

    c = lm[48:68].mean(axis=0)
    s = 0.85 * interocular(lm)
    x0, x1 = int(round(c[0] - s)), int(round(c[0] + s))
    y0, y1 = int(round(c[1] - 0.6 * s)), int(round(c[1] + 0.75 * s))
    h, w = frame.shape[:2]
    crop = frame[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    return cv2.resize(crop, (width, int(round(width * crop.shape[0] / max(crop.shape[1], 1)))),
                      interpolation=cv2.INTER_AREA)


def contact_sheet(name: str, image: np.ndarray, lm: np.ndarray, renderer, out_dir: Path) -> Path:
    from facetalk.composite import paste
    from facetalk.motion.shapes import shape_target
    from facetalk.types import Shape

    tiles = [mouth_crop(image, lm)]
    for _, shape in SHEET_POSES:
        tiles.append(mouth_crop(paste(image, renderer.render(image, lm, shape_target(Shape(shape)))), lm))
    h = min(t.shape[0] for t in tiles)
    sheet = np.hstack([t[:h] for t in tiles])
    path = out_dir / f"{Path(name).stem}.png"
    cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def legend(out_dir: Path) -> Path:
    """The column titles of the contact sheets, as a strip of their width."""
    labels = ("photo",) + tuple(f"{label} ({shape})" for label, shape in SHEET_POSES)
    strip = np.full((22, CROP_W * len(labels), 3), 255, np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(strip, text, (i * CROP_W + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = out_dir / "_columns.png"
    cv2.imwrite(str(path), strip, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def f_frames(speech, fps: float, n: int) -> np.ndarray:
    """Frames whose time lies inside a Rhubarb F cue."""
    from facetalk.types import Shape

    times = np.arange(n) / fps
    inside = np.zeros(n, bool)
    for cue in speech.cues:
        if Shape(cue.shape) == Shape.F:
            inside |= (times >= cue.start) & (times < cue.end)
    return inside


def measure_face(name: str, models, speech, motion, fps: float, out_dir: Path) -> dict:
    from facetalk.composite import paste
    from facetalk.eval.mouth import lip_gap, redetect, seam_band, teeth_in_seam
    from facetalk.face.geometry import mouth_width
    from facetalk.motion.shapes import shape_target
    from facetalk.render.mouth_shape import MIN_GAP, shape_canonical
    from facetalk.render.warp import WarpRenderer
    from facetalk.types import MOUTH_PARAMS, Shape

    t0 = time.perf_counter()
    image, lm = load_face(name, models)
    renderer = WarpRenderer()
    renderer.prepare(image, lm)
    sheet = contact_sheet(name, image, lm, renderer, out_dir)
    photo = redetect(models, image, lm)
    rest = redetect(models, paste(image, renderer.render(image, lm, shape_target(Shape.X))), lm)
    pose_f = redetect(models, paste(image, renderer.render(image, lm, shape_target(Shape.F))), lm)
    rest_w = float(mouth_width(rest))

    col = {p: i for i, p in enumerate(MOUTH_PARAMS)}
    mouth = motion.mouth
    widths, gaps, teeth, band_px = [], [], [], []
    # closed target: the renderer's target lips meet (only the hairline MIN_GAP between
    # them), which an opening of 0 alone does not say (a raised upper lip shows teeth)
    target_gap = np.array([max(c[lo, 1] - c[up, 1] for up, lo in ((61, 67), (62, 66), (63, 65)))
                           for c in (shape_canonical(renderer._neutral, m) for m in mouth)])
    closed = target_gap <= 1.5 * MIN_GAP
    for k in range(len(mouth)):
        out = paste(image, renderer.render(image, lm, mouth[k]))
        found = redetect(models, out, lm)
        widths.append(float(mouth_width(found)))
        gaps.append(lip_gap(found))
        if closed[k]:
            teeth.append(int(teeth_in_seam(out, found).sum()))
            band_px.append(int(seam_band(out.shape[:2], found)[0].sum()))
    widths, gaps = np.array(widths), np.array(gaps)
    target = mouth[:, col["wide"]] - mouth[:, col["round"]]
    r = float(np.corrcoef(target, widths)[0, 1]) if np.std(target) > 0 and np.std(widths) > 0 else float("nan")
    in_f = f_frames(speech, fps, len(mouth))
    oo = widths[in_f] / rest_w if in_f.any() else np.array([])
    return {
        "face": name, "iod_px": round(float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))), 1),
        "photo_gap": round(lip_gap(photo), 3), "photo_width": round(float(mouth_width(photo)), 3),
        "rest_width": round(rest_w, 3), "rest_gap": round(lip_gap(rest), 3),
        "width_r": round(r, 3),
        "f_frames": int(in_f.sum()),
        "oo_width_ratio_median": round(float(np.median(oo)), 3) if oo.size else None,
        "oo_width_ratio_min": round(float(oo.min()), 3) if oo.size else None,
        "round_at_f_median": round(float(np.median(mouth[in_f, col["round"]])), 3) if in_f.any() else None,
        "pose_f_width_ratio": round(float(mouth_width(pose_f)) / rest_w, 3),
        "closed_frames": int(closed.sum()),
        "closed_gap_median": round(float(np.median(gaps[closed])), 3) if closed.any() else None,
        "closed_gap_max": round(float(gaps[closed].max()), 3) if closed.any() else None,
        "closed_share_met": round(float(np.mean(gaps[closed] <= TARGET_GAP)), 3) if closed.any() else None,
        "closed_teeth_px_max": int(max(teeth)) if teeth else None,
        "closed_teeth_share_max": round(max(t / max(b, 1) for t, b in zip(teeth, band_px)), 4) if teeth else None,
        "sheet": str(sheet.relative_to(ROOT) if sheet.is_relative_to(ROOT) else sheet), "sheet_kb": round(sheet.stat().st_size / 1024, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", default=str(MEDIA / "speech" / "en-film-7s.wav"), help="the speech recording")
    ap.add_argument("--faces", default=None, help="comma-separated portraits (file names, or 'astronaut') [all]")
    ap.add_argument("--seconds", type=float, default=None, help="only the first seconds of the speech")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--sheets", default=str(ROOT / "docs" / "photo_mouth"), help="folder of the contact sheets")
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "results" / "photo_mouth.json"))
    args = ap.parse_args()

    from facetalk.context import RunContext
    from facetalk.face.models import FaceModels
    from facetalk.media.audio import load_audio
    from facetalk.motion.build import build_motion
    from facetalk.speech.analyse import analyse_speech

    audio_path = Path(args.audio)
    if not audio_path.is_file():
        print(f"error: no speech recording at {audio_path}", file=sys.stderr)
        return 2
    names = args.faces.split(",") if args.faces else ["astronaut"] + sorted(
        p.name for p in (MEDIA / "faces").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    audio = load_audio(str(audio_path))
    if args.seconds:
        audio = dataclasses.replace(audio, samples=audio.samples[: int(args.seconds * audio.sample_rate)])
    speech = analyse_speech(audio, None, RunContext())
    n_frames = int(round(len(audio.samples) / audio.sample_rate * args.fps))
    motion = build_motion(speech, args.fps, n_frames, still=True)
    models = FaceModels()
    out_dir = Path(args.sheets)
    out_dir.mkdir(parents=True, exist_ok=True)
    legend(out_dir)

    rows = []
    print(f"{audio_path.name}: {n_frames} frames at {args.fps:g} fps, "
          f"{int((motion.mouth[:, 0] <= 1e-3).sum())} with the opening at 0")
    print("| face | IOD px | width r | 'oo' frames: width / rest (median, min) | pose F width / rest "
          "| closed frames: gap median / max, share <= 0.02 | teeth px in seam (max) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        row = measure_face(name, models, speech, motion, args.fps, out_dir)
        rows.append(row)
        print(f"| {name} | {row['iod_px']:.0f} | {row['width_r']:+.2f} | "
              f"{row['oo_width_ratio_median']} , {row['oo_width_ratio_min']} ({row['f_frames']} frames, round "
              f"{row['round_at_f_median']}) | {row['pose_f_width_ratio']:.2f} | {row['closed_gap_median']} / "
              f"{row['closed_gap_max']}, {row['closed_share_met']} | {row['closed_teeth_px_max']} |", flush=True)
    summary = {
        "width_r_median": round(float(np.nanmedian([r["width_r"] for r in rows])), 3),
        "faces_width_r_met": sum(r["width_r"] >= TARGET_R for r in rows),
        "pose_f_met": sum(r["pose_f_width_ratio"] <= TARGET_OO for r in rows),
        "oo_frames_met": sum((r["oo_width_ratio_median"] or 9) <= TARGET_OO for r in rows),
        "closed_share_met_median": round(float(np.median([r["closed_share_met"] for r in rows
                                                          if r["closed_share_met"] is not None])), 3),
        "faces": len(rows),
    }
    print(json.dumps(summary))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"audio": audio_path.name, "fps": args.fps, "frames": n_frames,
                               "summary": summary, "faces": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
