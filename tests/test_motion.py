"""Mouth curves, idle life and their assembly into Motion."""

from __future__ import annotations

import numpy as np
import pytest

from facetalk.motion.build import build_motion
from facetalk.motion.curves import mouth_curves
from facetalk.motion.idle import BLINK_GAP_S, BLINK_LEN_S, blink_curve, blink_events, idle_motion
from facetalk.motion.shapes import OPEN, SHAPE_TARGETS, shape_target
from facetalk.types import MOUTH_PARAMS, Cue, Shape, Speech

NEUTRAL_ENERGY = 2 / 3  # gain 0.6 + 0.6 * 2/3 = 1: open equals the shape target


def make_speech(spans: list[tuple[float, float, str]], energy: float | np.ndarray = NEUTRAL_ENERGY) -> Speech:
    duration = spans[-1][1]
    m = int(round(duration * 100))
    if np.isscalar(energy):
        energy = np.full(m, energy, dtype=np.float32)
    cues = [Cue(a, b, Shape(s)) for a, b, s in spans]
    return Speech(duration=duration, cues=cues, method="alignment", energy=energy, voiced=energy > 0)


def test_shape_table_in_range():
    assert set(SHAPE_TARGETS) == set(Shape)
    for shape in Shape:
        v = shape_target(shape)
        assert v.shape == (len(MOUTH_PARAMS),) and v.min() >= 0 and v.max() <= 1
    assert shape_target(Shape.A)[OPEN] == 0 and shape_target(Shape.X)[OPEN] == 0
    assert shape_target(Shape.D)[OPEN] > shape_target(Shape.C)[OPEN] > shape_target(Shape.B)[OPEN]


@pytest.mark.parametrize("fps", [22.13, 25.0, 30.0, 60.0])
@pytest.mark.parametrize("onset", [1.0, 1.013, 1.031])
def test_open_onset_and_close_within_one_frame(fps, onset):
    offset = onset + 0.4
    speech = make_speech([(0, onset, "X"), (onset, offset, "D"), (offset, 2.5, "X")])
    curve = mouth_curves(speech, fps, int(2.5 * fps))[:, OPEN]
    half = 0.5 * shape_target(Shape.D)[OPEN]
    times = np.arange(len(curve)) / fps
    rise = times[np.argmax(curve >= half)]
    fall = times[np.nonzero(curve >= half)[0][-1] + 1]
    assert abs(rise - onset) <= 1 / fps + 1e-9
    assert abs(fall - offset) <= 1 / fps + 1e-9
    assert curve.max() == pytest.approx(shape_target(Shape.D)[OPEN], abs=0.02)


def test_silence_and_bilabials_close():
    spans = [(0, 0.5, "X"), (0.5, 0.8, "D"), (0.8, 0.9, "A"), (0.9, 1.2, "C"), (1.2, 2.0, "X")]
    speech = make_speech(spans, 1.0)
    fps = 25.0
    mouth = mouth_curves(speech, fps, 60)  # 2.4 s: frames past the audio rest too
    edges_lo, edges_hi = (np.arange(60) - 0.5) / fps, (np.arange(60) + 0.5) / fps
    inside = lambda a, b: (edges_lo >= a) & (edges_hi <= b)  # noqa: E731
    for a, b in [(0, 0.5), (0.8, 0.9), (1.2, 2.4)]:
        assert inside(a, b).any()
        assert mouth[inside(a, b), OPEN].max() < 0.05
    assert mouth[inside(0.5, 0.8), OPEN].max() > 0.7  # loud D opens fully


def test_short_cue_still_registers():
    fps = 25.0
    speech = make_speech([(0, 1.0, "X"), (1.0, 1.02, "C"), (1.02, 2.0, "X")])
    curve = mouth_curves(speech, fps, 50)[:, OPEN]
    assert 0.1 < curve.max() < shape_target(Shape.C)[OPEN]


def test_energy_scales_opening_but_never_opens_closed_shapes():
    spans = [(0, 0.4, "X"), (0.4, 0.8, "C"), (0.8, 1.0, "A"), (1.0, 1.4, "C"), (1.4, 2.0, "X")]
    fps = 25.0
    quiet = mouth_curves(make_speech(spans, 0.1), fps, 50)[:, OPEN]
    loud = mouth_curves(make_speech(spans, 0.9), fps, 50)[:, OPEN]
    target = shape_target(Shape.C)[OPEN]
    assert quiet.max() == pytest.approx(target * (0.6 + 0.06), abs=0.02)
    assert loud.max() == pytest.approx(target * (0.6 + 0.54), abs=0.02)
    # energy varying within one cue: the loud half opens wider
    energy = np.where(np.arange(200) < 60, 0.2, 1.0).astype(np.float32)
    spans = [(0, 0.4, "X"), (0.4, 0.8, "C"), (0.8, 2.0, "X")]
    varied = mouth_curves(make_speech(spans, energy), fps, 50)[:, OPEN]
    assert varied[17] > 1.3 * varied[12]
    # full energy over closed shapes changes nothing
    closed = mouth_curves(make_speech([(0, 0.5, "A"), (0.5, 1.0, "X")], 1.0), fps, 25)[:, OPEN]
    assert closed.max() == 0.0


def test_release_slower_than_attack():
    fps = 60.0
    speech = make_speech([(0, 0.3, "X"), (0.3, 0.5, "B"), (0.5, 1.0, "D"), (1.0, 1.5, "B"), (1.5, 2.0, "X")])
    curve = mouth_curves(speech, fps, 120)[:, OPEN]
    lo, hi = shape_target(Shape.B)[OPEN], shape_target(Shape.D)[OPEN]
    level = lambda f: lo + f * (hi - lo)  # noqa: E731
    seg_rise, seg_fall = curve[22:55], curve[50:80]  # B -> D and D -> B
    rise = np.argmax(seg_rise >= level(0.9)) - np.argmax(seg_rise >= level(0.1))
    fall = np.argmax(seg_fall <= level(0.1)) - np.argmax(seg_fall <= level(0.9))
    assert fall > rise


@pytest.mark.parametrize("fps", [22.13, 25.0, 29.97])
def test_frame_count_respected(fps):
    speech = make_speech([(0, 0.3, "X"), (0.3, 5.0, "C"), (5.0, 6.1, "X")])
    n = int(6.1 * fps)
    motion = build_motion(speech, fps, n, seed=1, mouth="rules")
    assert motion.n_frames == n
    assert motion.mouth.shape == (n, len(MOUTH_PARAMS)) and motion.mouth.dtype == np.float32
    assert motion.blink.shape == (n,) and motion.head.shape == (n, 4)
    assert motion.fps == fps
    assert build_motion(speech, fps, n + 50, mouth="rules").n_frames == n + 50  # video longer than audio
    assert build_motion(speech, fps, 0, mouth="rules").n_frames == 0


def test_seeded_determinism():
    speech = make_speech([(0, 1.0, "X"), (1.0, 3.0, "C"), (3.0, 20.0, "X")])
    a = build_motion(speech, 25.0, 500, seed=7, mouth="rules")
    b = build_motion(speech, 25.0, 500, seed=7, mouth="rules")
    c = build_motion(speech, 25.0, 500, seed=8, mouth="rules")
    for x, y in [(a.mouth, b.mouth), (a.blink, b.blink), (a.head, b.head)]:
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.mouth, c.mouth)  # the mouth follows speech only
    assert not np.array_equal(a.blink, c.blink)
    assert np.abs(a.head[:, :3] - c.head[:, :3]).max() > 1e-3


def test_still_is_neutral():
    speech = make_speech([(0, 1.0, "C"), (1.0, 10.0, "X")])
    motion = build_motion(speech, 25.0, 250, seed=3, still=True, mouth="rules")
    assert np.all(motion.blink == 0)
    assert np.all(motion.head[:, :3] == 0) and np.all(motion.head[:, 3] == 1)
    assert motion.mouth[:, OPEN].max() > 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blinks_natural_over_a_minute(seed):
    fps = 25.0
    blink, head = idle_motion(int(60 * fps), fps, seed)
    events = blink_events(60.0, fps, np.random.default_rng(seed).spawn(3)[0])
    lengths = np.array([e.length for e in events])
    assert np.all((lengths >= BLINK_LEN_S[0]) & (lengths <= BLINK_LEN_S[1]))
    # groups: a double blink's second blink follows within half a second
    starts = np.array([e.start for e in events])
    group_starts = starts[np.concatenate([[True], np.diff(starts) > 0.5])]
    gaps = np.diff(group_starts)
    assert np.all((gaps >= BLINK_GAP_S[0]) & (gaps <= BLINK_GAP_S[1]))
    assert 8 <= len(group_starts) <= 30
    # the sampled curve: each blink reaches full closure, eyes open between blinks
    closed = blink > 0.5
    runs = np.count_nonzero(np.diff(closed.astype(int)) == 1) + int(closed[0])
    assert runs == len(events)
    assert blink.max() == pytest.approx(1.0) and np.median(blink) == 0
    run_lengths = np.diff(np.nonzero(np.diff(np.concatenate([[0], closed, [0]]).astype(int)))[0])[::2]
    assert run_lengths.max() / fps <= BLINK_LEN_S[1]
    # head sway: small, smooth, breathing within 1 +- 0.003
    assert np.abs(head[:, :2]).max() <= 0.02 and np.abs(head[:, :2]).max() > 0.003
    assert np.abs(head[:, 2]).max() <= 1.5
    assert np.abs(head[:, 3] - 1).max() <= 0.0031
    assert np.abs(np.diff(head[:, :2], axis=0)).max() < 0.001  # under 0.1% IOD a frame


def test_double_blinks_happen_and_reopen_between():
    fps = 30.0
    events = blink_events(600.0, fps, np.random.default_rng(5))
    starts = np.array([e.start for e in events])
    pairs = np.nonzero(np.diff(starts) < 0.5)[0]
    assert 0.03 < len(pairs) / len(events) < 0.25
    first, second = events[pairs[0]], events[pairs[0] + 1]
    times = np.linspace(first.start, second.start + second.length, 400)
    curve = blink_curve([first, second], times)
    between = (times > first.peak) & (times < second.peak)
    assert curve[between].min() == 0.0  # eyes fully reopen between the two blinks


def test_speaking_sways_more():
    n, fps = 1500, 25.0
    _, calm = idle_motion(n, fps, 4)
    _, talking = idle_motion(n, fps, 4, energy=np.ones(6000, dtype=np.float32))
    assert np.abs(talking[:, 0]).mean() > 1.2 * np.abs(calm[:, 0]).mean()
    assert np.abs(talking[:, :2]).max() <= 0.02
