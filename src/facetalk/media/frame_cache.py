"""Decoded frames kept for the second pass over a source video.

Rendering a video reads it twice (track the face, then render) and, when the audio is
longer, backwards too (ping-pong). Decoding again costs as much as the first time, and
decoding backwards through long keyframe intervals costs many times more. A short source
(an identity's clip: 10 s at 256-700 px is 50-450 MB) stays in memory; a longer one is
written raw to a temporary file during the first pass, whose frames come back by offset in
well under a millisecond from the operating system's page cache. Writing that file costs
~2 ms a 512x512 frame (its pages are allocated and written back), three times a copy in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

MEMORY_BUDGET = 512 << 20  # bytes; a source expected to need more goes to a temporary file
DISK_BUDGET = 4 << 30  # bytes; longer sources are decoded again instead


class FrameCache:
    """Append-then-read store of equal-sized RGB frames: in memory when the frames expected
    fit in MEMORY_BUDGET, else in an anonymous temporary file. Frames come back read-only."""

    def __init__(self, width: int, height: int, directory: str | None = None, expected: int | None = None) -> None:
        """expected: how many frames will be appended (None: unknown, so a file)."""
        self.shape = (height, width, 3)
        self.frame_bytes = width * height * 3
        in_memory = expected is not None and expected * self.frame_bytes <= MEMORY_BUDGET
        self._frames: list[np.ndarray] | None = [] if in_memory else None
        self._file = None if in_memory else tempfile.TemporaryFile(prefix="facetalk-frames-", dir=directory)
        self.count = 0

    @property
    def in_memory(self) -> bool:
        return self._frames is not None

    @staticmethod
    def fits(width: int, height: int, n_frames: int, budget: int = DISK_BUDGET) -> bool:
        return width * height * 3 * n_frames <= budget

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be {self.shape} uint8, got {frame.shape} {frame.dtype}")
        if self._frames is not None:
            kept = frame.copy()  # the caller may go on to change its own
            kept.flags.writeable = False
            self._frames.append(kept)
        else:
            self._file.seek(self.count * self.frame_bytes)
            self._file.write(np.ascontiguousarray(frame).tobytes())
        self.count += 1

    def tee(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield frames unchanged while storing each one."""
        for frame in frames:
            self.append(frame)
            yield frame

    def get(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(f"frame {i} of {self.count}")
        if self._frames is not None:
            return self._frames[i]
        data = os.pread(self._file.fileno(), self.frame_bytes, i * self.frame_bytes)
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.clear()
        else:
            self._file.close()

    def __enter__(self) -> FrameCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
