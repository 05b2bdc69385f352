"""Grade any video with a .cube LUT: frames through the LUT, re-encoded as H.264; the
soundtrack and the container's tags carried over untouched.

    grade_video("in.mp4", "look.cube", "out.mp4", strength=0.8)

The audio packets are copied, not decoded (the bytes in the output are the input's), and
the input's container tags (title, comment, a facetalk output's AI-generated label...)
are written again, so grading never strips a provenance label.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..context import RunContext
from ..errors import InputError, OutputError
from ..media.encode import VideoWriter, check_output_path, mp4_can_copy_audio
from ..media.formats import VIDEO_EXTENSIONS, kind_of, open_media
from ..media.video import iter_frames, probe_video
from .lut import Interpolation, Lut, load_lut

# Tags the MP4 muxer writes itself: copying them would describe the old file, not this one.
_MUXER_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})


@dataclass(frozen=True)
class GradeResult:
    """What grade_video wrote. audio: "copied", "re-encoded" (a codec MP4 cannot hold
    as it is, such as Vorbis, went to AAC) or "none"."""

    output: str
    width: int
    height: int
    n_frames: int
    duration: float
    audio: str

    def to_dict(self) -> dict:
        return asdict(self)


def grade_video(
    input: str | Path,
    lut: Lut | str | Path,
    output: str | Path,
    strength: float = 1.0,
    interpolation: Interpolation = "tetrahedral",
    crf: int = 18,
    ctx: RunContext | None = None,
) -> GradeResult:
    """Apply `lut` (a Lut or a .cube path) to every frame of the video `input` and write
    the MP4 `output` (H.264 at `crf`, written atomically), at the input's frame rate.

    strength 0..1 mixes graded and original; interpolation as Lut.apply. Frames are the
    decoded R'G'B' code values (BT.709 gamma-encoded, as the LUT expects; see
    facetalk.finish.lut), upright after any rotation tag. The first audio stream is
    copied packet for packet; a video without audio gives one without. Odd frame sides
    lose their last row or column (H.264 4:2:0 needs even sides), with a warning.

    Raises InputError (a missing or non-video input, a malformed LUT as LutError),
    OutputError (not .mp4, an unwritable folder, output == input), Cancelled.
    """
    ctx = ctx or RunContext()
    src = _check_input(Path(input))
    out = check_output_path(output)
    if _same_file(src, out):
        raise OutputError(
            f"output {out} is the input video: grading into it would destroy the original; "
            "choose another output name"
        )
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"--lut-strength must be within 0..1, got {strength}")
    look = lut if isinstance(lut, Lut) else load_lut(lut)
    info = probe_video(src)
    tags = _container_tags(src)
    audio = "none"
    if info.has_audio:
        audio = "copied" if mp4_can_copy_audio(src) else "re-encoded"
        if audio == "re-encoded":
            ctx.warn(f"the audio of {src} cannot go into an MP4 as it is: re-encoded to AAC")
    w, h = info.width // 2 * 2, info.height // 2 * 2
    if (w, h) != (info.width, info.height):
        ctx.warn(f"{src} is {info.width}x{info.height}: written as {w}x{h} (H.264 needs even sides)")
    ctx.report("grade", 0.0, f"baking {look.kind.upper()} LUT")
    if look.kind == "3d":
        look.baked(interpolation)  # once, before the first frame, so progress is honest
    n = 0
    with VideoWriter(
        out, w, h, info.fps, audio_path=src if info.has_audio else None, crf=crf,
        metadata=tags, audio_copy=audio == "copied",
    ) as writer:
        for rgb in iter_frames(src):
            graded = look.apply(rgb[:h, :w], strength=strength, interpolation=interpolation)
            writer.write(graded)
            n += 1
            if n % 10 == 0:
                ctx.report("grade", min(n / max(info.n_frames, 1), 1.0), f"frame {n}/{info.n_frames}")
    ctx.report("grade", 1.0, f"frame {n}/{n}")
    return GradeResult(str(out), w, h, n, n / info.fps, audio)


def _check_input(p: Path) -> Path:
    try:
        exists = p.exists()
    except OSError as e:
        raise InputError(f"input video {p} cannot be used: {e.strerror or e}") from None
    if not exists:
        raise InputError(f"input video {p} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"input {p} is not a file: give a video file")
    if kind_of(p) != "video":
        names = ", ".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
        raise InputError(f"input {p} is not a video facetalk grades: give one of {names}")
    return p


def _same_file(a: Path, b: Path) -> bool:
    if b.exists():
        try:
            return os.path.samefile(a, b)  # also catches hard links and symlinks
        except OSError:
            pass
    return a.resolve() == b.resolve()


def _container_tags(path: Path) -> dict[str, str]:
    with open_media(path, "video") as container:
        return {k: v for k, v in container.metadata.items() if k not in _MUXER_TAGS}

