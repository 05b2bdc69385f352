"""Target mouth pose of each Rhubarb shape, as a vector over MOUTH_PARAMS.

Columns: open, wide, round, upper, lower, teeth (see facetalk.types.MOUTH_PARAMS).
Values are in [0, 1]; "open" 1 is the widest opening a renderer allows, so D stays a
little below it and loud syllables (energy modulation) still have headroom.
"""

from __future__ import annotations

import numpy as np

from ..types import MOUTH_PARAMS, Shape

#                  open  wide  round upper lower teeth
SHAPE_TARGETS: dict[Shape, tuple[float, float, float, float, float, float]] = {
    # A: lips closed and pressed together (M, B, P); nothing of the teeth shows.
    Shape.A: (0.00, 0.10, 0.00, 0.00, 0.00, 0.00),
    # B: lips slightly parted over clenched teeth, corners a little spread (S, T, EE).
    Shape.B: (0.15, 0.45, 0.00, 0.30, 0.00, 0.90),
    # C: mouth open, jaw dropped moderately, some teeth visible (EH, AE).
    Shape.C: (0.50, 0.30, 0.00, 0.20, 0.00, 0.50),
    # D: mouth wide open, jaw fully dropped (AA).
    Shape.D: (0.85, 0.35, 0.00, 0.25, 0.00, 0.40),
    # E: slightly open with lips rounded, corners drawn in (AO, ER).
    Shape.E: (0.35, 0.00, 0.50, 0.10, 0.00, 0.20),
    # F: lips puckered forward around a small opening (UW, OW, W).
    Shape.F: (0.12, 0.00, 1.00, 0.00, 0.00, 0.00),
    # G: lower lip tucked under the upper teeth, upper teeth showing (F, V).
    Shape.G: (0.08, 0.20, 0.00, 0.35, 1.00, 0.70),
    # H: mouth open with the tongue raised behind the teeth (long L).
    Shape.H: (0.40, 0.25, 0.00, 0.15, 0.00, 0.40),
    # X: relaxed rest pose, lips lightly closed.
    Shape.X: (0.00, 0.00, 0.00, 0.00, 0.00, 0.00),
}

OPEN = MOUTH_PARAMS.index("open")
CLOSED_SHAPES = frozenset({Shape.A, Shape.X})  # shapes whose lips must meet


def shape_target(shape: Shape) -> np.ndarray:
    """(len(MOUTH_PARAMS),) float32 target vector of one shape."""
    return np.asarray(SHAPE_TARGETS[Shape(shape)], dtype=np.float32)


def target_table() -> np.ndarray:
    """(len(Shape), len(MOUTH_PARAMS)) float32, rows in Shape declaration order."""
    return np.stack([shape_target(s) for s in Shape])
