"""Decoded frames kept in a temporary file, for the second pass over a source video.

Rendering a video reads it twice (track the face, then render) and, when the audio is
longer, backwards too (ping-pong). Decoding again costs as much as the first time, and
decoding backwards through long keyframe intervals costs many times more. Frames written
raw to a temporary file during the first pass come back by offset in well under a
millisecond, and sit in the operating system's page cache rather than in this process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

DISK_BUDGET = 4 << 30  # bytes; longer sources are decoded again instead


class FrameCache:
    """Append-then-read store of equal-sized RGB frames in an anonymous temporary file."""

    def __init__(self, width: int, height: int, directory: str | None = None) -> None:
        self.shape = (height, width, 3)
        self.frame_bytes = width * height * 3
        self._file = tempfile.TemporaryFile(prefix="facetalk-frames-", dir=directory)
        self.count = 0

    @staticmethod
    def fits(width: int, height: int, n_frames: int, budget: int = DISK_BUDGET) -> bool:
        return width * height * 3 * n_frames <= budget

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be {self.shape} uint8, got {frame.shape} {frame.dtype}")
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
        data = os.pread(self._file.fileno(), self.frame_bytes, i * self.frame_bytes)
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FrameCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
