"""Face swap targets, as benchmark cases (never timed tests).

    .venv/bin/python bench/bench_swap.py                 # identity on 5 clips x 6 portraits, then speed
    .venv/bin/python bench/bench_swap.py --only speed    # or --only identity
    .venv/bin/python bench/bench_swap.py --seconds 3 --stride 3 --sources 2   # a quick look
    .venv/bin/python bench/bench_swap.py --only identity --clips news,presenter --sources glasses,smiling
                                  # a subset (name substrings): written to swap-subset.json

Identity: each talking clip (cut to --seconds) is swapped with each frontal portrait as
source. On every --stride-th output frame the face is re-detected and embedded (dlib):
d_src = distance to the source photo's embedding, d_tgt = distance to the target's own
face in that frame. Target: d_src < d_tgt on at least 90% of frames overall. Jitter:
landmarks re-detected on the output (track_faces, unsmoothed) against those of the
target clip, eval.metrics.jitter; target ratio <= 1.5.

Jitter diagnostic (reported, not a target): dlib's landmark noise on a still frame. A few
frames of the output and of the target are shifted by random sub-pixel amounts (plus
1.5 levels of noise) and re-fitted in a fixed box; the jitter of those fits is what the
detector adds with no motion at all. On a swapped face with glasses it is ~1.7x the
target's own, which is the whole measured jitter ratio: "net" ratios remove that floor
(sqrt(jitter^2 - floor^2), noise adding in quadrature).

Speed: the whole `facetalk swap` command at 1280x720 on this machine's cores (2), wall
clock against the clip's frame rate; target >= 1x real time. CPU seconds of the child
process are reported too, with the start-up part split off (the same command on the
first few frames) and the frame rate projected from the steady CPU per frame on free
cores (the machine may be shared: see the load averages printed).

Writes bench/results/swap.json (the parts run: "identity", "speed"); a run on a subset of
the clips or portraits writes bench/results/swap-subset.json instead, so the full table
stays. --keep DIR keeps the swapped videos there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from facetalk.eval.metrics import STABLE_POINTS, _similarity_residual, jitter
from facetalk.face import geometry
from facetalk.face.detect import find_faces, find_landmarks
from facetalk.face.embed import embedding_distance, face_embedding
from facetalk.face.models import FaceModels
from facetalk.face.track import track_faces, track_image
from facetalk.framing import plan_framing
from facetalk.media.encode import VideoWriter
from facetalk.media.image import load_image
from facetalk.media.video import iter_frames, pingpong_index, probe_video
from facetalk.swap import SwapRequest, swap

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = ("congressman-60s-256px.mp4", "news-anchor-de-20s.mp4", "congresswoman-8s.mp4", "man-suit-6s.mp4",
         "presenter-1080p-7s.mp4")
SOURCES = ("glasses-beard.jpg", "young-woman.png", "woman-portrait.png", "older-man-3511px.jpg", "beard-closeup.png",
           "smiling-man.jpg")
MIN_FRACTION = 0.90
MAX_JITTER_RATIO = 1.5
MIN_RTF = 1.0
STARTUP_FRAMES = 6


def cut(src: Path, seconds: float, out: Path, size: tuple[int, int] | None = None) -> Path:
    """The first `seconds` of a clip (re-encoded at crf 12, with its sound); cropped to
    size's aspect (centred) and resized to it when size is given."""
    info = probe_video(src)
    n = int(round(seconds * info.fps))
    framing = plan_framing(info.width, info.height, size)
    with VideoWriter(out, framing.width, framing.height, info.fps, audio_path=src if info.has_audio else None,
                     crf=12) as writer:
        for frame in islice(iter_frames(src), n):
            writer.write(framing.apply(frame))
    return out


def loop(src: Path, seconds: float, out: Path, size: tuple[int, int]) -> Path:
    """A longer target from a short clip: its frames forward, backward, forward... (no cut
    a tracker could trip on) for `seconds`, resized to size, silent."""
    info = probe_video(src)
    framing = plan_framing(info.width, info.height, size)
    frames = [framing.apply(f) for f in iter_frames(src)]
    n = int(round(seconds * info.fps))
    with VideoWriter(out, framing.width, framing.height, info.fps, crf=12) as writer:
        for k in range(n):
            writer.write(frames[pingpong_index(k, len(frames))])
    return out


def detector_floor(models: FaceModels, video: Path, frames: tuple[int, ...] = (0, 20, 40, 60), copies: int = 12) -> float:
    """Landmark jitter on still frames: each of `frames` shifted by random sub-pixel
    amounts and re-fitted in one box (see the module docstring)."""
    rng = np.random.default_rng(0)
    values = []
    for k, frame in enumerate(iter_frames(video)):
        if k > max(frames):
            break
        if k not in frames:
            continue
        boxes = find_faces(models, frame)
        if not boxes:
            continue
        fits = []
        for _ in range(copies):
            shift = rng.uniform(-0.5, 0.5, 2)
            m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            moved = cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REFLECT)
            moved = np.clip(moved + rng.normal(0, 1.5, moved.shape), 0, 255).astype(np.uint8)
            fits.append(find_landmarks(models, moved, boxes[0]) - shift.astype(np.float32))
        values.append(jitter(np.array(fits)))
    return float(np.mean(values)) if values else float("nan")


# the stable points by part: where a swapped face's extra jitter sits
GROUPS = {"jaw": np.r_[0:17], "brows": np.r_[17:27], "nose": np.r_[27:36], "eye_corners": np.r_[36, 39, 42, 45]}


def group_jitter(landmarks: np.ndarray) -> dict[str, float]:
    """jitter's frame-to-frame residual (similarity over all stable points removed), in
    IOD, averaged over each group's points."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ok = np.isfinite(lm).all(axis=(1, 2))
    sums = {k: [] for k in GROUPS}
    for t in np.nonzero(ok[1:] & ok[:-1])[0] + 1:
        p, q = lm[t - 1], lm[t]
        iod = 0.5 * (geometry.interocular(p) + geometry.interocular(q))
        m = geometry.fit_similarity(p[STABLE_POINTS], q[STABLE_POINTS])
        res = np.linalg.norm(geometry.apply(m, p) - q, axis=1) / iod
        for k, idx in GROUPS.items():
            sums[k].append(res[idx].mean())
    return {k: float(np.mean(v)) if v else float("nan") for k, v in sums.items()}


def _net(j: float, floor: float) -> float:
    return float(np.sqrt(max(j * j - floor * floor, 0.0)))


def identity_case(models: FaceModels, clip: Path, target_lm: np.ndarray, target_emb: dict[int, np.ndarray],
                  target_floor: float, source: Path, source_emb: np.ndarray, out: Path, stride: int,
                  target_groups: dict[str, float]) -> dict:
    t = time.perf_counter()
    result = swap(SwapRequest(sources=[str(source)], target=str(clip), output=str(out), label=False), models=models)
    seconds = time.perf_counter() - t
    info = probe_video(out)
    track = track_faces(iter_frames(out), models, fps=info.fps, smooth=False)
    d_src, d_tgt = [], []
    for k, frame in enumerate(iter_frames(out)):
        if k % stride or k not in target_emb or not track.present[k]:
            continue
        emb = face_embedding(models, frame, track.raw[k])
        d_src.append(embedding_distance(emb, source_emb))
        d_tgt.append(embedding_distance(emb, target_emb[k]))
    d_src, d_tgt = np.array(d_src), np.array(d_tgt)
    margin = d_tgt - d_src
    j_out, j_tgt = jitter(track.raw), jitter(target_lm)
    floor = detector_floor(models, out)
    groups = group_jitter(track.raw)
    return {
        "target": clip.name, "source": source.name, "frames": len(margin),
        "frames_swapped": result.frames_swapped, "n_frames": result.n_frames,
        "closer_to_source": float(np.mean(margin > 0)) if len(margin) else float("nan"),
        "d_src": _pct(d_src), "d_tgt": _pct(d_tgt), "margin": _pct(margin),
        "jitter_out": j_out, "jitter_target": j_tgt, "jitter_ratio": j_out / j_tgt if j_tgt > 0 else float("nan"),
        "floor_out": floor, "floor_target": target_floor, "floor_ratio": floor / target_floor,
        "net_jitter_ratio": _net(j_out, floor) / _net(j_tgt, target_floor) if _net(j_tgt, target_floor) > 0 else float("nan"),
        "group_jitter_ratio": {k: round(v / target_groups[k], 3) for k, v in groups.items()},
        "swap_seconds": round(seconds, 2), "_margins": margin.tolist(),
    }


def _pct(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    return {f"p{p}": round(float(np.percentile(x, p)), 3) for p in (5, 25, 50, 75, 95)} | {"mean": round(float(x.mean()), 3)}


def _pick(names: tuple[str, ...], spec: str | None) -> tuple[str, ...]:
    """names matching a comma-separated list of substrings, or the first n for a number."""
    if spec is None:
        return names
    if spec.isdigit():
        return names[: int(spec)]
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    return tuple(n for n in names if any(k in n for k in keys))


def run_identity(args, tmp: Path) -> dict:
    models = FaceModels()
    sources = []
    keep = Path(args.keep) if args.keep else tmp
    keep.mkdir(parents=True, exist_ok=True)
    for name in _pick(SOURCES, args.sources):
        rgb = load_image(MEDIA / "faces" / name).rgb
        sources.append((MEDIA / "faces" / name, face_embedding(models, rgb, track_image(models, rgb))))
    rows = []
    for clip_name in _pick(CLIPS, args.clips):
        size = (1280, 720) if clip_name.startswith("presenter") else None
        clip = cut(MEDIA / "talking" / clip_name, args.seconds, tmp / clip_name, size)
        info = probe_video(clip)
        track = track_faces(iter_frames(clip), models, fps=info.fps, smooth=False)
        target_emb = {k: face_embedding(models, f, track.raw[k]) for k, f in enumerate(iter_frames(clip))
                      if k % args.stride == 0 and track.present[k]}
        floor = detector_floor(models, clip)
        target_groups = group_jitter(track.raw)
        for source, emb in sources:
            row = identity_case(models, clip, track.raw, target_emb, floor, source, emb,
                                keep / f"out-{clip.stem}-{source.stem}.mp4", args.stride, target_groups)
            rows.append(row)
            print(f"{row['target']:<28} {row['source']:<22} closer to source {row['closer_to_source']:6.1%} "
                  f"({row['frames']} frames)  d_src p50 {row['d_src'].get('p50', float('nan')):.3f}  "
                  f"d_tgt p50 {row['d_tgt'].get('p50', float('nan')):.3f}  jitter x{row['jitter_ratio']:.2f} "
                  f"(still-frame floor x{row['floor_ratio']:.2f}, net x{row['net_jitter_ratio']:.2f}; by part "
                  + " ".join(f"{k} x{v:.2f}" for k, v in row["group_jitter_ratio"].items()) + ")", flush=True)
    margins = np.concatenate([r.pop("_margins") for r in rows])
    ratios = np.array([r["jitter_ratio"] for r in rows])
    nets = np.array([r["net_jitter_ratio"] for r in rows])
    summary = {
        "frames": len(margins),
        "closer_to_source": float(np.mean(margins > 0)),
        "margin_d_tgt_minus_d_src": _pct(margins),
        "per_pair_closer": _pct(np.array([r["closer_to_source"] for r in rows])),
        "jitter_ratio": _pct(ratios) | {"max": round(float(np.nanmax(ratios)), 3)},
        "floor_ratio": _pct(np.array([r["floor_ratio"] for r in rows])),
        "net_jitter_ratio": _pct(nets) | {"max": round(float(np.nanmax(nets)), 3)},
    }
    summary["meets"] = bool(summary["closer_to_source"] >= MIN_FRACTION and np.nanmax(ratios) <= MAX_JITTER_RATIO)
    print(f"identity: closer to the source on {summary['closer_to_source']:.1%} of {summary['frames']} frames "
          f"(target >= {MIN_FRACTION:.0%}); jitter ratio median {np.nanmedian(ratios):.2f}, max {np.nanmax(ratios):.2f} "
          f"(target <= {MAX_JITTER_RATIO}); net of the still-frame detector floor: median {np.nanmedian(nets):.2f}, "
          f"max {np.nanmax(nets):.2f}")
    return {"seconds": args.seconds, "stride": args.stride, "pairs": rows, "summary": summary}


def _timed(cmd: list[str]) -> tuple[float, float, float, float]:
    """(wall s, CPU s of the child, load average before, after) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, load, os.getloadavg()[0]


def run_speed(args, tmp: Path) -> list[dict]:
    """The whole command on real 720p inputs made from two clips (decoding them costs what
    any 720p video costs), plus the 1080p presenter clip swapped with --size 1280x720.

    Each case also runs on its first STARTUP_FRAMES frames: what that costs is start-up
    (imports, models, the source photo); the rest over the remaining frames is the steady
    CPU per frame, which a longer video approaches."""
    cases = [
        ("presenter-1080p-7s.mp4", (1280, 720), None, "presenter clip at 1280x720 (face IOD ~90 px)"),
        ("congresswoman-8s.mp4", (1280, 720), None, "512 px clip cropped and upscaled to 1280x720 (IOD ~280 px)"),
        ("presenter-1080p-7s.mp4", None, "1280x720", "1080p presenter clip with --size 1280x720 (decodes 1080p)"),
        # a 7 s clip carries ~2.3 s of start-up; a longer video shows the steady rate
        ("presenter-1080p-7s.mp4", (1280, 720), "loop30", "presenter clip at 1280x720, looped to 30 s"),
    ]
    rows = []
    cores = len(os.sched_getaffinity(0))
    for clip_name, make_size, size_opt, what in cases:
        clip = MEDIA / "talking" / clip_name
        short = cut(clip, STARTUP_FRAMES / probe_video(clip).fps, tmp / f"short-{clip_name}", make_size)
        if size_opt == "loop30":
            clip, size_opt = loop(clip, 30.0, tmp / f"720p-30s-{clip_name}", make_size), None
        elif make_size is not None:
            clip = cut(clip, 60.0, tmp / f"720p-{clip_name}", make_size)
        info, short_info = probe_video(clip), probe_video(short)
        timings = []
        for target in (short, clip):
            out = tmp / f"speed-{target.stem}.mp4"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "facetalk", "swap", "--source", str(MEDIA / "faces" / "young-woman.png"),
                   "--target", str(target), "-o", str(out), "--quiet"] + (["--size", size_opt] if size_opt else [])
            timings.append(_timed(cmd))
        (_, cpu0, _, _), (wall, cpu, load, load_after) = timings
        steady = (cpu - cpu0) / (info.n_frames - short_info.n_frames)
        fps = info.n_frames / wall
        row = {"case": what, "clip": clip_name, "size": f"{info.width}x{info.height}" if not size_opt else size_opt,
               "frames": info.n_frames, "clip_fps": info.fps, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
               "fps": round(fps, 2), "rtf": round(fps / info.fps, 2),
               "cpu_ms_per_frame": round(1000 * cpu / info.n_frames, 1),
               "startup_cpu_s": round(cpu0, 2), "steady_cpu_ms_per_frame": round(1000 * steady, 1),
               # secondary: the frame rate if the command had its cores to itself and kept them
               # busy (cores / steady CPU per frame); the machine is shared, so wall fps is noisy
               "projected_fps": round(cores / steady, 1), "projected_rtf": round(cores / steady / info.fps, 2),
               "load_before": round(load, 2), "load_after": round(load_after, 2), "cores": cores}
        row["meets"] = row["rtf"] >= MIN_RTF
        rows.append(row)
        print(f"speed {what}: {fps:.1f} fps vs {info.fps:g} fps = {row['rtf']:.2f}x real time "
              f"(wall {wall:.1f} s, CPU {cpu:.1f} s = {row['cpu_ms_per_frame']} ms/frame, of it start-up {cpu0:.1f} s; "
              f"steady {row['steady_cpu_ms_per_frame']} ms/frame; projected {row['projected_fps']} fps = "
              f"{row['projected_rtf']:.2f}x on {cores} free cores; load {load:.2f} -> {load_after:.2f})", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["identity", "speed"], default=None)
    ap.add_argument("--seconds", type=float, default=6.0, help="length each clip is cut to (identity)")
    ap.add_argument("--stride", type=int, default=2, help="embed every n-th frame (identity)")
    ap.add_argument("--sources", default=None,
                    help="the portraits to use: how many, or comma-separated name substrings (identity)")
    ap.add_argument("--clips", default=None, help="the clips to use: comma-separated name substrings (identity)")
    ap.add_argument("--keep", default=None, help="keep the swapped videos in this folder (identity)")
    args = ap.parse_args()
    subset = _pick(SOURCES, args.sources) != SOURCES or _pick(CLIPS, args.clips) != CLIPS
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as d:
        tmp = Path(d)
        if args.only in (None, "identity"):
            results["identity"] = run_identity(args, tmp)
        if args.only in (None, "speed"):
            results["speed"] = run_speed(args, tmp)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    # the full identity table and the speed rows go to swap.json (each part replaced on
    # its own, read just before writing: another run may have written the other part)
    for name, part in (("swap-subset.json" if subset else "swap.json", "identity"), ("swap.json", "speed")):
        if part in results:
            path = out / name
            old = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps(old | {part: results[part]}, indent=2))
    ok = all(r["meets"] for r in results.get("speed", [])) and results.get("identity", {}).get("summary", {}).get("meets", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
