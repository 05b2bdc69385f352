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


def test_ordered_map_keeps_order_and_uses_threads():
    import random

    from facetalk.prefetch import ordered_map

    names = set()

    def slow_square(x):
        names.add(threading.current_thread().name)
        time.sleep(random.random() * 0.01)
        return x * x

    assert list(ordered_map(slow_square, range(40), workers=2, depth=4)) == [x * x for x in range(40)]
    assert len(names) == 2


def test_ordered_map_raises_the_workers_error():
    from facetalk.prefetch import ordered_map

    def fail_on_5(x):
        if x == 5:
            raise ValueError("frame 5")
        return x

    out = ordered_map(fail_on_5, range(10), workers=2)
    assert [next(out) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="frame 5"):
        next(out)
