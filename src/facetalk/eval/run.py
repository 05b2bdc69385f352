"""Self-reenactment: regenerate a real talking clip from its own soundtrack and measure.

The real clip is the ground truth. Each mode renders a video from the clip's audio, and
every metric is computed on landmarks and pixels re-detected from the rendered file, the
same way as on the real clip:

- landmarks: face.track.track_faces with smoothing off (`FaceTrack.raw`) on both sides,
  so the metric sees what is in the pixels, not what a filter made of it;
- pixels: a second streaming pass reads generated and real frames in lockstep and
  measures mouth sharpness, face PSNR/SSIM on every `pixel_every`-th frame and face
  embeddings on every `embed_every`-th frame.

Only landmarks ((n, 68, 2) float32, ~0.5 KB a frame) and per-frame numbers are kept, never
frames, so memory does not grow with the clip's length. Decoding a clip costs a few
percent of fitting its landmarks, so reading it twice is cheaper than holding it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..context import RunContext
from ..errors import FacetalkError, InputError, NoFaceError
from ..face import geometry
from ..face.embed import face_embedding
from ..face.models import FaceModels
from ..face.track import track_faces
from ..media.audio import load_audio
from ..media.encode import VideoWriter
from ..media.formats import classify
from ..media.video import FrameReader, iter_frames, probe_video
from . import metrics

# Modes in the order they are reported. "video" is the product on a video, "photo" on one
# frame of it, "identity" a learnt person rendered from its own face clip, "identity-video"
# the same identity's mouths on the held-out frames (same head poses as the truth, so its
# figures compare with "video"'s); all of them move the lips with the learned lip model.
# "rules" is "photo"'s render (the same photo) with the older rule path from mouth cues,
# so the lip model and the rules are compared on the same clip; "rules", "energy" and
# "frozen" are the baselines every figure should be read against.
MODES: tuple[str, ...] = ("photo", "rules", "video", "identity", "identity-video", "energy", "frozen")
# What runs unless asked: "identity" learns the person from the clip's first part and
# moves every mode's evaluation to the part after it, so it is asked for explicitly.
DEFAULT_MODES: tuple[str, ...] = ("photo", "rules", "video", "energy", "frozen")
# Modes that need something not built yet, with the reason reported in place of numbers.
PLANNED_MODES: dict[str, str] = {}
_VIDEO_MODES = ("video", "identity-video", "energy", "frozen")  # frame k of the output is source frame k
_PHOTO_MODES = ("photo", "rules")  # rendered from one frame of the clip, the same photo.png
_MOUTH = {"photo": "learned", "rules": "rules", "video": "learned", "identity": "learned",
          "identity-video": "learned", "energy": "energy", "frozen": "frozen"}
IDENTITY_NAME = "eval"  # the identity built for mode "identity", in a registry under the work folder
MIN_TEST_SECONDS = 2.0  # held-out part the "identity" mode needs at least


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs.

    max_seconds: evaluate only the first seconds of the clip (None: all of it); with
    mode "identity", the first seconds after the part the identity learns from.
    train_seconds: with mode "identity", the identity learns from the clip's first
    train_seconds (None: two thirds of it) and every mode is measured on the rest.
    pixel_every / embed_every: frame stride of the pixel metrics and of face embeddings.
    max_lag: search range in frames (either way) of the best-lag r of mouth opening
    and width (the lag-0 r beside it is what a viewer sees).
    """

    max_seconds: float | None = None
    modes: tuple[str, ...] = DEFAULT_MODES
    train_seconds: float | None = None
    pixel_every: int = 5
    embed_every: int = 10
    max_lag: int = 10
    seed: int = 0


@dataclass
class RealClip:
    """The ground truth: the real clip as evaluated and what was measured on it.

    landmarks: (n, 68, 2) float32 raw landmarks, NaN where no face.
    sharpness: (n,) float64 mouth Laplacian variance on sampled frames, NaN elsewhere.
    embeddings: (m, 128) float32 of sampled frames; embedding: (128,) their mean.
    """

    video: Path  # the clip evaluated (a trimmed copy when max_seconds cut it)
    audio: Path  # its soundtrack as 16 kHz mono WAV
    source: Path  # the file the user gave
    fps: float
    width: int
    height: int
    landmarks: np.ndarray
    sharpness: np.ndarray
    embeddings: np.ndarray
    embedding: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def openness(self) -> np.ndarray:
        """(n,) inner-lip gap over inter-ocular distance, NaN where no face."""
        return metrics.openness_series(self.landmarks)


@dataclass
class ModeResult:
    """One mode's numbers. metrics maps a metric name to a float (NaN: not measurable)."""

    mode: str
    metrics: dict[str, float] = field(default_factory=dict)
    openness: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n,) generated, NaN where no face
    render_seconds: float = float("nan")
    timings: dict[str, float] = field(default_factory=dict)  # seconds per render stage
    speech_method: str = ""
    error: str | None = None  # why the mode has no numbers (its render failed)


@dataclass
class EvalResult:
    real: RealClip
    modes: dict[str, ModeResult]
    real_metrics: dict[str, float]  # the real clip measured against itself (identity spread)
    skipped: dict[str, str]  # planned modes not run, and why
    transcript: bool
    seconds: float  # wall time of the evaluation
    identity: dict | None = None  # how the "identity" mode's identity was built (frames, seconds, ref)
    max_lag: int = 10  # the best-lag r of opening and width looked this many frames either way


def evaluate_clip(
    video: str | Path,
    audio: str | Path | None = None,
    transcript: str | None = None,
    options: EvalOptions | None = None,
    models: FaceModels | None = None,
    ctx: RunContext | None = None,
    workdir: str | Path | None = None,
) -> EvalResult:
    """Render each mode from the clip's soundtrack and measure it against the clip.

    audio: the clip's own soundtrack when not in the file (None: the file's).
    workdir: where the trimmed clip, the photo and the renders go (None: a temporary
    folder removed afterwards). Raises InputError / NoFaceError for unusable clips.
    """
    options = options or EvalOptions()
    models = models or FaceModels()
    ctx = ctx or RunContext(seed=options.seed)
    for mode in options.modes:
        if mode in PLANNED_MODES:
            raise InputError(f"mode {mode!r} is {PLANNED_MODES[mode]}")
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}: use {', '.join(MODES)}")
    t0 = time.perf_counter()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="facetalk-eval-") as tmp:
            return _evaluate(Path(video), audio, transcript, options, models, ctx, Path(tmp), t0)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    return _evaluate(Path(video), audio, transcript, options, models, ctx, work, t0)


def _evaluate(video, audio, transcript, options, models, ctx, work: Path, t0: float) -> EvalResult:
    ctx.report("eval", 0.0, f"measuring {video.name}")
    start, built = 0, None
    registry = None
    if any(m.startswith("identity") for m in options.modes):
        if audio is not None:
            raise InputError("mode identity learns from the clip's own soundtrack: drop --audio")
        if transcript is not None:  # it covers the whole clip, not the held-out part
            ctx.warn("mode identity: the transcript is not used (it does not say where the held-out part starts)")
            transcript = None
        registry, start, built = build_eval_identity(video, work, models, options, ctx)
    real = prepare_real(video, audio, work, models, options, start=start)
    real_metrics = real_self_metrics(real)
    results: dict[str, ModeResult] = {}
    for i, mode in enumerate(options.modes):
        ctx.report("eval", (i + 0.5) / (len(options.modes) + 1), f"rendering {mode}")
        results[mode] = run_mode(mode, real, transcript, work, models, options, registry)
    skipped = {m: why for m, why in PLANNED_MODES.items() if m not in options.modes}
    ctx.report("eval", 1.0, "done")
    return EvalResult(real, results, real_metrics, skipped, transcript is not None, time.perf_counter() - t0, built,
                      options.max_lag)


def build_eval_identity(video: Path, work: Path, models: FaceModels, options: EvalOptions, ctx: RunContext):
    """Learn an identity from the clip's first part (train_seconds, default two thirds).

    Returns (registry, first held-out frame, a summary of the build)."""
    from ..identity.learn import create_identity
    from ..identity.registry import Registry

    classify(video, "video")
    info = probe_video(video)
    train = options.train_seconds if options.train_seconds is not None else info.duration * 2 / 3
    n_train = int(round(train * info.fps))
    if n_train < info.fps or info.n_frames - n_train < MIN_TEST_SECONDS * info.fps:
        raise InputError(f"{video} is too short to learn an identity from one part and test on another "
                         f"({info.duration:.1f} s; --train-seconds {train:.1f})")
    footage = _trim_video(video, work / "train.mp4", n_train, info.fps, audio=video)
    registry = Registry(work / "home")
    if registry.versions(IDENTITY_NAME):  # a kept work folder from an earlier run
        registry.remove_all(IDENTITY_NAME)
    t = time.perf_counter()
    created = create_identity(registry, IDENTITY_NAME, [str(footage)], ctx=ctx, models=models)
    built = {"ref": created.ref, "train_seconds": n_train / info.fps, "frames_used": created.frames_used,
             "frames_skipped": created.frames_skipped, "seconds": time.perf_counter() - t}
    return registry, n_train, built


def prepare_real(
    video: Path, audio: str | Path | None, work: Path, models: FaceModels, options: EvalOptions, start: int = 0
) -> RealClip:
    """Trim the clip if asked (from frame `start`), extract its soundtrack to WAV, measure
    its landmarks, mouth sharpness and reference embedding."""
    classify(video, "video")
    info = probe_video(video)
    audio_src = Path(audio) if audio is not None else video
    if audio is None and not info.has_audio:
        raise InputError(f"{video} has no soundtrack: give its speech with --audio")
    clip = video
    n_keep = info.n_frames - start
    if options.max_seconds is not None:
        if options.max_seconds <= 0:
            raise InputError(f"--max-seconds {options.max_seconds} must be positive")
        n_keep = min(n_keep, max(1, int(round(options.max_seconds * info.fps))))
    if start > 0 or n_keep < info.n_frames or info.width % 2 or info.height % 2:
        clip = _trim_video(video, work / "real.mp4", n_keep, info.fps, start=start)
    duration = n_keep / info.fps
    speech = load_audio(audio_src)
    first = int(round(start / info.fps * speech.sample_rate))
    wav = _write_wav(speech.samples[first : first + int(round(duration * speech.sample_rate))], speech.sample_rate,
                     work / "speech.wav")

    track = track_faces(iter_frames(clip), models, fps=info.fps, smooth=False)
    if not track.present.any():
        raise NoFaceError(f"no face found in any frame of {video}; evaluate a clip showing one clear face")
    lm = track.raw
    sharp, emb = _sample_pixels(iter_frames(clip), lm, models, options)
    embeddings = np.stack(emb) if emb else np.zeros((0, 128), np.float32)
    h, w = _frame_shape(clip)
    return RealClip(
        video=clip, audio=wav, source=video, fps=info.fps, width=w, height=h, landmarks=lm,
        sharpness=sharp, embeddings=embeddings,
        embedding=embeddings.mean(axis=0) if len(embeddings) else np.full(128, np.nan, np.float32),
    )


def real_self_metrics(real: RealClip) -> dict[str, float]:
    """The real clip's row: the comparison metrics at their perfect values by definition,
    and the spread of its own face embeddings around their mean (what identity figures
    of a generated video should be read against)."""
    ident = metrics.identity_distance(real.embeddings, real.embedding)
    return {
        "faces": float(metrics.valid_frames(real.landmarks).mean()),
        "openness_r": 1.0, "av_offset": 0.0, "offset_r": 1.0,
        "width_r": 1.0, "width_offset": 0.0, "width_offset_r": 1.0, "lmd": 0.0,
        "identity_mean": ident["mean"], "identity_max": ident["max"], "identity_drift": ident["drift"],
        "sharpness_ratio": 1.0, "jitter_ratio": 1.0, "psnr": float("inf"), "ssim": 1.0,
    }


def _frame_shape(path: Path) -> tuple[int, int]:
    first = next(iter_frames(path))
    return first.shape[0], first.shape[1]


def _trim_video(src: Path, dst: Path, n_frames: int, fps: float, start: int = 0, audio: Path | None = None) -> Path:
    """n_frames of src from frame `start`, re-encoded near-losslessly (even size); with
    the soundtrack of `audio` (cut to the same length; only from start 0) or none."""
    decoded = iter_frames(src)
    frames = islice(decoded, start, None)
    first = next(frames)
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    with VideoWriter(dst, w, h, fps, crf=8, audio_path=audio if start == 0 else None) as writer:
        writer.write(np.ascontiguousarray(first[:h, :w]))
        for k, rgb in enumerate(frames, start=1):
            if k >= n_frames:
                break
            writer.write(np.ascontiguousarray(rgb[:h, :w]))
    decoded.close()
    return dst


def _write_wav(samples: np.ndarray, rate: int, path: Path) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype="PCM_16")
    return path


def _sample_pixels(
    frames: Iterator[np.ndarray], lm: np.ndarray, models: FaceModels, options: EvalOptions
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mouth sharpness (n,) on every pixel_every-th frame and embeddings of every
    embed_every-th frame with a face; frames are streamed, none kept."""
    sharp = np.full(len(lm), np.nan)
    emb: list[np.ndarray] = []
    for k, rgb in enumerate(frames):
        if k >= len(lm):
            break
        if not np.isfinite(lm[k]).all():
            continue
        if k % options.pixel_every == 0:
            sharp[k] = metrics.mouth_sharpness([rgb], lm[k : k + 1])
        if k % options.embed_every == 0:
            emb.append(face_embedding(models, rgb, lm[k]))
    return sharp, emb


def pick_photo_frame(lm: np.ndarray) -> int:
    """Index of a frame with the mouth closed and the head in its usual, frontal pose
    (the same choice as a video render's reference frame). lm: (n, 68, 2), NaN rows
    where no face."""
    k = geometry.neutral_frame_index(lm)
    if k is None:
        raise NoFaceError("no frame of the clip has a face to take the photo from")
    return k


def _request(mode: str, real: RealClip, transcript: str | None, work: Path, seed: int):
    from ..pipeline import RenderRequest

    if mode.startswith("identity"):  # its own face clip, or ("identity-video") the held-out frames
        return RenderRequest(identity=IDENTITY_NAME, face=str(real.video) if mode == "identity-video" else None,
                             audio=str(real.audio), output=str(work / f"{mode}.mp4"), fps=real.fps,
                             size=(real.width, real.height), seed=seed, mouth=_MOUTH[mode])
    face = str(real.video)
    if mode in _PHOTO_MODES:  # the first of them writes the photo, the others reuse it
        face = str(work / "photo.png")
        if not Path(face).exists():
            from PIL import Image

            with FrameReader(real.video) as reader:
                Image.fromarray(reader.get(pick_photo_frame(real.landmarks))).save(face)
    return RenderRequest(
        face=face, audio=str(real.audio), output=str(work / f"{mode}.mp4"), transcript=transcript,
        fps=real.fps, size=(real.width, real.height), seed=seed, mouth=_MOUTH[mode],
    )


def run_mode(
    mode: str, real: RealClip, transcript: str | None, work: Path, models: FaceModels, options: EvalOptions,
    registry=None,
) -> ModeResult:
    """Render one mode and measure it; a render the input makes fail is reported, not raised.
    registry: where mode "identity" finds its identity."""
    from ..pipeline import render

    request = _request(mode, real, transcript, work, options.seed)
    t = time.perf_counter()
    try:
        result = render(request, RunContext(seed=options.seed), models, registry=registry)
    except FacetalkError as e:
        return ModeResult(mode, error=str(e))
    seconds = time.perf_counter() - t
    values, openness = measure_generated(Path(request.output), real, models, options, video_type=mode in _VIDEO_MODES)
    return ModeResult(mode, values, openness, seconds, dict(result.timings), result.speech_method)


def measure_generated(
    generated: Path, real: RealClip, models: FaceModels, options: EvalOptions, video_type: bool
) -> tuple[dict[str, float], np.ndarray]:
    """Every metric of a generated video against the real clip; also its (n,) openness.

    video_type: frame k of the generated video shows source frame k, so face PSNR/SSIM
    mean something (NaN otherwise).
    """
    info = probe_video(generated)
    if abs(info.fps - real.fps) > 0.01:
        raise InputError(f"{generated} runs at {info.fps:.3f} fps, the real clip at {real.fps:.3f}: render at the clip's rate")
    gen_lm = track_faces(iter_frames(generated), models, fps=real.fps, smooth=False).raw
    n = min(len(gen_lm), real.n_frames)
    gen_lm, real_lm = gen_lm[:n], real.landmarks[:n]
    gen_open, real_open = metrics.openness_series(gen_lm), metrics.openness_series(real_lm)
    gen_width, real_width = metrics.width_series(gen_lm), metrics.width_series(real_lm)
    lag, lag_r = metrics.av_offset(gen_open, real_open, options.max_lag)
    width_lag, width_lag_r = metrics.av_offset(gen_width, real_width, options.max_lag)
    pix = _paired_pixels(generated, real, gen_lm, models, options, video_type)
    ident = metrics.identity_distance(pix["embeddings"], real.embedding)
    real_sharp = np.nanmean(real.sharpness[:n][np.isfinite(pix["sharpness"])]) if np.isfinite(pix["sharpness"]).any() else np.nan
    values = {
        "faces": float(metrics.valid_frames(gen_lm).mean()) if n else float("nan"),
        # r at lag 0 (what a viewer sees) and at the best lag within max_lag (+ = late)
        "openness_r": metrics.pearson(gen_open, real_open),
        # how much the mouth moves against the person filmed (1 = as much); r alone
        # cannot tell a near-still mouth with a faint echo of the real one from lip-sync
        "openness_spread": _ratio(float(np.nanstd(gen_open)), float(np.nanstd(real_open))),
        "av_offset": float(lag),
        "offset_r": lag_r,
        "width_r": metrics.pearson(gen_width, real_width),
        "width_offset": float(width_lag),
        "width_offset_r": width_lag_r,
        "lmd": metrics.lmd(gen_lm, real_lm),
        "identity_mean": ident["mean"],
        "identity_max": ident["max"],
        "identity_drift": ident["drift"],
        "sharpness_ratio": _ratio(np.nanmean(pix["sharpness"]) if np.isfinite(pix["sharpness"]).any() else np.nan, real_sharp),
        "jitter_ratio": metrics.jitter_ratio(gen_lm, real_lm),
        "psnr": pix["psnr"],
        "ssim": pix["ssim"],
    }
    return values, gen_open


def _ratio(a: float, b: float) -> float:
    return float(a / b) if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")


def _paired_pixels(
    generated: Path, real: RealClip, gen_lm: np.ndarray, models: FaceModels, options: EvalOptions, video_type: bool
) -> dict:
    """One lockstep pass over generated and real frames.

    Sharpness is sampled on the frames where the real clip's sharpness was sampled and
    both have a face, so the ratio compares like with like. PSNR/SSIM use the real
    face's box; identical crops give PSNR inf (kept: a mean with inf is inf).
    """
    n = len(gen_lm)
    sharp = np.full(n, np.nan)
    emb: list[np.ndarray] = []
    psnr, ssim = [], []
    real_frames = iter_frames(real.video) if video_type else _nothing()
    for k, (gen, rl) in enumerate(zip(iter_frames(generated), _repeat_none(real_frames))):
        if k >= n:
            break
        g_ok = bool(np.isfinite(gen_lm[k]).all())
        r_ok = bool(np.isfinite(real.landmarks[k]).all())
        if g_ok and np.isfinite(real.sharpness[k]):
            sharp[k] = metrics.mouth_sharpness([gen], gen_lm[k : k + 1])
        if g_ok and k % options.embed_every == 0:
            emb.append(face_embedding(models, gen, gen_lm[k]))
        if video_type and rl is not None and r_ok and k % options.pixel_every == 0 and rl.shape == gen.shape:
            try:
                p, s = metrics.face_psnr_ssim(gen, rl, real.landmarks[k])
            except ValueError:  # face box too small for SSIM
                continue
            psnr.append(p)
            ssim.append(s)
    return {
        "sharpness": sharp,
        "embeddings": np.stack(emb) if emb else np.zeros((0, 128), np.float32),
        "psnr": float(np.mean(psnr)) if psnr else float("nan"),
        "ssim": float(np.mean(ssim)) if ssim else float("nan"),
    }


def _nothing() -> Iterator[np.ndarray]:
    return iter(())


def _repeat_none(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    """The frames, then None for ever (the generated side may run a frame longer)."""
    yield from frames
    while True:
        yield None


def list_clips(folder: str | Path) -> list[Path]:
    """Videos in a folder (not recursive), sorted by name. Raises InputError if none."""
    from ..media.formats import VIDEO_EXTENSIONS

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"--suite {d} is not a folder: give a folder of talking clips")
    clips = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not clips:
        raise InputError(f"no videos in {d}: put talking clips ({', '.join(VIDEO_EXTENSIONS)}) there")
    return clips


def transcript_beside(clip: Path) -> str | None:
    """Text of clip.txt next to a clip, if there is one (a suite's transcripts)."""
    txt = clip.with_suffix(".txt")
    return txt.read_text(encoding="utf-8-sig") if txt.is_file() else None


def evaluate_suite(
    folder: str | Path,
    options: EvalOptions | None = None,
    models: FaceModels | None = None,
    on_clip: Callable[[Path, EvalResult | None, str | None], None] | None = None,
    workdir: str | Path | None = None,
) -> list[tuple[Path, EvalResult | None, str | None]]:
    """evaluate_clip on every video in a folder; a clip that cannot be evaluated is
    reported with its error and the others go on. on_clip is called after each.
    workdir: keep each clip's renders in workdir/<clip name> (None: temporary)."""
    models = models or FaceModels()
    out = []
    for clip in list_clips(folder):
        keep = Path(workdir) / clip.stem if workdir is not None else None
        try:
            res, err = evaluate_clip(clip, transcript=transcript_beside(clip), options=options, models=models,
                                     workdir=keep), None
        except FacetalkError as e:
            res, err = None, str(e)
        out.append((clip, res, err))
        if on_clip is not None:
            on_clip(clip, res, err)
    return out
