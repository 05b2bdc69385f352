"""The renderer protocol every mouth renderer follows, and the registry of renderers."""

from __future__ import annotations

from collections.abc import Sequence

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FacetalkError
from ..types import Patch
from .warp import WarpRenderer


@runtime_checkable
class Renderer(Protocol):
    """Draws a mouth shape (and blink) onto frames of one person.

    prepare once per person, then render per frame; the renderer keeps what prepare
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

    def render(
        self, frame: np.ndarray, landmarks: np.ndarray | None, mouth: np.ndarray, blink: float = 0.0
    ) -> Patch | None:
        """The changed region of frame (H, W, 3) uint8 for a mouth vector
        (len(MOUTH_PARAMS),) and blink in [0, 1]; None when landmarks is None (the frame
        passes through unchanged)."""
        ...


_RENDERERS: dict[str, type] = {"warp": WarpRenderer}  # constant: name -> class


def available_renderers() -> list[str]:
    """Names accepted by get_renderer, the default ("warp") first."""
    return list(_RENDERERS)


def get_renderer(name: str, **options) -> Renderer:
    """A new renderer by name; options go to its constructor."""
    cls = _RENDERERS.get(name)
    if cls is None:
        known = ", ".join(available_renderers())
        raise FacetalkError(f"unknown renderer {name!r}: use one of {known}")
    return cls(**options)
