"""The one-face swap tracks and swaps in one pass (landmarks smoothed a fraction of a
second behind the decoder); several-face modes track first, then swap. On a clip with
one face both must give the same video, frame for frame."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from facetalk.errors import InputError, NoFaceError
from facetalk.media.encode import VideoWriter
from facetalk.media.video import iter_frames
from facetalk.swap import SwapRequest, swap


@pytest.fixture(scope="module")
def clip(tmp_path_factory, media):
    """3 s of the man in a suit at 320x320 (one face, head motion), so the smoother's
    reference second and several hand-outs are crossed."""
    path = tmp_path_factory.mktemp("stream") / "suit.mp4"
    frames = list(islice(iter_frames(media / "talking" / "man-suit-6s.mp4", size=(320, 320)), 75))
    with VideoWriter(path, 320, 320, 25.0, crf=12) as w:
        for f in frames:
            w.write(f)
    return path


def test_streamed_swap_equals_the_tracked_first_swap(clip, media, tmp_path) -> None:
    source = str(media / "faces" / "woman-portrait.png")
    one = swap(SwapRequest(sources=[source], target=str(clip), output=str(tmp_path / "one.mp4"), label=False))
    every = swap(SwapRequest(sources=[source], target=str(clip), output=str(tmp_path / "all.mp4"), label=False,
                             target_face="all"))
    assert one.n_frames == every.n_frames == 75 and one.frames_swapped == every.frames_swapped == 75
    a, b = list(iter_frames(one.output)), list(iter_frames(every.output))
    originals = list(iter_frames(clip))
    assert len(a) == len(b) == 75
    for x, y, o in zip(a, b, originals):
        assert np.array_equal(x, y)
        assert np.abs(x.astype(int) - o).mean() > 2  # and the face was swapped


def test_streamed_swap_errors_leave_nothing(clip, tmp_path, media) -> None:
    """A target without any face, or a face index the video does not have, fail with
    their error and write nothing (the stream has begun encoding by then)."""
    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 64, 64, 25.0) as w:
        for _ in range(30):
            w.write(np.full((64, 64, 3), 120, np.uint8))
    source = str(media / "faces" / "woman-portrait.png")
    with pytest.raises(NoFaceError, match="no face found in any frame of --target blank.mp4"):
        swap(SwapRequest(sources=[source], target=str(blank), output=str(tmp_path / "a.mp4")))
    with pytest.raises(InputError, match="face"):
        swap(SwapRequest(sources=[source], target=str(clip), output=str(tmp_path / "b.mp4"), target_face=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.mp4"]
