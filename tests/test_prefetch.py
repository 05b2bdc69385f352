import threading
import time

import pytest

from facetalk.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread():
    seen = []

    def produce():
        for i in range(50):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(produce(), depth=3)) == list(range(50))
    assert set(seen) == {"facetalk-prefetch"}


def test_worker_error_is_raised_in_consumer():
    def produce():
        yield 1
        raise ValueError("broken frame")

    it = prefetch(produce())
    assert next(it) == 1
    with pytest.raises(ValueError, match="broken frame"):
        next(it)


def test_closing_early_stops_the_worker():
    produced = []

    def produce():
        for i in range(10_000):
            produced.append(i)
            yield i

    it = prefetch(produce(), depth=2)
    assert next(it) == 0
    it.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n < 10, "the worker must stop once the consumer is gone"
