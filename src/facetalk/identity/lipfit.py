"""`facetalk identity train-lips`: fit (again) the person's own lip head for an existing
identity, as a NEW version (versions never change).

An identity keeps no footage, only its name, size and sha256, so the footage it was learnt
from is given again (`--footage`, each file checked against identity.json's records): its
face is tracked again (landmarks, the same usable-frame tests as `identity create` bar the
pixel ones: blur, occlusion colour, other people) and its sound turned into log-mel, then
lips.adapt.fit_head. Typical uses: an identity made before lip heads existed, or one whose
head was fitted on a lip model that has since been replaced (`identity verify` says so).

The new version holds the source version's files (hard links where possible: the data
files and a neural adapter or model, if any) plus the new head when one helps, and
identity.json with the source's entries, a new "lips" entry and "derived_from".
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..context import RunContext
from ..errors import InputError, NoFaceError
from .model import DATA_FILES, LIPS_HEAD_FILE, LIPS_KEY, OPTIONAL_FILES
from .registry import BUILDER_KEYS, Registry, format_ref


@dataclass
class TrainLipsResult:
    ref: str  # the new version
    source: str
    head: bool  # a head was kept (else the version uses the generic lip model)
    reason: str
    frames: int
    seconds: float  # wall time
    promoted: bool


def train_lips(registry: Registry, ref: str, footage: list[str], lip_model=None, promote: bool = False,
               ctx: RunContext | None = None, models=None) -> TrainLipsResult:
    """Fit the lip head of identity ref on its footage and save it as a new version."""
    from ..face.models import FaceModels
    from ..face.track import track_faces
    from ..lips.adapt import save_head
    from ..lips.features import log_mel
    from ..lips.model import lip_model as shipped_lip_model
    from ..media.audio import load_audio
    from ..media.formats import classify
    from ..media.video import iter_frames, probe_video
    from .learn import LearnSettings, _file_record, _turned, _unstable, fit_lips

    ctx = ctx or RunContext()
    t0 = time.perf_counter()
    name, version = registry.resolve(ref)
    source = format_ref(name, version)
    identity = registry.load(source)
    if not footage:
        raise InputError(f"give the footage {source} was learnt from with --footage (see 'facetalk identity show "
                         f"{source}')")
    known = {f.get("sha256"): f.get("file") for f in identity.manifest.get("footage") or [] if isinstance(f, dict)}
    for f in footage:
        classify(f, role="--footage")
        if _file_record(Path(f))["sha256"] not in known:
            names = ", ".join(str(v) for v in known.values()) or "none recorded"
            raise InputError(f"--footage {f} is not footage {source} was learnt from (its sha256 is not in "
                             f"identity.json; that footage: {names}); learn a new identity from it with "
                             f"'facetalk identity create'")
    lips = lip_model or shipped_lip_model()
    models = models or FaceModels()
    settings = LearnSettings()
    parts = []
    for i, f in enumerate(footage):
        path = Path(f)
        info = probe_video(path)
        if not info.has_audio:
            ctx.warn(f"--footage {f} has no soundtrack: it cannot teach the lip head")
            continue
        ctx.report("identity", 0.8 * i / len(footage), f"{path.name}: tracking the face")
        track = track_faces(iter_frames(path), models, fps=info.fps)
        if not track.present.any():
            raise NoFaceError(f"no face found in any frame of --footage {f}")
        usable = track.present & ~_turned(track.landmarks, track.present, settings) & ~_unstable(track, settings)
        mel = log_mel(load_audio(path).samples)
        parts.append((mel, info.fps, track.landmarks, usable, path.name))
    ctx.report("identity", 0.85, "fitting the person's lip head")
    fit = fit_lips(parts, lips)
    with registry.stage(name) as st:
        carried = DATA_FILES + tuple(f for f in OPTIONAL_FILES if f != LIPS_HEAD_FILE and (identity.path / f).is_file())
        for f in carried:
            _link_or_copy(identity.path / f, st.path / f)
        if fit.head is not None:
            save_head(fit.head, st.path / LIPS_HEAD_FILE)
        st.manifest.update({k: identity.manifest[k] for k in BUILDER_KEYS})
        st.manifest.update({k: v for k, v in identity.manifest.items()
                            if k not in st.manifest and k not in ("schema", "name", "version", "facetalk", "created",
                                                                  "files", LIPS_KEY, "derived_from")})
        st.manifest[LIPS_KEY] = fit.entry() | {"footage": [p[4] for p in parts]}
        st.manifest["derived_from"] = source
    if promote:
        registry.promote(st.ref)
    ctx.report("identity", 1.0, st.ref)
    return TrainLipsResult(st.ref, source, fit.head is not None, fit.reason, fit.frames, time.perf_counter() - t0,
                           promote)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def lips_summary(manifest: dict) -> str:
    """One line on a version's lip motion for `identity show`."""
    entry = manifest.get(LIPS_KEY)
    if not isinstance(entry, dict):
        return "generic lip model (made before lip heads; 'facetalk identity train-lips' fits one)"
    cv = entry.get("cv_r") if isinstance(entry.get("cv_r"), dict) else {}
    if entry.get("kind") == "head":
        taps = entry.get("taps") or []
        return (f"own lip head (taps {', '.join(f'{int(t) * 10:+d} ms' for t in taps if isinstance(t, int))}; "
                f"held-out r {cv.get('head')} against the generic {cv.get('generic')}; lip model "
                f"{str((entry.get('lip_model') or {}).get('sha256', '?'))[:12]})")
    return str(entry.get("reason", "generic lip model"))
