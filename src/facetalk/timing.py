"""Seconds per stage of a run, added from any thread."""

from __future__ import annotations

import threading
import time
from collections import defaultdict


class StageTimer:
    """Accumulates time per stage, from any thread (render workers add to it at once).

    With frames made on two threads the stage figures are thread-seconds: they can add up
    to more than the wall time of the run.

        t = time.perf_counter()
        ...                          # decode
        t = timer.add("decode", t)   # returns now, the start of the next stage
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        with self._lock:
            self.seconds[stage] += now - since
        return now
