"""The face swap entry point: swap(request, ctx, models) -> SwapResult.

Photo target: find the face(s), swap, finish, write a PNG or JPEG (atomically).
Video target, one face (the largest, or an index): one pass. The face is tracked as
the frames are decoded and its landmarks smoothed a fraction of a second behind
(facetalk.face.track.LandmarkSmoother), holding only the frames in between; so
swapping starts at once instead of after a whole tracking pass, and no frame is kept
or decoded twice.
Several faces (all, or the one like --reference): each is tracked over the whole video
first (facetalk.swap.targets), the decoded frames kept in memory when they fit (else
decoded again), then the frames are read again.
Either way, per frame: on the reading thread, per face, the smoothed skin colour is
updated and the source picked by pose; on two worker threads each face is warped,
coloured, masked and blended and the frame finished; frames are encoded in order with
the target's sound. Frames where no target face was found pass through unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import replacing
from ..context import RunContext
from ..errors import InputError, NoFaceError, OutputError
from ..face import geometry as geo
from ..face.detect import find_faces, select_face
from ..face.models import FaceModels
from ..face.track import LandmarkSmoother, follow_face
from ..finish.options import (
    DEFAULT_LABEL_OPACITY,
    DEFAULT_LABEL_SIZE,
    DEFAULT_LABEL_TEXT,
    FinishOptions,
)
from ..framing import plan_framing
from ..media.encode import VideoWriter, check_output_path
from ..media.formats import classify, error_reason
from ..media.image import load_image
from ..media.video import iter_frames, probe_video
from ..prefetch import ordered_map, prefetch
from ..timing import StageTimer
from . import mesh
from .choices import BLEND_MODES, COLOR_MODES
from .colour import StableColour, face_stats, transfer_lut
from .frame import SwapStyle, swap_face
from .source import SourceFace, load_source, pick_source, prepare_source
from .targets import DETECT_EVERY, image_faces, parse_target_face, track_targets

IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg")
MEMORY_CAP = 3 << 30  # bytes of decoded frames kept between the passes (720p: ~1100 frames)
WORKERS = 2  # OpenCV releases the GIL: two frames are swapped at once, the encoder takes the rest


@dataclass(kw_only=True)
class SwapRequest:
    """Everything a swap needs; serialisable like pipeline.RenderRequest."""

    sources: list[str] = field(default_factory=list)  # photos of the person to put in
    identity: str | None = None  # or a learnt identity ("name", "name@v2"): its reference photo
    target: str  # video (mp4, mov, mkv, webm) or photo (jpg, png, webp) to put the face into
    output: str  # .mp4 for a video target; .png / .jpg for a photo target
    target_face: str | int = "largest"  # "largest", "all", or a face index (0 = largest)
    reference: str | None = None  # photo: swap the target face most like this person
    mask_padding: float = 0.0  # the mask's outline pulled in by this fraction of the face width
    mask_blur: float = 0.08  # feather width, fraction of the face width
    color_match: str = "mean"  # "none", "mean" (Lab mean and spread), "histogram"
    blend: str = "feather"  # "feather" or "poisson"
    size: tuple[int, int] | int | None = None  # (w, h), a long side, or None: the target's
    crf: int = 18
    # finishing (facetalk.finish): face detail, a LUT grade, the visible label
    enhance: bool = False
    enhancer: str | None = None  # a face-restoration .onnx model (GFPGAN, CodeFormer) run on each face
    device: str = "cpu"  # where the --enhancer model runs: "cpu" or "cuda"
    lut: str | None = None
    lut_strength: float = 1.0
    label: bool = True
    label_text: str = DEFAULT_LABEL_TEXT
    label_corner: str = "bottom-right"
    label_size: float = DEFAULT_LABEL_SIZE  # text height over frame height
    label_opacity: float = DEFAULT_LABEL_OPACITY

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SwapResult:
    output: Path
    width: int
    height: int
    fps: float | None  # None for a photo
    n_frames: int
    duration: float
    faces: int  # target faces followed
    frames_swapped: int
    frames_without_face: int
    sources: list[str]
    identity: str | None
    metadata: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output"] = str(self.output)
        return d




def _check_request(request: SwapRequest) -> tuple[str, str | int]:
    """The target's kind and the parsed --target-face; InputError/OutputError first."""
    if not request.sources and not request.identity:
        raise InputError("give --source PHOTO (the face to put in) or --identity NAME")
    if request.sources and request.identity:
        raise InputError("give either --source photos or --identity, not both")
    for s in request.sources:
        classify(s, role="image", option="--source")
    kind = classify(request.target, role="face", option="--target")
    if request.reference is not None:
        classify(request.reference, role="image", option="--reference")
    mode = parse_target_face(request.target_face)
    if request.reference is not None and mode not in ("largest",):
        raise InputError("--reference picks the target face itself: leave out --target-face")
    if request.color_match not in COLOR_MODES:
        raise InputError(f"unknown --color-match {request.color_match!r}: use one of {', '.join(COLOR_MODES)}")
    if request.blend not in BLEND_MODES:
        raise InputError(f"unknown --blend {request.blend!r}: use one of {', '.join(BLEND_MODES)}")
    if not 0.0 <= request.mask_padding <= 0.4:
        raise InputError(f"--mask-padding {request.mask_padding:g} is out of range: 0 to 0.4 of the face width")
    if not 0.0 <= request.mask_blur <= 0.5:
        raise InputError(f"--mask-blur {request.mask_blur:g} is out of range: 0 to 0.5 of the face width")
    FinishOptions.of(request).check()  # label size, opacity, LUT and --enhancer files: before the heavy work
    out = Path(request.output)
    if kind == "image":
        _check_image_output(out, request.target)
    else:
        check_output_path(out)
    return kind, mode


def _check_image_output(path: Path, target: str) -> None:
    if path.suffix.lower() not in IMAGE_OUTPUTS:
        raise OutputError(f"--target {target} is a photo, so the output is one too: give -o ending in .png or .jpg "
                          f"(not {path.name})")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise OutputError(f"folder {folder} for the output does not exist: create it or choose another")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder: give a file name ending in {path.suffix.lower() or '.png'}")


def _load_sources(request: SwapRequest, models: FaceModels, ctx: RunContext, registry) -> tuple[list[SourceFace], str | None]:
    if request.identity:
        if registry is None:
            from ..home import facetalk_home
            from ..identity.registry import Registry

            registry = Registry(facetalk_home())
        identity = registry.load(request.identity)
        source, notes = load_source(identity.reference, models)
        source = prepare_source(source.image, source.landmarks, identity.ref)
        return [source], identity.ref
    sources = []
    for path in request.sources:
        source, notes = load_source(path, models)
        for note in notes:
            ctx.warn(note)
        sources.append(source)
    return sources, None


def _reference_embedding(request: SwapRequest, models: FaceModels) -> np.ndarray | None:
    if request.reference is None:
        return None
    from ..face.embed import face_embedding
    from ..face.track import track_image

    rgb = load_image(request.reference).rgb
    lm = track_image(models, rgb, source=f"--reference {request.reference}")
    return face_embedding(models, rgb, lm)


def _finisher(request: SwapRequest, width: int, height: int):
    from ..finish import Finisher

    options = FinishOptions.of(request)
    return Finisher(options, width, height), options


def _metadata(options, sources: list[SourceFace], identity: str | None, target: str) -> dict[str, str]:
    from ..finish import provenance_metadata

    tags = provenance_metadata(renderer="swap", identity=identity, label=options.label_description(),
                               finish=options.describe())
    tags["swap_sources"] = ", ".join(s.name for s in sources)
    tags["swap_target"] = Path(target).name
    return tags


def swap(request: SwapRequest, ctx: RunContext | None = None, models: FaceModels | None = None,
         registry=None) -> SwapResult:
    """Put the source face into the target. Raises FacetalkError subclasses for bad input
    (before any heavy work where it can be known then). registry: where --identity is
    looked up (None: the facetalk home's)."""
    ctx = ctx or RunContext()
    models = models or FaceModels()
    timer = StageTimer()
    t = time.perf_counter()
    kind, mode = _check_request(request)
    ctx.report("source", 0.0, "finding the source face")
    sources, identity = _load_sources(request, models, ctx, registry)
    reference = _reference_embedding(request, models)
    style = SwapStyle(mask_padding=request.mask_padding, mask_blur=request.mask_blur, blend=request.blend)
    timer.add("source", t)
    ctx.report("source", 1.0, f"{len(sources)} source face{'s' if len(sources) != 1 else ''}")
    if kind == "image":
        return _swap_image(request, mode, sources, identity, reference, style, models, ctx, timer)
    return _swap_video(request, mode, sources, identity, reference, style, models, ctx, timer)


def _swap_faces(frame: np.ndarray, faces: list, sources, style) -> int:
    """Swap each (landmarks, source index, colour curves, source level or None) into frame
    in place; returns how many were swapped."""
    return sum(swap_face(frame, lm, sources[s], lut, style, level) for lm, s, lut, level in faces)


def _swap_image(request, mode, sources, identity, reference, style, models, ctx, timer) -> SwapResult:
    t = time.perf_counter()
    loaded = load_image(request.target)
    if loaded.note:
        ctx.warn(loaded.note)
    rgb = loaded.rgb
    if request.size is not None:
        centre = None
        boxes = find_faces(models, rgb)
        if boxes and not isinstance(request.size, int):
            centre = boxes[0].centre
        rgb = plan_framing(rgb.shape[1], rgb.shape[0], request.size, centre).apply(rgb)
    faces = image_faces(models, rgb, mode, reference, Path(request.target).name, ctx.warn)
    t = timer.add("face", t)
    finisher, options = _finisher(request, rgb.shape[1], rgb.shape[0])
    for note in finisher.notes:
        ctx.warn(note)
    out = rgb.copy()
    jobs = []
    for lm in faces:
        pts = mesh.with_forehead(lm)
        s = pick_source(sources, mesh.pose(lm)[0], None)
        lut = transfer_lut(sources[s].stats, face_stats(rgb, pts), request.color_match)
        jobs.append((lm, s, lut, None))
    swapped = _swap_faces(out, jobs, sources, style)
    t = timer.add("swap", t)
    out = finisher.apply(out, faces[0] if faces else None, 0, in_place=True)
    metadata = _metadata(options, sources, identity, request.target)
    _write_image(Path(request.output), out, metadata)
    timer.add("encode", t)
    ctx.report("done", 1.0, str(request.output))
    return SwapResult(
        output=Path(request.output), width=out.shape[1], height=out.shape[0], fps=None, n_frames=1, duration=0.0,
        faces=len(faces), frames_swapped=int(swapped > 0), frames_without_face=int(swapped == 0),
        sources=[s.name for s in sources], identity=identity, metadata=metadata, warnings=list(ctx.warnings),
        timings=dict(timer.seconds),
    )


def _write_image(path: Path, rgb: np.ndarray, metadata: dict[str, str]) -> None:
    """PNG (metadata as text chunks) or JPEG (quality 95, the sentence as its comment),
    written under a hidden temporary name and renamed into place."""
    from PIL import Image, PngImagePlugin

    image = Image.fromarray(rgb)
    try:
        with replacing(path.absolute(), keep_suffix=True) as tmp:
            if path.suffix.lower() == ".png":
                info = PngImagePlugin.PngInfo()
                for key, value in metadata.items():
                    info.add_itxt(key, value)
                image.save(tmp, format="PNG", pnginfo=info)
            else:
                image.save(tmp, format="JPEG", quality=95, comment=metadata["comment"].encode())
    except OSError as e:
        raise OutputError(f"cannot write {path}: {error_reason(e)} (choose another output folder)") from e


def _first_face_centre(target: str, models: FaceModels) -> tuple[float, float] | None:
    for i, frame in enumerate(iter_frames(target)):
        boxes = find_faces(models, frame)
        if boxes:
            return select_face(boxes).centre
        if i >= 50:
            break
    return None


def _memory_budget() -> int:
    """Bytes of decoded frames kept for the second pass: up to a quarter of the memory
    available now, at most MEMORY_CAP."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 0
    return int(min(MEMORY_CAP, available // 4))


def _decoded(path: str, framing) -> Iterator[np.ndarray]:
    """The video's frames, cut and sized as they are decoded, read-only (they are shared
    by the tracker, the colour pass and the workers)."""
    for frame in iter_frames(path, framing.size, framing.crop):
        frame.flags.writeable = False
        yield frame


def _follow_streamed(path: str, framing, models: FaceModels, mode: str | int, fps: float, name: str,
                     timer: StageTimer) -> Iterator[tuple[int, np.ndarray, list]]:
    """(frame index, frame, [smoothed landmarks or None]) for every frame in order, the
    one face tracked and smoothed as the frames are decoded (on a helper thread); only
    the frames the smoother has not given out yet are held. Raises NoFaceError at the
    end when no frame had the face."""
    held: dict[int, np.ndarray] = {}

    def hold(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for k, frame in enumerate(frames):
            held[k] = frame
            yield frame

    smoother = LandmarkSmoother(fps)
    fits = follow_face(hold(prefetch(_decoded(path, framing), depth=8)), models, detect_every=DETECT_EVERY,
                       face_index=None if mode == "largest" else int(mode), fps=fps)
    found = False
    t = time.perf_counter()
    for lm in fits:
        ready = smoother.push(lm)
        t = timer.add("face", t)
        for k, smoothed in ready:
            found = found or smoothed is not None
            yield k, held.pop(k), [smoothed]
        t = time.perf_counter()
    for k, smoothed in smoother.finish():
        found = found or smoothed is not None
        yield k, held.pop(k), [smoothed]
    if not found:
        raise NoFaceError(f"no face found in any frame of --target {name}; use a video showing a clear face")


class _FrameSource:
    """Passes over the framed frames of a video. Each call starts a new pass, decoded on
    a helper thread (prefetch: decoding overlaps the tracking or swapping that consumes
    the frames). The first complete pass keeps the frames in memory when they fit
    _memory_budget(); later passes then read them from there."""

    def __init__(self, path: str, framing, n_frames: int) -> None:
        self.path, self.framing = path, framing
        self.keep = n_frames * framing.width * framing.height * 3 <= _memory_budget()
        self.stored: list[np.ndarray] = []
        self.complete = False

    def __call__(self) -> Iterator[np.ndarray]:
        if self.complete:
            yield from self.stored
            return
        n = 0
        for n, frame in enumerate(prefetch(_decoded(self.path, self.framing), depth=8), 1):
            if self.keep and n > len(self.stored):
                self.stored.append(frame)
            yield frame
        self.complete = self.keep and n == len(self.stored)

    def close(self) -> None:
        self.stored.clear()


def _swap_video(request, mode, sources, identity, reference, style, models, ctx, timer) -> SwapResult:
    t = time.perf_counter()
    info = probe_video(request.target)
    centre = _first_face_centre(request.target, models) if isinstance(request.size, tuple) else None
    framing = plan_framing(info.width, info.height, request.size, centre)
    finisher, options = _finisher(request, framing.width, framing.height)
    for note in finisher.notes:
        ctx.warn(note)
    t = timer.add("decode", t)

    name = Path(request.target).name
    frames = None
    try:
        if mode != "all" and reference is None:
            ctx.report("face", 0.0, "following the face")
            faced = _follow_streamed(request.target, framing, models, mode, info.fps, name, timer)
            n_faces = 1
        else:
            # each face tracked over the whole video first; the first pass keeps the frames
            # in memory for the last when they fit (else it decodes again: at 720p decoding
            # costs ~4 ms a frame, less than writing to a disk cache and reading it back)
            frames = _FrameSource(request.target, framing, info.n_frames)

            def on_track(j: int, n: int, i: int) -> None:
                if i % 10 == 0:
                    ctx.report("face", min(1.0, (j + i / max(1, info.n_frames)) / n), f"frame {i}/{info.n_frames}")

            tracks = track_targets(frames, models, mode, reference, info.fps, name, on_track, ctx.warn)
            t = timer.add("face", t)
            present = np.any([tr.present for tr in tracks], axis=0)
            ctx.report("face", 1.0, f"face in {int(present.sum())} of {len(present)} frames")
            faced = ((k, frame, [tr.landmarks[k] if tr.present[k] else None for tr in tracks])
                     for k, frame in enumerate(frames()))
            n_faces = len(tracks)
        metadata = _metadata(options, sources, identity, request.target)
        colours = [StableColour(info.fps) for _ in range(n_faces)]
        chosen: list[int | None] = [None] * n_faces
        levels: list[int | None] = [None] * n_faces

        def items() -> Iterator[tuple[int, np.ndarray, list]]:  # in frame order, on one thread
            t = time.perf_counter()
            for k, frame, landmarks in faced:
                faces = []
                for j, lm in enumerate(landmarks):
                    if lm is None:
                        continue
                    s = pick_source(sources, mesh.pose(lm)[0], chosen[j])
                    levels[j] = sources[s].level_index(geo.interocular(lm), levels[j] if s == chosen[j] else None)
                    chosen[j] = s
                    lut = None
                    if request.color_match != "none":
                        stats = colours[j].update(face_stats(frame, mesh.with_forehead(lm)))
                        lut = transfer_lut(sources[chosen[j]].stats, stats, request.color_match)
                    faces.append((lm, chosen[j], lut, levels[j]))
                t = timer.add("decode", t)
                yield k, frame, faces
                t = time.perf_counter()

        def make(item) -> tuple[np.ndarray, int]:  # on worker threads
            k, frame, faces = item
            ctx.check_cancelled()
            t = time.perf_counter()
            out = frame.copy()
            swapped = _swap_faces(out, faces, sources, style)
            t = timer.add("swap", t)
            out = finisher.apply(out, faces[0][0] if faces else None, k, in_place=True)
            timer.add("finish", t)
            return out, swapped

        audio = request.target if info.has_audio else None
        swapped_frames = n_frames = 0
        with VideoWriter(request.output, framing.width, framing.height, info.fps, audio_path=audio,
                         crf=request.crf, metadata=metadata) as writer:
            t = time.perf_counter()
            for n_frames, (frame, swapped) in enumerate(prefetch(ordered_map(make, items(), workers=WORKERS)), 1):
                t = timer.add("frames", t)
                writer.write(frame)
                swapped_frames += swapped > 0
                t = timer.add("encode", t)
                if n_frames % 10 == 1:  # the header's count may be a little off: never past 1
                    ctx.report("swap", min(1.0, n_frames / max(1, info.n_frames)), f"frame {n_frames}/{info.n_frames}")
            t = time.perf_counter()
        timer.add("encode", t)
    finally:
        if frames is not None:
            frames.close()
    ctx.report("done", 1.0, str(request.output))
    missing = n_frames - swapped_frames
    if missing:
        ctx.warn(f"no target face swapped in {missing} of {n_frames} frames of {request.target}; "
                 "those frames are unchanged")
    return SwapResult(
        output=Path(request.output), width=framing.width, height=framing.height, fps=info.fps, n_frames=n_frames,
        duration=n_frames / info.fps, faces=n_faces, frames_swapped=swapped_frames, frames_without_face=missing,
        sources=[s.name for s in sources], identity=identity, metadata=metadata, warnings=list(ctx.warnings),
        timings=dict(timer.seconds),
    )
