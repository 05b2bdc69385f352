"""The public entry point: render(request, context) -> result.

The stages run in order, each a plain function of the one before:
media -> speech -> motion, face -> render -> composite -> encode.
Frames stream through render, composite and encode, so memory does not grow with the
length of the audio.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from .composite import paste
from .context import RunContext
from .errors import InputError, NoFaceError
from .face import geometry
from .face.detect import find_faces, select_face
from .face.models import FaceModels
from .face.track import FaceTrack, track_faces, track_image
from .finish.chain import Finisher
from .finish.options import (
    DEFAULT_LABEL_OPACITY,
    DEFAULT_LABEL_SIZE,
    DEFAULT_LABEL_TEXT,
    FinishOptions,
)
from .finish.provenance import provenance_metadata
from .framing import Framing, plan_framing
from .media.audio import load_audio
from .media.encode import VideoWriter, check_output_path
from .media.formats import classify
from .media.frame_cache import FrameCache
from .media.image import load_image
from .media.video import FrameReader, iter_frames, pingpong_index, probe_video
from .identity.shapes import footage_amplitude
from .lips.adapt import identity_lips
from .lips.model import lip_model
from .motion.build import MOUTH_MODES, build_motion
from .prefetch import ordered_map, prefetch
from .render.base import Renderer, get_renderer
from .render.headpose import HeadMotion
from .speech.analyse import analyse_speech
from .timing import StageTimer
from .types import Motion, Speech


@dataclass(kw_only=True)
class RenderRequest:
    """Everything a render needs; serialisable, so a job can store and replay it."""

    face: str | None = None  # photo or video of the person (None: the identity's own)
    audio: str | None = None  # speech recording (any supported audio or video file), or None with text
    text: str | None = None  # words to speak (text-to-speech, facetalk.tts) instead of audio
    voice: str | None = None  # voice of text: an espeak-ng voice (en-us, cmn) or a Piper .onnx; None: en-us
    rate: int | None = None  # words per minute of text (None: the voice's own, 175)
    pitch: int | None = None  # pitch of text, 0-100 (None: the voice's own, 50)
    output: str  # .mp4 to write
    identity: str | None = None  # "name" or "name@v2": a learnt person (mouth shapes, mouth bank, face)
    identity_face: str = "clip"  # face source of an identity without --face: "clip" (loop) or "photo"
    transcript: str | None = None  # the words spoken (text); enables forced alignment
    fps: float | None = None  # None: 25 for a photo, the video's own rate for a video
    size: tuple[int, int] | int | None = None  # (w, h), a long side, or None: the input's
    seed: int = 0
    still: bool = False  # no idle life (blinks, sway, breathing) for a photo
    face_index: int | None = None  # which face when several: None = largest
    renderer: str | None = None  # None: "retrieval" for an identity, else "warp"
    base: str | None = None  # renderer "neural": base model folder (None: the one the identity's adapter names)
    merge: bool = False  # renderer "neural": fuse the adapter into the weights (faster)
    device: str = "cpu"  # renderer "neural": "cpu" or "cuda"
    color_match: str = "mean"  # colour of the new mouth matched to the face around it: "none", "mean", "histogram"
    keep_expression: bool = False  # renderer "warp": speak from the face's own expression (a smile stays), not from rest
    crf: int = 18
    # finishing (facetalk.finish), per frame after the composite, in this order
    enhance: bool = False  # sharpen mouth and face detail (classical, no model)
    enhancer: str | None = None  # a face-restoration .onnx model (GFPGAN, CodeFormer) run on the face
    lut: str | None = None  # a .cube colour grade of the whole frame
    lut_strength: float = 1.0  # 0 (none) to 1 (the LUT as made)
    label: bool = True  # the visible "AI-generated" label (False: none, recorded in the metadata)
    label_text: str = DEFAULT_LABEL_TEXT
    label_corner: str = "bottom-right"  # bottom-right, bottom-left, top-right, top-left
    label_size: float = DEFAULT_LABEL_SIZE  # text height over frame height
    label_opacity: float = DEFAULT_LABEL_OPACITY
    mouth: str = "learned"  # lip motion: "learned" (the lip model), "rules" (mouth cues), or eval's "energy", "frozen"
    lip_model: str | None = None  # a lip model folder (`facetalk lipsync train`); None: the shipped one

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RenderResult:
    output: Path
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    speech_method: str
    frames_without_face: int
    renderer: str
    identity: str | None  # the version rendered ("name@v2"), None without one
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output"] = str(self.output)
        return d


# Frames rendered at once: OpenCV and numpy release the GIL, so on two cores two renders
# and the encoder share the machine instead of one render waiting on the other.
RENDER_WORKERS = 2




def render(
    request: RenderRequest, ctx: RunContext | None = None, models: FaceModels | None = None, registry=None,
    cache=None, speech: Speech | None = None,
) -> RenderResult:
    """Render a talking video. Raises FacetalkError subclasses for bad input.

    registry: the facetalk.identity.registry.Registry that request.identity is looked up
    in (None: the one under the facetalk home, FACETALK_HOME). cache: what a long-lived
    worker keeps between renders (facetalk.jobs.runner.JobCache: speech_key(audio,
    transcript) and speech(key, compute)), so one audio rendered for many identities is
    analysed once; None: nothing is kept. speech: the Speech of request.audio when it is
    already known (the text path passes that of the speech it synthesised)."""
    ctx = ctx or RunContext(seed=request.seed)
    if request.text is not None and speech is None:
        return _render_text(request, ctx, models, registry, cache)
    models = models or FaceModels()
    timer = StageTimer()
    t = time.perf_counter()

    # 1. check inputs and output before any heavy work
    output = Path(request.output)
    check_output_path(output)
    if request.mouth not in MOUTH_MODES + ("speech",):
        raise InputError(f"unknown lip motion {request.mouth!r}: use one of {', '.join(MOUTH_MODES)}")
    lips = lip_model(request.lip_model) if request.mouth in ("learned", "speech") else None  # checked now, not mid-render
    identity = _load_identity(request, registry)
    lips = identity_lips(lips, identity)  # the person's own lip head, if any (lips.adapt), checked now
    if identity is not None and not request.face:
        request = replace(request, face=str(identity.reference if request.identity_face == "photo" else identity.clip))
    if not request.face:
        raise InputError("give --face (a photo or video of the person) or --identity NAME")
    face_kind = classify(request.face, role="--face")
    if not request.audio:
        raise InputError("give --audio (the speech) or --text (words to speak)")
    classify(request.audio, role="--audio")
    renderer_name = request.renderer or ("retrieval" if identity is not None else "warp")
    renderer = get_renderer(renderer_name, **_renderer_options(renderer_name, request, identity, cache,
                                                              getattr(registry, "home", None)))
    if request.fps is not None and not 1 <= request.fps <= 120:
        raise InputError(f"--fps {request.fps} is out of range (1 to 120)")
    finish = FinishOptions.of(request)
    finisher = Finisher(finish)  # LUT and enhancer model loaded (and checked) now
    for note in finisher.notes:
        ctx.warn(note)
    is_photo = face_kind == "image"
    info = None if is_photo else probe_video(request.face)
    fps = request.fps or (25.0 if is_photo else info.fps)
    if speech is None:
        ctx.report("media", 0.0, "reading audio")
        audio = load_audio(request.audio)
    t = timer.add("decode", t)

    # 2. speech -> mouth cues
    if speech is not None:
        pass  # spoken from text: the speech came with its audio
    elif cache is None:
        speech = analyse_speech(audio, request.transcript, ctx)
    else:
        key = cache.speech_key(request.audio, request.transcript)
        speech = cache.speech(key, lambda: analyse_speech(audio, request.transcript, ctx))
    t = timer.add("speech", t)

    # 3. cues -> per-frame motion; the video frame count follows the audio
    n_frames = max(1, int(round(speech.duration * fps)))
    motion = build_motion(speech, fps, n_frames, seed=request.seed, still=request.still or not is_photo,
                          mouth=request.mouth, shapes=identity.shapes if identity is not None else None, lips=lips,
                          amplitude=footage_amplitude(identity.clip_landmarks, identity.neutral)
                          if identity is not None else None)
    t = timer.add("motion", t)

    if is_photo:
        frames, framing, missing = _photo_frames(request, models, renderer, motion, ctx, timer, finisher)
    else:
        # the identity's own clip was tracked when the identity was learnt
        known = identity.clip_landmarks if identity is not None and request.face == str(identity.clip) else None
        frames, framing, missing = _video_frames(request, info, models, renderer, motion, ctx, timer, known,
                                                finisher)

    metadata = provenance_metadata(renderer=renderer_name, identity=identity.ref if identity is not None else None,
                                   job_id=ctx.job_id, label=finish.label_description(), finish=finish.describe())
    with VideoWriter(
        output, framing.width, framing.height, fps, audio_path=request.audio, crf=request.crf, metadata=metadata
    ) as writer:
        t = time.perf_counter()
        for k, frame in enumerate(prefetch(frames)):
            t = timer.add("frames", t)
            writer.write(frame)
            t = timer.add("encode", t)
            if k % 10 == 0 or k == n_frames - 1:
                ctx.report("render", (k + 1) / n_frames, f"frame {k + 1}/{n_frames}")
        t = time.perf_counter()
    timer.add("encode", t)
    ctx.report("done", 1.0, str(output))

    if missing:
        ctx.warn(f"no face in {missing} of {n_frames} frames of {request.face}; those frames are unchanged")
    return RenderResult(
        output=output,
        width=framing.width,
        height=framing.height,
        fps=fps,
        n_frames=n_frames,
        duration=n_frames / fps,
        speech_method=speech.method,
        frames_without_face=missing,
        renderer=renderer_name,
        identity=identity.ref if identity is not None else None,
        warnings=list(ctx.warnings),
        timings=dict(timer.seconds),
    )


def _render_text(request: RenderRequest, ctx: RunContext, models, registry, cache) -> RenderResult:
    """The text path: speak request.text into a temporary WAV (facetalk.tts, sentence by
    sentence, with the engine's phone timings), then render it as any audio. Text, voice
    and output are checked before any audio is made."""
    import tempfile

    from .tts import DEFAULT_VOICE, check_text_request, speak_to_wav, speech_from_spoken

    prepared = check_text_request(request.audio, request.transcript, request.text, request.voice, request.rate,
                                  request.pitch)
    check_output_path(Path(request.output))
    if request.face:
        classify(request.face, role="--face")
    FinishOptions.of(request).check()
    with tempfile.TemporaryDirectory(prefix="facetalk-tts-") as tmp:
        t = time.perf_counter()
        spoken = speak_to_wav(request.text, request.voice or DEFAULT_VOICE, Path(tmp) / "speech.wav",
                              request.rate, request.pitch, ctx, prepared=prepared)
        speech = speech_from_spoken(spoken, ctx)
        seconds = time.perf_counter() - t
        result = render(replace(request, audio=str(spoken.path)), ctx, models, registry, cache, speech=speech)
    result.timings["speech"] = result.timings.get("speech", 0.0) + seconds
    return result


def _renderer_options(name: str, request: RenderRequest, identity, cache=None, home: Path | None = None) -> dict:
    """What each renderer is made with: retrieval an identity's mouth bank, neural a base
    model and the identity's adapter (in a worker, the base model its cache keeps loaded),
    warp whether to keep the face's expression."""
    if name == "retrieval" and identity is not None:
        return {"bank": identity.bank}
    if name == "neural":
        options = {"identity": identity, "base": request.base, "merge": request.merge, "device": request.device,
                   "home": home}
        if cache is not None:
            from .neural.fit import shared_base_dir

            base_dir = shared_base_dir(identity, request.base, home)
            if base_dir is not None:
                options["pool"] = cache.neural_pool(base_dir, request.device)
        return options
    if name == "warp":
        return {"keep_expression": request.keep_expression}
    return {}


def _load_identity(request: RenderRequest, registry):
    """The identity the request names, loaded and verified; None when it names none."""
    if not request.identity:
        return None
    if registry is None:
        from .home import facetalk_home
        from .identity.registry import Registry

        registry = Registry(facetalk_home())
    return registry.load(request.identity)


def _photo_frames(request, models, renderer: Renderer, motion: Motion, ctx: RunContext, timer: StageTimer,
                  finisher: Finisher | None = None):
    t = time.perf_counter()
    loaded = load_image(request.face)
    if loaded.note:
        ctx.warn(loaded.note)
    image = loaded.rgb
    t = timer.add("decode", t)
    ctx.report("face", 0.0, "finding the face")
    boxes = find_faces(models, image)
    if not boxes:
        raise NoFaceError(f"no face found in {request.face}; use a photo with one clear, frontal face")
    box = select_face(boxes, request.face_index)
    centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    framing = plan_framing(image.shape[1], image.shape[0], request.size, centre)
    image = framing.apply(image)
    landmarks = track_image(models, image, face_index=request.face_index, source=request.face)
    renderer.prepare(image, landmarks)
    renderer.plan(motion.mouth)
    t = timer.add("face", t)
    ctx.report("face", 1.0, "face ready")

    head = None if request.still else HeadMotion(image, landmarks)

    def make(k: int) -> np.ndarray:  # called from render worker threads
        ctx.check_cancelled()
        t = time.perf_counter()
        frame, lm = (image, landmarks) if head is None else head.apply(motion.head[k])
        t = timer.add("idle", t)
        patch = renderer.render(frame, lm, motion.mouth[k], float(motion.blink[k]), k=k)
        t = timer.add("render", t)
        out = paste(frame, patch, request.color_match) if patch is not None else frame
        t = timer.add("composite", t)
        if finisher is not None:  # paste made a new frame; the photo itself is shared
            out = finisher.apply(out, lm, k, in_place=patch is not None)
            timer.add("finish", t)
        return out

    return ordered_map(make, range(motion.n_frames), workers=RENDER_WORKERS), framing, 0


def _video_frames(request, info, models, renderer: Renderer, motion: Motion, ctx: RunContext, timer: StageTimer,
                  known: np.ndarray | None = None, finisher: Finisher | None = None):
    """Frames of a video source with the mouth re-rendered. known: (n, 68, 2) landmarks of
    the source's frames, already tracked (NaN rows: no face); None: track them here."""
    t = time.perf_counter()
    centre = _first_face_centre(request, models, info)
    framing = plan_framing(info.width, info.height, request.size, centre)
    t = timer.add("decode", t)

    # pass 1: track the face (landmarks only; frames are streamed, never kept)
    ctx.report("face", 0.0, "tracking the face")
    # only the part of the video the output shows is tracked: a short audio over a long
    # clip uses its beginning; a longer audio uses all of it (ping-pong)
    needed = int(np.ceil(motion.n_frames * info.fps / motion.fps)) + 1
    n_src = min(info.n_frames, needed)  # for progress; the track gives the real count

    def on_progress(i: int) -> None:
        ctx.report("face", min(1.0, i / max(1, n_src)), f"frame {i}/{n_src}")

    source = islice(iter_frames(request.face, framing.size, framing.crop), needed)  # cut and sized as decoded
    # keep the decoded frames for pass 2 (in memory when small, else on disk): no second decode, and
    # ping-pong never decodes backwards through long keyframe intervals
    cache = (FrameCache(framing.width, framing.height, expected=n_src)
             if FrameCache.fits(framing.width, framing.height, n_src) else None)
    if cache is not None:
        source = cache.tee(source)
    if known is None:
        track = track_faces(source, models, face_index=request.face_index, fps=info.fps, progress=on_progress)
    else:
        n_seen = sum(1 for _ in source)  # decoded into the cache all the same
        lm = framing.map_points(known[:n_seen])
        track = FaceTrack(landmarks=lm, raw=lm, present=np.isfinite(lm).all(axis=(1, 2)), fps=info.fps)
    n_src = len(track.present)
    if n_src == 0:
        raise InputError(f"no frames could be decoded from {request.face}")
    if not track.present.any():
        raise NoFaceError(f"no face found in any frame of {request.face}; use a video showing one clear face")
    if cache is not None:
        frame_at = cache.get
    else:
        reader = FrameReader(request.face)
        frame_at = lambda i: framing.apply(reader.get(i))
    ref = _reference_index(track)
    teeth = [(frame_at(i), track.landmarks[i]) for i in _open_mouth_indices(track)]
    renderer.prepare(frame_at(ref), track.landmarks[ref], teeth)
    renderer.plan(motion.mouth)
    t = timer.add("face", t)
    ctx.report("face", 1.0, f"face in {int(track.present.sum())} of {n_src} frames")

    # the source is sampled by time, so a 22.13 fps clip rendered at 25 fps keeps its pace;
    # audio longer than the video: ping-pong (forward, back, forward...), never a jump cut
    step = info.fps / motion.fps
    src_index = [pingpong_index(int(k * step + 1e-6), n_src) for k in range(motion.n_frames)]
    missing = int((~track.present[src_index]).sum())

    def sources() -> Iterator[tuple[int, int, np.ndarray]]:  # reading stays in order, on one thread
        try:
            for k, i in enumerate(src_index):
                t = time.perf_counter()
                frame = frame_at(i)
                timer.add("decode", t)
                yield k, i, frame
        finally:
            if cache is not None:
                cache.close()

    def make(item: tuple[int, int, np.ndarray]) -> np.ndarray:  # called from render worker threads
        k, i, frame = item
        ctx.check_cancelled()
        if not track.present[i]:  # left as filmed, but graded and labelled like the rest
            return frame if finisher is None else finisher.apply(frame, None, k)
        t = time.perf_counter()
        patch = renderer.render(frame, track.landmarks[i], motion.mouth[k], 0.0, k=k)
        t = timer.add("render", t)
        out = paste(frame, patch, request.color_match) if patch is not None else frame
        t = timer.add("composite", t)
        if finisher is not None:  # a source frame may be shared (the frame cache): changed only when pasted
            out = finisher.apply(out, track.landmarks[i], k, in_place=patch is not None)
            timer.add("finish", t)
        return out

    return ordered_map(make, sources(), workers=RENDER_WORKERS), framing, missing


def _first_face_centre(request, models: FaceModels, info) -> tuple[float, float] | None:
    """Centre of the face in the first frames, to keep it in view when cropping to an aspect."""
    if request.size is None or isinstance(request.size, int):
        return None
    for i, frame in enumerate(iter_frames(request.face)):
        boxes = find_faces(models, frame)
        if boxes:
            b = select_face(boxes, request.face_index)
            return ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)
        if i >= 50:
            break
    return None


def _reference_index(track: FaceTrack) -> int:
    """A frame with the mouth nearly closed and the head near its usual pose."""
    return geometry.neutral_frame_index(track.landmarks)  # the track has a face somewhere


def _open_mouth_indices(track: FaceTrack, count: int = 5) -> list[int]:
    """Frames where the mouth is clearly open (not the extreme, often blurred ones):
    where the person's own teeth are most likely to show."""
    idx = np.flatnonzero(track.present)
    openness = geometry.mouth_openness(track.landmarks[idx])
    if len(idx) == 0 or np.max(openness) < 0.08:
        return []
    order = idx[np.argsort(openness)[::-1]]
    # skip the widest few percent (motion blur, a yawn), keep well-spread frames
    start = len(order) // 20
    return [int(i) for i in order[start : start + count * 4 : 4]]


def speech_only(audio_path: str, transcript: str | None, ctx: RunContext | None = None) -> Speech:
    """The speech stage alone (for `facetalk cues`)."""
    ctx = ctx or RunContext()
    classify(audio_path, role="audio")
    return analyse_speech(load_audio(audio_path), transcript, ctx)


__all__ = ["Framing", "RenderRequest", "RenderResult", "render", "speech_only"]
