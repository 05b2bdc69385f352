"""Run an iterator a few items ahead in a worker thread.

Rendering (OpenCV, numpy) and encoding (x264 in PyAV) both release the GIL, so
producing frames in one thread while the caller encodes in another keeps both cores of
a small machine busy: throughput becomes the slower of the two, not their sum.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Yield the items of `items`, produced up to `depth` ahead in a worker thread.

    An exception in the worker is raised here, in the consumer; closing this generator
    early (or an exception in the consumer) stops the worker.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_Failure(e))

    worker = threading.Thread(target=work, name="facetalk-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=10)
