"""Mouth cues in Rhubarb Lip Sync's output formats (TSV and JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from ..types import Cue, Shape


def truncate_cs(seconds: float) -> float:
    """Truncate a time to whole centiseconds, as Rhubarb prints it (1e-6 guards float noise such as 0.29 * 100)."""
    return math.floor(seconds * 100 + 1e-6) / 100


def _joined(cues: Sequence[Cue]) -> list[Cue]:
    """Cues with adjacent equal shapes joined (Rhubarb never repeats a shape)."""
    out: list[Cue] = []
    for cue in cues:
        if out and out[-1].shape == cue.shape:
            out[-1] = Cue(out[-1].start, cue.end, cue.shape)
        else:
            out.append(cue)
    return out


def cues_to_tsv(cues: Sequence[Cue]) -> str:
    """One "start<TAB>shape" line per cue, then the clip end with X, as Rhubarb writes it."""
    joined = _joined(cues)
    lines = [f"{truncate_cs(c.start):.2f}\t{c.shape.value}" for c in joined]
    if joined:
        lines.append(f"{truncate_cs(joined[-1].end):.2f}\t{Shape.X.value}")
    return "\n".join(lines) + "\n"


def cues_to_json(cues: Sequence[Cue], sound_file: str, duration: float) -> str:
    """Rhubarb's JSON: metadata (soundFile, duration) and mouthCues with start/end/value."""
    doc = {
        "metadata": {"soundFile": sound_file, "duration": truncate_cs(duration)},
        "mouthCues": [
            {"start": truncate_cs(c.start), "end": truncate_cs(c.end), "value": c.shape.value}
            for c in _joined(cues)
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
