"""The renderer protocol every mouth renderer follows, and the registry of renderers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FacetalkError
from ..types import Patch
from .neural import NeuralRenderer
from .retrieval import RetrievalRenderer
from .warp import WarpRenderer


@runtime_checkable
class Renderer(Protocol):
    """Draws a mouth shape (and blink) onto frames of one person.

    prepare once per person, then plan once with the whole mouth sequence, then render
    per frame (from several threads at once); the renderer keeps what prepare and plan
    learnt on itself, never in module state.
    """

    name: str

    def prepare(
        self, reference: np.ndarray, landmarks: np.ndarray, teeth_refs: Sequence[tuple[np.ndarray, np.ndarray]] = ()
    ) -> None:
        """Person-specific set-up from a reference frame (H, W, 3) uint8 and its (68, 2)
        landmarks: the photo, or a video frame with the mouth near closed. `teeth_refs` offers
        further (frame, landmarks) pairs with the mouth open, to learn the person's own
        teeth from when the reference does not show them."""
        ...

    def plan(self, mouth: np.ndarray) -> None:
        """See the whole mouth sequence (n, len(MOUTH_PARAMS)) before any frame is drawn,
        called once after prepare; render(..., k=i) then draws output frame i of it.
        A renderer that draws each frame on its own does nothing here."""
        ...

    def render(
        self,
        frame: np.ndarray,
        landmarks: np.ndarray | None,
        mouth: np.ndarray,
        blink: float = 0.0,
        k: int | None = None,
    ) -> Patch | None:
        """The changed region of frame (H, W, 3) uint8 for a mouth vector
        (len(MOUTH_PARAMS),) and blink in [0, 1]; None when landmarks is None (the frame
        passes through unchanged). k: the output frame index (into the planned
        sequence), or None when the frame stands alone."""
        ...


_RENDERERS: dict[str, type] = {"warp": WarpRenderer, "retrieval": RetrievalRenderer,  # constant: name -> class
                               "neural": NeuralRenderer}  # torch is imported when one is made
# options a renderer cannot be made without -> what the user must give for them
_REQUIRED: dict[str, dict[str, str]] = {"retrieval": {"bank": "an identity: use --identity NAME"}}


def available_renderers() -> list[str]:
    """Names accepted by get_renderer, the default ("warp") first."""
    return list(_RENDERERS)


def get_renderer(name: str, **options) -> Renderer:
    """A new renderer by name; options go to its constructor (retrieval needs bank=,
    the identity's MouthBank)."""
    cls = _RENDERERS.get(name)
    if cls is None:
        known = ", ".join(available_renderers())
        raise FacetalkError(f"unknown renderer {name!r}: use one of {known}")
    for option, need in _REQUIRED.get(name, {}).items():
        if options.get(option) is None:
            raise FacetalkError(f"the {name} renderer needs {need}")
    return cls(**options)
