"""What the finishing chain does to a video: plain, serialisable values, checked before any
heavy work (facetalk.finish.chain.Finisher applies them)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import InputError

LABEL_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
DEFAULT_LABEL_TEXT = "AI-generated"
DEFAULT_LABEL_SIZE = 0.035  # text height as a fraction of the frame height
DEFAULT_LABEL_OPACITY = 0.85
MAX_LABEL_CHARS = 80


@dataclass(frozen=True, kw_only=True)
class FinishOptions:
    """Per-frame finishing, in this order: enhance (face detail), enhancer (an ONNX face
    restoration model), LUT (a colour grade of the whole frame), label (drawn last, so no
    grade tints it).

    lut: a .cube file; lut_strength: 0 (no grade) to 1 (the LUT as made). enhance: classical
    sharpening of mouth and face (no model). enhancer: a GFPGAN/CodeFormer-style .onnx model
    run on the aligned face; device "cuda" runs it on the GPU when onnxruntime has CUDA.
    label: the visible label (False: none, recorded as such in the metadata); label_size:
    text height over frame height; label_opacity: 0-1 of the whole label."""

    lut: str | None = None
    lut_strength: float = 1.0
    enhance: bool = False
    enhancer: str | None = None
    device: str = "cpu"
    label: bool = True
    label_text: str = DEFAULT_LABEL_TEXT
    label_corner: str = "bottom-right"
    label_size: float = DEFAULT_LABEL_SIZE
    label_opacity: float = DEFAULT_LABEL_OPACITY

    @classmethod
    def of(cls, request: object) -> FinishOptions:
        """The finishing options of a request (render's or swap's) that has fields of
        the same names."""
        return cls(**{f.name: getattr(request, f.name) for f in fields(cls)})

    def check(self) -> None:
        """Raise InputError (one line naming the option and the fix) for a value out of
        range or a file that is not there. Files are not opened here (Finisher does)."""
        check_finish_values(self.lut, self.lut_strength, self.enhancer, self.label_text, self.label_corner,
                            self.label_size, self.label_opacity)

    def describe(self) -> str:
        """What was applied besides the label, for people and metadata: 'none', or e.g.
        'lut grade.cube at 0.8; enhance; enhancer gfpgan.onnx'."""
        steps = []
        if self.enhance:
            steps.append("enhance")
        if self.enhancer:
            steps.append(f"enhancer {Path(self.enhancer).name}")
        if self.lut and self.lut_strength > 0:
            steps.append(f"lut {Path(self.lut).name}" + (f" at {self.lut_strength:g}" if self.lut_strength != 1 else ""))
        return "; ".join(steps) or "none"

    def label_description(self) -> str:
        """'none', or the label's text and corner: 'AI-generated (bottom-right)'."""
        return f"{self.label_text} ({self.label_corner})" if self.label else "none"


def check_finish_values(lut, lut_strength, enhancer, label_text, label_corner, label_size, label_opacity) -> None:
    """The checks of FinishOptions.check on loose values (a job's stored request)."""
    if lut is not None:
        _check_file(lut, "--lut", ".cube", "a .cube 3D LUT")
    if lut_strength is not None and not 0.0 <= float(lut_strength) <= 1.0:
        raise InputError(f"--lut-strength {lut_strength:g} is out of range: use 0 (no grade) to 1 (the full LUT)")
    if enhancer is not None:
        _check_file(enhancer, "--enhancer", ".onnx", "a face-restoration model exported to ONNX (GFPGAN, CodeFormer)")
    if label_corner not in LABEL_CORNERS:
        raise InputError(f"unknown --label-corner {label_corner!r}: use one of {', '.join(LABEL_CORNERS)}")
    if label_size is not None and not 0.01 <= float(label_size) <= 0.2:
        raise InputError(f"--label-size {label_size:g} is out of range: the text's height over the frame's, "
                         "0.01 to 0.2 (default 0.035)")
    if label_opacity is not None and not 0.05 <= float(label_opacity) <= 1.0:
        raise InputError(f"--label-opacity {label_opacity:g} is out of range: use 0.05 to 1 "
                         "(or --no-label for no label)")
    text = "" if label_text is None else str(label_text)
    if not text.strip():
        raise InputError("--label-text is empty: give the words to show, or --no-label for no label")
    if len(text) > MAX_LABEL_CHARS or not text.isprintable():
        raise InputError(f"--label-text must be one line of at most {MAX_LABEL_CHARS} printable characters")


def _check_file(path: str, option: str, suffix: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{option} file {p} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{option} {p} is not a file: give {what}")
    if p.suffix.lower() != suffix:
        raise InputError(f"{option} {p} is not {what} (its name must end in {suffix})")


__all__ = [
    "DEFAULT_LABEL_OPACITY",
    "DEFAULT_LABEL_SIZE",
    "DEFAULT_LABEL_TEXT",
    "LABEL_CORNERS",
    "FinishOptions",
    "check_finish_values",
]
