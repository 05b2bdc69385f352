"""Run an iterator a few items ahead in a worker thread.

Rendering (OpenCV, numpy) and encoding (x264 in PyAV) both release the GIL, so
producing frames in one thread while the caller encodes in another keeps both cores of
a small machine busy: throughput becomes the slower of the two, not their sum.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")
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


def ordered_map(fn: Callable[[T], U], items: Iterable[T], workers: int = 2, depth: int = 6) -> Iterator[U]:
    """fn over items on `workers` threads, results yielded in input order, at most
    `depth` ahead of the consumer. fn must be safe to call from several threads.

    Frames are independent once the motion is known, so two renders run at once on a
    two-core machine while the encoder takes whatever CPU is left.
    """
    if workers <= 1:
        yield from (fn(item) for item in items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facetalk-render")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
