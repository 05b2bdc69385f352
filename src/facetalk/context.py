"""The one object a run carries: progress reporting, cancellation, logging and seed.

No module keeps state of its own; everything a stage needs beyond its inputs comes
from here, so two runs in one process never interfere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Cancelled

ProgressCallback = Callable[[str, float, str], None]  # (stage, fraction 0..1, message)


def _no_progress(stage: str, fraction: float, message: str) -> None:
    return None


@dataclass
class RunContext:
    progress: ProgressCallback = _no_progress
    cancel: threading.Event = field(default_factory=threading.Event)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("facetalk"))
    seed: int = 0
    warnings: list[str] = field(default_factory=list)
    job_id: str | None = None  # the job being run, recorded in the output's provenance tags

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        """Report progress of a stage and raise Cancelled if the run was cancelled."""
        self.check_cancelled()
        self.progress(stage, min(1.0, max(0.0, fraction)), message)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the run was cancelled")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log.warning(message)
