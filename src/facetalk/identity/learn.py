"""Learn an identity from a person's footage: `facetalk identity create`.

Per footage file, two streaming passes (frames are never all held):
1. track the face (landmarks on every frame);
2. judge each frame (blur, a turned head, occlusion, another person), sample face
   embeddings, and cut aligned mouth crops of the frames picked for the bank.
Then, from what was kept: the speech of the footage aligned to mouth cues, the person's
own shape table fitted to their measured mouth motion (identity.shapes), the person's own
lip head on the lip model (lips.adapt: their sound against their mouth, when it helps on
held-out parts of the footage), the reference frame, a clip of the footage to loop as the
face source, and a new registry version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from ..context import RunContext
from ..errors import InputError, NoFaceError
from ..face import geometry
from ..face.embed import SAME_PERSON, embedding_distance, face_embedding
from ..face.models import FaceModels
from ..face.track import track_faces
from ..media.audio import load_audio
from ..media.encode import VideoWriter
from ..media.formats import classify
from ..media.video import FrameReader, iter_frames, probe_video
from ..render.mouth_shape import neutral_from
from ..lips.adapt import HeadFit, save_head
from ..speech.analyse import analyse_speech
from ..types import Speech
from . import model
from .bank import BOUNDS, MAX_SCALE, MouthBank, extract_crop, save_bank
from .shapes import fit_shapes, frame_vectors, gap_and_width

SKIP_REASONS = ("no_face", "blur", "turned", "occluded", "other_person")


@dataclass(frozen=True)
class LearnSettings:
    """How footage is judged and what is kept. Stored in identity.json."""

    max_bank: int = 1200  # mouth crops kept (~45 KB each at full scale)
    run: int = 4  # crops are kept in runs of consecutive frames, so retrieval can follow them
    clip_seconds: float = 10.0  # length of the face-source clip cut from the footage
    embed_every_s: float = 1.0  # face embeddings sampled this often (dlib: ~50 ms each)
    max_turn: float = 0.22  # nose off the cheek midline (share of half face width) vs the usual pose
    blur_ratio: float = 0.35  # mouth sharpness below this share of the footage's median: blurred
    occlusion_colour: float = 28.0  # Lab distance of the lower face from its usual colour
    occlusion_jump: float = 0.06  # raw lip landmarks off their smoothed track (IOD): unstable fit
    other_person: float = SAME_PERSON  # embedding distance from the person's own

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class CreateResult:
    ref: str
    version: int
    frames_total: int
    frames_used: int
    frames_skipped: dict[str, int]
    seconds: float
    shape_rms: tuple[float, float]  # residual of the generic and of the learnt shape table
    warnings: list[str] = field(default_factory=list)
    lips: str = ""  # the lip head kept, or why the generic lip model is used


@dataclass
class _Footage:
    """What was learnt from one footage file."""

    path: Path
    fps: float
    landmarks: np.ndarray  # (n, 68, 2) smoothed, NaN where no face
    reasons: np.ndarray  # (n,) int8: -1 usable, else index into SKIP_REASONS
    speech: Speech | None
    embeddings: list[tuple[int, np.ndarray]]  # (frame, embedding) samples
    crops: dict[int, tuple[np.ndarray, np.ndarray]]  # frame -> (crop, canonical landmarks)

    @property
    def usable(self) -> np.ndarray:
        return self.reasons < 0


def create_identity(
    registry,
    name: str,
    footage: list[str],
    transcripts: list[str | None] | None = None,
    consent: str | None = None,
    allow_mixed: bool = False,
    ctx: RunContext | None = None,
    models: FaceModels | None = None,
    settings: LearnSettings | None = None,
    lip_model=None,
) -> CreateResult:
    """Analyse footage of one person and write a new version of identity `name`.

    registry: a facetalk.identity.registry.Registry. transcripts: the words of each
    footage file (same order) or None. lip_model: the LipModel the person's lip head is
    fitted on (None: the shipped one). Raises InputError / NoFaceError for unusable
    footage; nothing is written unless the whole version is.
    """
    ctx = ctx or RunContext()
    models = models or FaceModels()
    settings = settings or LearnSettings()
    t0 = time.perf_counter()
    if not footage:
        raise InputError("give at least one --footage video of the person talking")
    transcripts = list(transcripts) if transcripts else [None] * len(footage)
    if len(transcripts) != len(footage):
        raise InputError(f"{len(transcripts)} transcripts for {len(footage)} footage files: give one per --footage, in order")
    for f in footage:
        classify(f, role="--footage")

    clips = [_analyse(Path(f), t, i, len(footage), ctx, models, settings) for i, (f, t) in enumerate(zip(footage, transcripts))]
    reference_embedding = _check_person(clips, allow_mixed, settings, ctx)
    total = sum(len(c.reasons) for c in clips)
    used = sum(int(c.usable.sum()) for c in clips)
    skipped = {r: sum(int((c.reasons == k).sum()) for c in clips) for k, r in enumerate(SKIP_REASONS)}
    if used < 25:
        raise NoFaceError(f"only {used} usable frames in the footage ({_skips_text(skipped)}): "
                          "give footage with the face clear, frontal and in focus")

    ctx.report("identity", 0.85, "fitting the person's mouth shapes")
    home_clip = max(range(len(clips)), key=lambda i: int(clips[i].usable.sum()))
    ref_clip = clips[home_clip]
    ref_frame = geometry.neutral_frame_index(np.where(ref_clip.usable[:, None, None], ref_clip.landmarks, np.nan))
    neutral = neutral_from(ref_clip.landmarks[ref_frame])
    fit = fit_shapes([(c.speech, frame_vectors(c.landmarks, c.usable, neutral), c.fps)
                      for c in clips if c.speech is not None])
    bank = _build_bank(clips, settings, home_clip)
    start, stop = _clip_window(ref_clip, settings)
    ctx.report("identity", 0.87, "fitting the person's lip head")
    lips = fit_lips([(c.speech.mel if c.speech is not None else None, c.fps, c.landmarks, c.usable, c.path.name)
                     for c in clips], lip_model)

    with registry.stage(name) as stage:
        ctx.report("identity", 0.9, "writing the face clip")
        _write_clip(ref_clip, start, stop, stage.path / model.CLIP_FILE)
        with FrameReader(ref_clip.path) as reader:
            cv2.imwrite(str(stage.path / model.REFERENCE_FILE), reader.get(ref_frame)[..., ::-1])
        save_bank(bank, stage.path / model.BANK_FILE)
        from safetensors.numpy import save_file

        embs = np.stack([e for c in clips for k, e in c.embeddings if c.usable[k]]).astype(np.float32)
        save_file({"embedding": reference_embedding.astype(np.float32), "embeddings": embs,
                   "neutral": neutral.astype(np.float32),
                   "clip_landmarks": np.ascontiguousarray(ref_clip.landmarks[start:stop], dtype=np.float32)},
                  str(stage.path / model.FACE_FILE))
        if lips.head is not None:
            save_head(lips.head, stage.path / model.LIPS_HEAD_FILE)
        stage.manifest.update({
            "consent": consent,
            "footage": [_file_record(c.path) | {"frames": len(c.reasons), "fps": c.fps,
                                                 "speech": c.speech.method if c.speech else None} for c in clips],
            "frames": {"total": total, "used": used, "skipped": skipped, "bank": len(bank),
                       "reference": {"footage": home_clip, "frame": int(ref_frame)},
                       "clip": {"footage": home_clip, "start": start, "stop": stop}},
            "shapes": model.shapes_to_json(fit.table),
            "settings": settings.to_dict() | {"bank_scale": bank.scale, "bank_bounds": list(bank.bounds),
                                              "shape_fit": {"frames": fit.frames, "per_shape": fit.per_shape,
                                                            "lag_frames": fit.lag, "rms_generic": fit.rms_before,
                                                            "rms_fitted": fit.rms_after}},
            model.LIPS_KEY: lips.entry(),
        })
    ctx.report("identity", 1.0, stage.ref)
    return CreateResult(stage.ref, stage.version, total, used, skipped, time.perf_counter() - t0,
                        (fit.rms_before, fit.rms_after), list(ctx.warnings), lips.reason)


def fit_lips(footage: list[tuple], lips=None) -> HeadFit:
    """The person's lip head (lips.adapt.fit_head) from their footage: per file (log-mel of
    its sound or None, fps, smoothed landmarks (n, 68, 2), usable frames (n,), name). The
    mouth targets are the lip model's own (lips.targets), on the frames judged usable.
    lips: the lip model (None: the one shipped with facetalk)."""
    from ..lips.adapt import Recording, fit_head
    from ..lips.model import lip_model
    from ..lips.targets import mouth_targets

    recordings = []
    for mel, fps, landmarks, usable, name in footage:
        if mel is None or not len(mel):
            continue
        t = mouth_targets(landmarks, landmarks, usable)  # the track's own jump test already ran (usable)
        recordings.append(Recording(np.asarray(mel, np.float32), float(fps), t.open, t.width, name))
    if not recordings:
        return HeadFit(None, "no footage with a soundtrack: the generic lip model is used", 0, 0.0)
    return fit_head(lips or lip_model(), recordings)


def _skips_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items() if v) or "none skipped"


def _file_record(path: Path) -> dict:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"file": path.name, "size": path.stat().st_size, "sha256": h.hexdigest()}


def _analyse(path: Path, transcript: str | None, index: int, count: int, ctx: RunContext, models: FaceModels,
             settings: LearnSettings) -> _Footage:
    info = probe_video(path)
    span = 0.8 / count  # progress share of this file
    base = index * span

    def on_progress(i: int) -> None:
        ctx.report("identity", base + span * 0.6 * min(1.0, i / max(1, info.n_frames)), f"{path.name}: tracking frame {i}")

    track = track_faces(iter_frames(path), models, fps=info.fps, progress=on_progress)
    n = track.n_frames
    if not track.present.any():
        raise NoFaceError(f"no face found in any frame of --footage {path}")
    reasons = np.full(n, -1, np.int8)
    reasons[~track.present] = SKIP_REASONS.index("no_face")
    lm = track.landmarks
    turned = _turned(lm, track.present, settings)
    reasons[(reasons < 0) & turned] = SKIP_REASONS.index("turned")
    reasons[(reasons < 0) & _unstable(track, settings)] = SKIP_REASONS.index("occluded")

    # pass 2: pixels. Crops are cut for the frames the bank may use, picked from
    # landmarks now and thinned once blur and occlusion are known.
    candidates = set(_select_runs(lm, reasons < 0, 2 * settings.max_bank, settings.run).tolist())
    scale = _bank_scale(lm, reasons < 0)
    embed_every = max(1, int(round(settings.embed_every_s * info.fps)))
    sharp = np.full(n, np.nan)
    colour = np.full((n, 3), np.nan)
    embeddings, crops = [], {}
    for k, rgb in enumerate(islice(iter_frames(path), n)):
        if not track.present[k]:
            continue
        if k % 25 == 0:
            ctx.report("identity", base + span * (0.6 + 0.4 * k / n), f"{path.name}: judging frame {k}")
        sharp[k], colour[k] = _lower_face_stats(rgb, lm[k])
        if k % embed_every == 0 and reasons[k] != SKIP_REASONS.index("turned"):
            embeddings.append((k, face_embedding(models, rgb, lm[k])))
        if k in candidates:
            crops[k] = extract_crop(rgb, lm[k], scale)
    # an occluder first (a flat card is also "blurred"; its colour says what it is)
    ok = reasons < 0
    if ok.any():
        usual = np.nanmedian(colour[ok], axis=0)
        off = np.linalg.norm(colour - usual, axis=1) > settings.occlusion_colour
        reasons[ok & off] = SKIP_REASONS.index("occluded")
    ok = reasons < 0
    med_sharp = np.nanmedian(sharp[ok]) if ok.any() else np.nan
    reasons[ok & (sharp < settings.blur_ratio * med_sharp)] = SKIP_REASONS.index("blur")

    speech = None
    if info.has_audio:
        speech = analyse_speech(load_audio(path), transcript, ctx)
    else:
        ctx.warn(f"--footage {path} has no soundtrack: its mouth motion is not used to learn the person's shapes")
    return _Footage(path, info.fps, lm, reasons, speech, embeddings, crops)


def _turned(lm: np.ndarray, present: np.ndarray, settings: LearnSettings) -> np.ndarray:
    """(n,) bool: head turned away from the footage's usual pose (yaw, from where the
    nose tip sits between the cheeks) or far from frontal."""
    out = np.zeros(len(lm), bool)
    idx = np.flatnonzero(present)
    if len(idx) == 0:
        return out
    p = lm[idx].astype(np.float64)
    mid = (p[:, 2, 0] + p[:, 14, 0]) / 2
    half = np.maximum(np.abs(p[:, 14, 0] - p[:, 2, 0]) / 2, 1e-6)
    turn = (p[:, 30, 0] - mid) / half
    out[idx] = (np.abs(turn - np.median(turn)) > settings.max_turn) | (np.abs(turn) > 2 * settings.max_turn)
    return out


def _unstable(track, settings: LearnSettings) -> np.ndarray:
    """(n,) bool: frames whose lip landmarks, as fitted, sit far off the smoothed track:
    the fit is unsure, typically a hand or a microphone over the mouth."""
    out = np.zeros(track.n_frames, bool)
    idx = np.flatnonzero(track.present)
    if len(idx) == 0:
        return out
    raw, smooth = track.raw[idx, 48:68].astype(np.float64), track.landmarks[idx, 48:68].astype(np.float64)
    iod = np.linalg.norm(track.landmarks[idx, 45] - track.landmarks[idx, 36], axis=1)
    off = np.linalg.norm(raw - smooth, axis=2).mean(axis=1) / np.maximum(iod, 1e-6)
    out[idx] = off > settings.occlusion_jump
    return out


def _lower_face_stats(rgb: np.ndarray, lm: np.ndarray) -> tuple[float, np.ndarray]:
    """Mouth sharpness (Laplacian variance) and the mean Lab colour of the lower face."""
    from ..eval.metrics import mouth_box, mouth_sharpness

    sharp = mouth_sharpness([rgb], lm[None])
    x0, y0, x1, y1 = mouth_box(lm, rgb.shape, pad=0.4)
    box = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if box.size == 0:
        return sharp, np.full(3, np.nan)
    lab = cv2.cvtColor(box, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    return sharp, lab.mean(axis=0)


def _bank_scale(lm: np.ndarray, ok: np.ndarray) -> float:
    """Crop pixels per inter-ocular distance: the footage's own face size, capped."""
    if not ok.any():
        return MAX_SCALE
    iod = np.linalg.norm(lm[ok][:, 42:48].mean(axis=1) - lm[ok][:, 36:42].mean(axis=1), axis=1)
    return float(min(MAX_SCALE, max(24.0, np.median(iod))))


def _select_runs(lm: np.ndarray, ok: np.ndarray, limit: int, run: int) -> np.ndarray:
    """Sorted frame indices: runs of `run` consecutive usable frames, at most `limit`
    frames, spread over the mouth shapes seen (inner-lip gap by width bins, taken in
    turn) so rare shapes (wide open, rounded) are kept as well as the common ones."""
    starts = [s for s in range(0, len(lm) - run + 1, run) if ok[s:s + run].all()]
    if not starts:
        return np.flatnonzero(ok)[:limit]
    canon = np.stack([geometry.apply(geometry.to_canonical(lm[s + run // 2]), lm[s + run // 2]) for s in starts])
    gap, width = gap_and_width(canon)
    gb = np.digitize(gap, np.linspace(gap.min(), gap.max() + 1e-9, 9)[1:-1])
    wb = np.digitize(width, np.quantile(width, [0.2, 0.4, 0.6, 0.8]))
    bins: dict[tuple[int, int], list[int]] = {}
    for s, key in zip(starts, zip(gb.tolist(), wb.tolist())):
        bins.setdefault(key, []).append(s)
    # within a bin, take runs spread evenly through the footage
    queues = [_spread(v) for _, v in sorted(bins.items())]
    chosen: list[int] = []
    while len(chosen) * run < limit and any(queues):
        for q in queues:
            if q and len(chosen) * run < limit:
                chosen.append(q.pop(0))
    return np.array(sorted(i for s in chosen for i in range(s, s + run)), dtype=np.int64)


def _spread(items: list[int]) -> list[int]:
    """items reordered so that any prefix is spread evenly over the original order."""
    order, step = [], len(items)
    seen = set()
    while step >= 1:
        for i in range(0, len(items), step):
            if i not in seen:
                seen.add(i)
                order.append(items[i])
        step //= 2
    return order


def _build_bank(clips: list[_Footage], settings: LearnSettings, home_clip: int) -> MouthBank:
    """The bank's crops, at the scale of the footage the face clip comes from (crops of
    footage filmed closer or further are resampled to it)."""
    if not clips[home_clip].crops:
        raise NoFaceError("no frame of the footage is clear enough for the mouth bank")
    size = next(iter(clips[home_clip].crops.values()))[0].shape[:2]
    images, landmarks, source = [], [], []
    per_clip = _share(settings.max_bank, [int(c.usable.sum()) for c in clips])
    for ci, (c, limit) in enumerate(zip(clips, per_clip)):
        have = np.zeros(len(c.reasons), bool)
        have[list(c.crops)] = True
        for k in _select_runs(c.landmarks, c.usable & have, limit, settings.run):
            crop, canon = c.crops[int(k)]
            if crop.shape[:2] != size:
                crop = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA if crop.shape[0] > size[0]
                                  else cv2.INTER_CUBIC)
            images.append(crop)
            landmarks.append(canon)
            source.append((ci, int(k)))
    if not images:
        raise NoFaceError("no frame of the footage is clear enough for the mouth bank")
    scale = size[1] / (BOUNDS[2] - BOUNDS[0])
    return MouthBank(np.stack(images), np.stack(landmarks), np.asarray(source, np.int32), BOUNDS, float(scale))


def _share(total: int, weights: list[int]) -> list[int]:
    s = max(1, sum(weights))
    return [int(total * w / s) for w in weights]


def _check_person(clips: list[_Footage], allow_mixed: bool, settings: LearnSettings, ctx: RunContext) -> np.ndarray:
    """The person's reference embedding; refuses footage in which another person
    appears unless allow_mixed, which skips those frames instead.

    The person is whoever most samples show: the sample with the most others within
    `other_person` of it, and the mean of those (a median of everyone would fall between
    two people filmed about equally)."""
    samples = [e for c in clips for _, e in c.embeddings]
    if not samples:
        raise NoFaceError("no frontal face to learn the person from in the footage")
    emb = np.stack(samples).astype(np.float64)
    sq = (emb**2).sum(axis=1)
    near = sq[:, None] + sq[None] - 2 * emb @ emb.T < settings.other_person**2
    reference = emb[near[int(np.argmax(near.sum(axis=1)))]].mean(axis=0)
    for c in clips:
        dists = {k: embedding_distance(e, reference) for k, e in c.embeddings}
        far = [k for k, d in dists.items() if d > settings.other_person]
        if not far:
            continue
        dist = max(dists[k] for k in far)
        when = f"{_clock(far[0] / c.fps)}-{_clock(far[-1] / c.fps)}"
        if not allow_mixed:
            raise InputError(f"--footage {c.path} shows a different person at {when} (face distance {dist:.2f}): "
                             "cut those parts out, or pass --allow-mixed to skip them")
        step = max(1, int(round(settings.embed_every_s * c.fps)))
        for k in far:
            lo, hi = max(0, k - step // 2), min(len(c.reasons), k + step // 2 + 1)
            sel = np.arange(lo, hi)
            c.reasons[sel[c.reasons[sel] < 0]] = SKIP_REASONS.index("other_person")
        ctx.warn(f"{c.path.name}: skipped frames of another person at {when}")
    return reference.astype(np.float32)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _clip_window(c: _Footage, settings: LearnSettings) -> tuple[int, int]:
    """[start, stop) frames of the face-source clip: the window of clip_seconds with the
    most usable frames."""
    n = len(c.reasons)
    length = min(n, max(1, int(round(settings.clip_seconds * c.fps))))
    usable = np.concatenate([[0], np.cumsum(c.usable.astype(np.int64))])
    counts = usable[length:] - usable[:-length]
    start = int(np.argmax(counts))
    return start, start + length


def _write_clip(c: _Footage, start: int, stop: int, path: Path) -> None:
    """Frames [start, stop) of the footage, near-lossless H.264, even size, no audio."""
    frames = islice(iter_frames(c.path), start, stop)
    first = next(frames)
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    with VideoWriter(path, w, h, c.fps, crf=12) as writer:
        writer.write(np.ascontiguousarray(first[:h, :w]))
        for rgb in frames:
            writer.write(np.ascontiguousarray(rgb[:h, :w]))
