"""The finishing chain of a video, frame by frame, after the composite:

    enhance (face detail) -> enhancer (ONNX face restoration) -> LUT (whole frame) -> label

The label comes last, so no grade tints it. Anything that makes frames can use it (the
render pipeline, a face swap): it takes plain values, not a RenderRequest.

    finisher = Finisher(FinishOptions(lut="look.cube", enhance=True), 1920, 1080)
    frame = finisher.apply(frame, landmarks, k)     # landmarks (68, 2), or None: no face
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .label import Label
from .options import FinishOptions


class Finisher:
    """The finishing steps of one video, loaded once: the LUT (parsed and baked), the ONNX
    model (a session), the label (rendered once per frame size).

    Raises InputError (one line) for options out of range or files that cannot be used,
    so build it before the heavy work. width, height: the frame size, to render the label
    now (None: on the first frame). device: where an --enhancer model runs ("cpu", "cuda").
    apply() is thread-safe: frames may be finished on several threads at once.
    notes: things the user should know (e.g. CUDA asked for but not available)."""

    def __init__(self, options: FinishOptions, width: int | None = None, height: int | None = None) -> None:
        options.check()
        self.options = options
        self.notes: list[str] = []
        self._detail = None
        self._restorer = None
        self._lut = None
        if options.enhance:
            from .enhance import FaceDetail

            self._detail = FaceDetail()
        if options.enhancer:
            from .restore import FaceRestorer

            self._restorer = FaceRestorer(options.enhancer, options.device)
            if self._restorer.note:
                self.notes.append(self._restorer.note)
        if options.lut and options.lut_strength > 0:
            from .lut import load_lut

            self._lut = load_lut(options.lut)
            self._lut.cache_dir = lut_cache_dir()
            if self._lut.kind == "3d":
                # the 256^3 table (about a second of one core) is built while speech and face
                # analysis run, mostly on the other core; the first frame waits on its lock
                threading.Thread(target=self._lut.baked, name="facetalk-lut-bake", daemon=True).start()
        self._labels: dict[tuple[int, int], Label] = {}
        self._lock = threading.Lock()
        if width and height:
            self._label_for(int(width), int(height))

    @property
    def active(self) -> bool:
        """Whether apply() changes frames at all."""
        return bool(self._detail or self._restorer or self._lut or self.options.label)

    def _label_for(self, width: int, height: int) -> Label | None:
        if not self.options.label:
            return None
        key = (width, height)
        label = self._labels.get(key)
        if label is None:
            with self._lock:
                label = self._labels.get(key)
                if label is None:
                    o = self.options
                    label = Label(o.label_text, width, height, corner=o.label_corner, size=o.label_size,
                                  opacity=o.label_opacity)
                    self._labels[key] = label
        return label

    def apply(self, frame: np.ndarray, landmarks: np.ndarray | None = None, k: int = 0, *,
              in_place: bool = False) -> np.ndarray:
        """The finished frame: (H, W, 3) uint8 RGB in and out. landmarks: the face's 68
        points in this frame (None or NaN: no face; the face steps are skipped). k: the
        frame's index (for steps that vary in time; none do yet). in_place: frame may be
        changed (else it is copied first when a step changes pixels in place)."""
        owned = in_place
        face = landmarks is not None and np.isfinite(landmarks).all()
        if face and self._detail is not None:
            frame = frame if owned else frame.copy()
            owned = True
            self._detail.apply(frame, landmarks)
        if face and self._restorer is not None:
            frame = frame if owned else frame.copy()
            owned = True
            self._restorer.apply(frame, landmarks)
        if self._lut is not None:
            frame = self._lut.apply(frame, strength=float(self.options.lut_strength))  # a new array
            owned = True
        label = self._label_for(frame.shape[1], frame.shape[0])
        if label is not None:
            frame = frame if owned else frame.copy()
            label.apply(frame)
        return frame


__all__ = ["Finisher"]


def lut_cache_dir() -> Path:
    """Where baked LUT tables are kept between runs: $FACETALK_HOME/cache/luts."""
    from ..home import facetalk_home

    return facetalk_home() / "cache" / "luts"
