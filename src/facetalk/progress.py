"""Terminal output: progress for people (a bar per stage) and for programs (one JSON event
per line), and the plain tables the listing commands print."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO


class JsonProgress:
    """One JSON object per line on stderr: {"event", "stage", "fraction", "message", "time"}."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        self.emit("progress", stage=stage, fraction=round(fraction, 4), message=message)

    def emit(self, event: str, **fields) -> None:
        fields = {"event": event, **fields, "time": round(time.time(), 3)}
        self.stream.write(json.dumps(fields) + "\n")
        self.stream.flush()


class BarProgress:
    """A tqdm bar per stage, replaced when the stage changes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=1000, desc=f"{stage:>7}", file=self.stream, leave=False,
                            bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}<{remaining} {postfix}")
        target = int(round(fraction * 1000))
        self.bar.update(max(0, target - self.bar.n))
        if message:
            self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet(stage: str, fraction: float, message: str) -> None:
    return None


def table(header: list[str], rows: list[list]) -> str:
    """Left-aligned columns two spaces apart, header first (cells may be any value)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])
