"""Speed and memory of `render`, stage by stage, against a no-processing floor.

Every case (and its floor) runs in a fresh process so its peak RSS (VmHWM) is its own.
Inputs are generated: a portrait padded to 16:9 (skimage's astronaut) or a talking video
(../shared/media/talking/presenter-1080p-7s.mp4 when present, else frames made from the
portrait), and speech looped from ../shared/media/speech/en-60s.wav (else espeak-ng).

The floor decodes the same source frames and re-encodes them with the same writer
(H.264 + the soundtrack) doing nothing in between: no render can be faster, so
"x floor" = render wall time / floor wall time is what the processing costs.

    python -m facetalk.eval.bench CHILD_SPEC_JSON   # one case, prints a JSON line (internal)
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import FacetalkError

DURATIONS: tuple[float, ...] = (15.0, 60.0, 600.0)
SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080))
INPUTS: tuple[str, ...] = ("photo", "video")
STAGES: tuple[str, ...] = ("decode", "face", "speech", "motion", "idle", "render", "composite", "encode")
MEDIA = Path(__file__).resolve().parents[3].parent / "shared" / "media"
SOURCE_SIZE = (1920, 1080)  # generated inputs are made at the largest output size
HEADER = (f"{'case':<22} {'frames':>6} {'wall s':>7} {'RTF':>6} {'fps':>6} {'RSS MB':>7} "
          f"{'floor s':>7} {'x floor':>7}  stage s per audio s")


def check_device(device: str) -> None:
    """Raise FacetalkError for --device cuda without torch and a CUDA GPU."""
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        raise FacetalkError("--device cuda: PyTorch is not installed and no stage uses a GPU yet; use --device cpu") from None
    if not torch.cuda.is_available():
        raise FacetalkError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")


def parse_wxh(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); FacetalkError otherwise (even sides, 16 to 7680)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise FacetalkError(f"--size '{text}' is not WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 7680) or w % 2 or h % 2:
        raise FacetalkError(f"--size '{text}': sides must be even, 16 to 7680 pixels")
    return w, h


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def make_speech(seconds: float, path: Path) -> Path:
    """Speech of the given length as 16-bit WAV: real English looped, or espeak-ng."""
    import soundfile

    src = MEDIA / "speech" / "en-60s.wav"
    if src.is_file():
        data, sr = soundfile.read(str(src), dtype="float32", always_2d=True)
        samples = data.mean(axis=1)
    else:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise FacetalkError(f"no speech to bench with: {src} is missing and espeak-ng is not installed")
        raw = path.with_suffix(".espeak.wav")
        text = "The quick brown fox jumps over the lazy dog. " * 4
        subprocess.run([exe, "-v", "en-us", "-w", str(raw), text], check=True, capture_output=True)
        data, sr = soundfile.read(str(raw), dtype="float32", always_2d=True)
        samples = data.mean(axis=1)
    reps = int(np.ceil(seconds * sr / len(samples)))
    soundfile.write(str(path), np.tile(samples, reps)[: int(round(seconds * sr))], sr, subtype="PCM_16")
    return path


def make_photo(path: Path, size: tuple[int, int] = SOURCE_SIZE) -> Path:
    """A portrait at `size`: the astronaut scaled to the height, edges extended to the width."""
    import cv2
    import skimage.data
    from PIL import Image

    w, h = size
    face = cv2.resize(skimage.data.astronaut(), (h, h), interpolation=cv2.INTER_CUBIC)
    left = (w - h) // 2
    canvas = cv2.copyMakeBorder(face, 0, 0, left, w - h - left, cv2.BORDER_REFLECT) if w > h else face[:, :w]
    Image.fromarray(canvas).save(path)
    return path


def make_video(path: Path, size: tuple[int, int] = SOURCE_SIZE) -> Path:
    """A talking video at `size` (a 720p render is measured from a 720p video, as a user's
    would be): the shared presenter clip re-encoded to that size, or 7 s made from the
    portrait when the shared media are absent."""
    from ..media.encode import VideoWriter

    src = MEDIA / "talking" / "presenter-1080p-7s.mp4"
    if src.is_file():
        from ..media.video import iter_frames, probe_video

        with VideoWriter(path, size[0], size[1], probe_video(src).fps, crf=16) as writer:
            for frame in iter_frames(src, size=size):
                writer.write(frame)
        return path
    from PIL import Image

    photo = np.asarray(Image.open(make_photo(path.with_suffix(".png"), size)).convert("RGB"))
    with VideoWriter(path, size[0], size[1], 25.0) as writer:
        for k in range(175):  # a slow sway so the tracker has real work
            dx = int(round(6 * np.sin(2 * np.pi * k / 50)))
            writer.write(np.ascontiguousarray(np.roll(photo, dx, axis=1)))
    return path


def cut_clip(src: Path, dst: Path, seconds: float, edit=None, crf: int = 12) -> Path:
    """The first `seconds` of a clip with its soundtrack, cropped to even sides (yuv420p);
    edit(k, rgb) may alter frames. Streams: nothing but one frame is held."""
    from itertools import islice

    from ..media.encode import VideoWriter
    from ..media.video import iter_frames, probe_video

    fps = probe_video(src).fps
    frames = islice(iter_frames(src), int(round(seconds * fps)))
    first = next(frames)
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    with VideoWriter(dst, w, h, fps, audio_path=src, crf=crf) as writer:
        for k, rgb in enumerate([first, *frames]):
            rgb = np.ascontiguousarray(rgb[:h, :w])
            writer.write(edit(k, rgb) if edit else rgb)
    return dst


def make_footage(path: Path, seconds: float, size: tuple[int, int] = (1280, 720)) -> Path:
    """Footage to learn an identity from: a real talking clip with its own soundtrack
    (../shared/media/talking/congressman-60s-256px.mp4) scaled to the frame height, the
    sides extended, looped (forward, back) to `seconds`, its soundtrack looped with it."""
    import cv2
    import soundfile

    from ..media.audio import load_audio
    from ..media.encode import VideoWriter
    from ..media.video import iter_frames, pingpong_index, probe_video

    src = MEDIA / "talking" / "congressman-60s-256px.mp4"
    if not src.is_file():
        raise FacetalkError(f"no footage to bench with: {src} is missing")
    info = probe_video(src)
    w, h = size
    frames = list(iter_frames(src))  # 256 px: small; each is scaled as it is written
    audio = load_audio(src)
    n = int(round(seconds * info.fps))
    # the soundtrack follows the frames: a reversed pass plays its audio reversed (timing is
    # what learning measures, and it stays in sync this way)
    hop = audio.sample_rate / info.fps
    pieces = []
    for k in range(n):
        i = pingpong_index(k, len(frames))
        forward = (k // (len(frames) - 1)) % 2 == 0 if len(frames) > 1 else True
        seg = audio.samples[int(i * hop): int((i + 1) * hop)]
        pieces.append(seg if forward else seg[::-1])
    wav = path.with_suffix(".wav")
    soundfile.write(str(wav), np.concatenate(pieces), audio.sample_rate, subtype="PCM_16")
    left = (w - h) // 2
    with VideoWriter(path, w, h, info.fps, audio_path=wav, crf=18) as writer:
        for k in range(n):
            face = cv2.resize(frames[pingpong_index(k, len(frames))], (h, h), interpolation=cv2.INTER_CUBIC)
            writer.write(np.ascontiguousarray(cv2.copyMakeBorder(face, 0, 0, left, w - h - left, cv2.BORDER_REFLECT)))
    wav.unlink()
    return path


def identity_case(footage: str, home: str) -> dict:
    """Learn an identity from footage once in this process: wall seconds, counts, peak RSS."""
    from ..identity.learn import create_identity
    from ..identity.registry import Registry

    t0 = time.perf_counter()
    result = create_identity(Registry(Path(home)), "bench", [footage])
    return {"wall_s": time.perf_counter() - t0, "frames": result.frames_total, "used": result.frames_used,
            "ref": result.ref, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_case(face: str, audio: str, size: tuple[int, int], out: str) -> dict:
    """Render once in this process: wall seconds, frames, stage seconds, peak RSS."""
    from ..pipeline import RenderRequest, render

    t0 = time.perf_counter()
    result = render(RenderRequest(face=face, audio=audio, output=out, size=tuple(size)))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "audio_s": result.duration, "frames": result.n_frames, "fps_out": result.fps,
            "size": f"{result.width}x{result.height}", "stages_s": result.timings, "peak_rss_mb": peak_rss_mb()}


def floor_case(face: str, audio: str, size: tuple[int, int], out: str, n_frames: int, fps: float) -> dict:
    """Decode the source frames and re-encode n_frames of them at `size` with the soundtrack,
    doing nothing else: the least any render of this case must spend."""
    import cv2

    from ..media.encode import VideoWriter
    from ..media.formats import kind_of
    from ..media.image import load_image
    from ..media.video import iter_frames

    w, h = size

    def fit(rgb: np.ndarray) -> np.ndarray:
        return rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    t0 = time.perf_counter()
    with VideoWriter(out, w, h, fps, audio_path=audio) as writer:
        if kind_of(face) == "image":
            still = fit(load_image(face).rgb)
            for _ in range(n_frames):
                writer.write(still)
        else:
            done = 0
            while done < n_frames:  # loop the source, as a render of longer audio does
                for rgb in iter_frames(face):
                    writer.write(fit(rgb))
                    done += 1
                    if done == n_frames:
                        break
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def _child(spec: dict) -> dict:
    if spec["what"] == "identity":
        return identity_case(spec["face"], spec["home"])
    if spec["what"] == "render":
        return render_case(spec["face"], spec["audio"], spec["size"], spec["out"])
    return floor_case(spec["face"], spec["audio"], spec["size"], spec["out"], spec["n_frames"], spec["fps"])


def run_isolated(spec: dict) -> dict:
    """Run one case in a fresh Python process; FacetalkError with its stderr if it fails."""
    proc = subprocess.run([sys.executable, "-m", "facetalk.eval.bench", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise FacetalkError(f"bench case {spec['what']} of {spec['face']} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(
    durations: tuple[float, ...] = DURATIONS,
    sizes: tuple[tuple[int, int], ...] = SIZES,
    inputs: tuple[str, ...] = INPUTS,
    on_row: Callable[[dict], None] | None = None,
    workdir: str | Path | None = None,
) -> list[dict]:
    """Every (input, duration, size) case and its floor; one dict per case (see format_row)."""
    with tempfile.TemporaryDirectory(prefix="facetalk-bench-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        photo = make_photo(work / "portrait.png") if "photo" in inputs else None
        videos: dict[tuple[int, int], Path] = {}  # one source video per output size
        rows = []
        for seconds in durations:
            audio = make_speech(seconds, work / f"speech-{seconds:g}s.wav")
            for w, h in sizes:
                for kind in inputs:
                    name = f"{kind} {seconds:g}s {w}x{h}"
                    if kind == "video" and (w, h) not in videos:
                        videos[(w, h)] = make_video(work / f"talking-{w}x{h}.mp4", (w, h))
                    face = photo if kind == "photo" else videos[(w, h)]
                    spec = {"what": "render", "face": str(face), "audio": str(audio), "size": [w, h],
                            "out": str(work / "render.mp4")}
                    try:
                        r = run_isolated(spec)
                        f = run_isolated({**spec, "what": "floor", "out": str(work / "floor.mp4"),
                                          "n_frames": r["frames"], "fps": r["fps_out"]})
                    except FacetalkError as e:
                        row = {"case": name, "error": str(e)}
                    else:
                        row = {"case": name, "input": kind, **r, "rtf": r["audio_s"] / r["wall_s"],
                               "fps": r["frames"] / r["wall_s"], "floor_s": f["wall_s"],
                               "floor_rss_mb": f["peak_rss_mb"], "x_floor": r["wall_s"] / f["wall_s"]}
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
        return rows


def format_row(row: dict) -> str:
    if "error" in row:
        return f"{row['case']:<22} failed: {row['error']}"
    stages = " ".join(f"{k} {row['stages_s'][k] / row['audio_s']:.3f}" for k in STAGES if k in row["stages_s"])
    return (f"{row['case']:<22} {row['frames']:>6} {row['wall_s']:>7.1f} {row['rtf']:>6.2f} {row['fps']:>6.1f} "
            f"{row['peak_rss_mb']:>7.0f} {row['floor_s']:>7.1f} {row['x_floor']:>7.1f}  {stages}")


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
