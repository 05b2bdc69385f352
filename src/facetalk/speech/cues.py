"""Phones -> mouth cues, following Rhubarb Lip Sync's animation rules.

Everything works on a grid of centiseconds (ANALYSIS_RATE frames), as Rhubarb does,
so the rules below read in whole 10 ms steps. A timeline is a list of runs
(start_cs, end_cs, value) that covers [0, n) without gaps.

Pipeline (Rhubarb's mouthAnimation.cpp): shape rules per phone -> rough pass (least
effort, backwards anticipation of vowels) -> timing optimisation -> pauses -> tweens.
The acoustic path builds its own rules and enters at `animate_rules`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import ANALYSIS_RATE, Cue, Phone, Shape

A, B, C, D, E, F, G, H, X = (Shape.A, Shape.B, Shape.C, Shape.D, Shape.E, Shape.F, Shape.G, Shape.H, Shape.X)
ANY: frozenset[Shape] = frozenset({A, B, C, D, E, F, G, H})
ANY_OPEN: frozenset[Shape] = frozenset({B, C, D, E, F, G, H})

VOWELS: frozenset[str] = frozenset(
    {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
)
SILENCE = "SIL"

MIN_OCCLUSION_CS = 4
MAX_OCCLUSION_CS = 12
MAX_ANTICIPATION_CS = 20
MIN_SEGMENT_CS = 8
MAX_EXTENSION_CS = 6
MIN_SHAPE_CS = 7
SHORT_PAUSE_CS = 12
RELAXED_PAUSE_CS = 35
MIN_TWEEN_CS = 4
MAX_TWEEN_CS = 8

# For each shape, every shape in ascending order of the effort needed to move there
# (Rhubarb's getClosestShape); H behaves like C and X like A.
_EFFORT: dict[Shape, tuple[Shape, ...]] = {
    A: (A, X, G, B, C, H, E, D, F),
    B: (B, G, A, X, C, H, E, D, F),
    C: (C, H, B, G, D, A, X, E, F),
    D: (D, C, H, B, G, A, X, E, F),
    E: (E, C, H, B, G, A, X, D, F),
    F: (F, B, G, A, X, C, H, E, D),
    G: (G, A, B, C, H, X, D, E, F),
    H: (H, C, B, G, D, A, X, E, F),
    X: (X, A, G, B, C, H, E, D, F),
}
_RELAXED: dict[Shape, Shape] = {A: A, B: B, C: B, D: C, E: C, F: B, G: X, H: B, X: X}
# (from, to) -> (tween shape, timing)
_TWEENS: dict[tuple[Shape, Shape], tuple[Shape, str]] = {
    (D, A): (C, "late"),
    (D, B): (C, "centred"),
    (D, G): (C, "early"),
    (D, X): (C, "late"),
    (C, F): (E, "centred"),
    (F, C): (E, "centred"),
    (D, F): (E, "centred"),
    (H, F): (E, "late"),
    (F, H): (E, "early"),
}


@dataclass(frozen=True)
class ShapeRule:
    """The shapes allowed over a stretch of time, and the phone that asks for them."""

    shapes: frozenset[Shape]
    phone: str | None = None  # None in silence

    @property
    def anticipated(self) -> bool:
        """Single-shape vowels are anticipated backwards (Rhubarb's roughAnimation)."""
        return self.phone in VOWELS and len(self.shapes) == 1


Run = tuple[int, int, object]  # (start_cs, end_cs, value), end exclusive


# ---------------------------------------------------------------- small rules


def to_cs(seconds: float) -> int:
    """Seconds -> nearest centisecond frame."""
    return int(round(seconds * ANALYSIS_RATE))


def closest_shape(reference: Shape, shapes: frozenset[Shape]) -> Shape:
    """The shape of `shapes` needing least effort to reach from `reference`."""
    for shape in _EFFORT[reference]:
        if shape in shapes:
            return shape
    raise ValueError("empty shape set")


def relax(shape: Shape) -> Shape:
    """The shape a mouth falls back to when nothing asks for more (D->C, C->B, G->X)."""
    return _RELAXED[shape]


def basic_shape(shape: Shape) -> Shape:
    """Extended shapes mapped to the basic six (G->A, H->C, X->A)."""
    return {G: A, H: C, X: A}.get(shape, shape)


def occlusion_cs(previous_cs: int) -> int:
    """Length of a plosive's closure: half the previous phone, clamped to 40-120 ms."""
    return min(MAX_OCCLUSION_CS, max(MIN_OCCLUSION_CS, previous_cs // 2))


def phone_shape_sets(label: str, duration_cs: int, previous_cs: int) -> list[tuple[int, int, frozenset[Shape]]]:
    """Shape sets of one phone as (start, end, shapes) relative to the phone's start.

    Plosives get a closure that starts before the phone; diphthongs split 60/40.
    """
    one = lambda *s: [(0, duration_cs, frozenset(s))]  # noqa: E731

    def diphthong(first: Shape, second: Shape) -> list[tuple[int, int, frozenset[Shape]]]:
        split = int(round(duration_cs * 0.6))
        return [(0, split, frozenset({first})), (split, duration_cs, frozenset({second}))]

    def plosive(closed: frozenset[Shape], opened: frozenset[Shape]) -> list[tuple[int, int, frozenset[Shape]]]:
        return [(-occlusion_cs(previous_cs), 0, closed), (0, duration_cs, opened)]

    match label:
        case "AO":
            return one(E)
        case "AA":
            return one(D)
        case "IY" | "IH":
            return one(B)
        case "UW" | "UH" | "W":
            return one(F)
        case "EH" | "AE":
            return one(C)
        case "AH":
            return one(C if duration_cs < 20 else D)
        case "ER":
            return one(B, C) if duration_cs < 7 else one(E)
        case "M":
            return one(A)
        case "F" | "V":
            return one(G)
        case "CH" | "JH" | "TH" | "DH" | "S" | "Z" | "SH" | "ZH":
            return one(B, F)
        case "N":
            return one(B, C, F, H)
        case "NG":
            return one(B, C, E, F)
        case "L":
            return one(B, E, F, H) if duration_cs < 20 else one(H)
        case "R":
            return one(B, E, F)
        case "Y":
            return one(B, C, F)
        case "HH":
            return [(0, duration_cs, ANY)]
        case "EY":
            return diphthong(C, B)
        case "AY":
            return diphthong(D if duration_cs >= 20 else C, B)
        case "OW":
            return diphthong(E, F)
        case "AW":
            return diphthong(D if duration_cs >= 30 else C, E)
        case "OY":
            return diphthong(E, B)
        case "P" | "B":
            return plosive(frozenset({A}), ANY)
        case "T" | "D":
            return plosive(frozenset({B, F}), ANY_OPEN)
        case "K" | "G":
            return plosive(frozenset({B, C, E, F, H}), ANY_OPEN)
        case _:
            return one(B)  # noise and anything unknown: lips slightly apart


# ---------------------------------------------------------------- timelines


def runs_from_frames(frames: Sequence[object]) -> list[Run]:
    """Run-length encode per-frame values into (start, end, value) runs."""
    runs: list[Run] = []
    for i, value in enumerate(frames):
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], i + 1, value)
        else:
            runs.append((i, i + 1, value))
    return runs


def paint(frames: list[object], start: int, end: int, value: object) -> None:
    """Set frames[start:end] to value, clipped to the timeline."""
    start, end = max(0, start), min(len(frames), end)
    for i in range(start, end):
        frames[i] = value


def phone_rules(phones: Sequence[Phone], n_cs: int) -> list[Run]:
    """Shape-rule runs over [0, n_cs) for aligned phones; silence and gaps get X."""
    silent = ShapeRule(frozenset({X}))
    frames: list[object] = [silent] * n_cs
    previous_cs = 0
    cursor = 0
    for phone in phones:
        start, end = to_cs(phone.start), to_cs(phone.end)
        if end <= start:
            continue
        if start > cursor:
            previous_cs = start - cursor  # a gap counts as a silent "phone"
        if phone.label != SILENCE:
            for s, e, shapes in phone_shape_sets(phone.label, end - start, previous_cs):
                # Later rules overwrite earlier ones: a closure reaches back over its neighbour.
                paint(frames, start + s, start + e, ShapeRule(shapes, phone.label))
        previous_cs = end - start
        cursor = end
    # Identical rules of adjacent phones stay separate: index runs by object identity.
    runs: list[Run] = []
    for i, rule in enumerate(frames):
        if runs and runs[-1][2] is rule:
            runs[-1] = (runs[-1][0], i + 1, rule)
        else:
            runs.append((i, i + 1, rule))
    return runs


def animate_rough(rules: Sequence[Run]) -> list[object]:
    """Per-frame shapes: least-effort choice, anticipating single-shape vowels up to 200 ms."""
    n = rules[-1][1] if rules else 0
    frames: list[object] = [X] * n
    reference = X
    last_anticipated_start = -1
    for index, (start, end, rule) in enumerate(rules):
        shape = closest_shape(reference, rule.shapes)
        paint(frames, start, end, shape)
        if rule.anticipated:
            reference = shape
            for back in range(index - 1, -1, -1):
                b_start, b_end, b_rule = rules[back]
                if b_start == last_anticipated_start or start - b_start > MAX_ANTICIPATION_CS:
                    break
                anticipating = closest_shape(reference, b_rule.shapes)
                paint(frames, b_start, b_end, anticipating)
                if basic_shape(anticipating) != basic_shape(shape):
                    break
                reference = anticipating
            last_anticipated_start = start
            reference = shape
        else:
            reference = relax(shape)
    return frames


def _mouth_state(shape: Shape) -> str:
    return "idle" if shape == X else "closed" if shape == A else "open"


def merge_short_shapes(runs: list[Run]) -> list[Run]:
    """Within one segment, drop shapes shorter than 70 ms by duration-weighted majority.

    The shortest short shape merges with its shorter neighbour; the pair takes the
    shape holding more time, except that D wins over C (keep the mouth open).
    """
    runs = list(runs)
    while len(runs) > 1:
        short = [i for i, r in enumerate(runs) if r[1] - r[0] < MIN_SHAPE_CS]
        if not short:
            break
        i = min(short, key=lambda k: runs[k][1] - runs[k][0])
        left = runs[i - 1] if i > 0 else None
        right = runs[i + 1] if i + 1 < len(runs) else None
        j = i - 1 if right is None or (left is not None and left[1] - left[0] <= right[1] - right[0]) else i + 1
        a, b = sorted((i, j))
        ra, rb = runs[a], runs[b]
        if {ra[2], rb[2]} == {C, D}:
            shape = D
        else:
            shape = ra[2] if ra[1] - ra[0] >= rb[1] - rb[0] else rb[2]
        runs[a : b + 1] = [(ra[0], rb[1], shape)]
        runs = runs_from_runs(runs)  # re-join neighbours that now share a shape
    return runs


def runs_from_runs(runs: Sequence[Run]) -> list[Run]:
    """Join adjacent runs of equal value."""
    out: list[Run] = []
    for run in runs:
        if out and out[-1][2] == run[2] and out[-1][1] == run[0]:
            out[-1] = (out[-1][0], run[1], run[2])
        else:
            out.append(run)
    return out


def stretch_runs(runs: Sequence[Run], start: int, end: int) -> list[Run]:
    """Spread the shapes of `runs` evenly over [start, end) (a too-short segment)."""
    k = len(runs)
    span = end - start
    bounds = [start + (span * i) // k for i in range(k + 1)]
    return runs_from_runs([(bounds[i], bounds[i + 1], runs[i][2]) for i in range(k) if bounds[i + 1] > bounds[i]])


def optimise_timing(frames: list[object]) -> list[object]:
    """Make open/closed segments last >= 80 ms and shapes within them >= 70 ms.

    A short segment first borrows up to 60 ms from what precedes it, then from what
    follows; its shapes are spread evenly over the new range.
    """
    n = len(frames)
    shapes = runs_from_frames(frames)
    segments = runs_from_frames([_mouth_state(s) for s in frames])
    out: list[object] = list(frames)
    claimed_until = 0  # frames before this belong to an already retimed segment
    for s_index, (start, end, state) in enumerate(segments):
        if state == "idle":
            continue
        inner = [(max(a, start), min(b, end), v) for a, b, v in shapes if a < end and b > start]
        new_start, new_end = start, end
        if end - start < MIN_SEGMENT_CS:
            lack = MIN_SEGMENT_CS - (end - start)
            new_start = max(claimed_until, start - min(lack, MAX_EXTENSION_CS))
            lack = MIN_SEGMENT_CS - (end - new_start)
            if lack > 0:
                limit = n
                if s_index + 1 < len(segments) and segments[s_index + 1][2] != "idle":
                    limit = end  # never eat into the next visible segment
                elif s_index + 2 < len(segments):
                    limit = segments[s_index + 2][0] - 1
                new_end = min(limit, end + lack)
            retimed = stretch_runs(inner, new_start, new_end)
        else:
            retimed = merge_short_shapes(inner)
        for a, b, v in retimed:
            paint(out, a, b, v)
        claimed_until = new_end
    return out


def pause_shape(previous: Shape, following: Shape, duration_cs: int) -> Shape:
    """Shape held during a pause: hold (<120 ms), relax (<=350 ms), else rest (X)."""
    if duration_cs < SHORT_PAUSE_CS:
        return previous
    if duration_cs <= RELAXED_PAUSE_CS:
        shape = previous
        while True:
            relaxed = relax(shape)
            if relaxed != following:
                return relaxed
            if relaxed == shape:
                return X  # relaxing leads nowhere new: rest
            shape = relaxed
    return X


def animate_pauses(frames: list[object]) -> list[object]:
    """Replace inner X runs (pauses between speech) with pause shapes."""
    runs = runs_from_frames(frames)
    out = list(frames)
    for i in range(1, len(runs) - 1):
        start, end, shape = runs[i]
        if shape == X:
            paint(out, start, end, pause_shape(runs[i - 1][2], runs[i + 1][2], end - start))
    return out


def tween(first: Run, second: Run) -> Run | None:
    """An in-between shape run for the transition first -> second, or None."""
    found = _TWEENS.get((first[2], second[2]))
    if found is None:
        return None
    shape, timing = found
    first_cs, second_cs = first[1] - first[0], second[1] - second[0]
    if timing == "early":
        length = min(first_cs // 3, MAX_TWEEN_CS)
        start = first[1] - length
    elif timing == "centred":
        length = min(first_cs // 4, second_cs // 4, MAX_TWEEN_CS)
        start = first[1] - length // 2
    else:
        length = min(second_cs // 3, MAX_TWEEN_CS)
        start = second[0]
    if length < MIN_TWEEN_CS:
        return None
    return (start, start + length, shape)


def insert_tweens(frames: list[object]) -> list[object]:
    """Add tween shapes between pairs of shapes that look abrupt (D->B gets C, ...)."""
    runs = runs_from_frames(frames)
    out = list(frames)
    for first, second in zip(runs, runs[1:]):
        found = tween(first, second)
        if found is not None:
            paint(out, *found)
    return out


def animate_rules(rules: Sequence[Run], duration: float) -> list[Cue]:
    """Run the whole animation pipeline on shape-rule runs and return cues over [0, duration]."""
    if not rules:
        return [Cue(0.0, duration, X)]
    frames = animate_rough(rules)
    frames = optimise_timing(frames)
    frames = animate_pauses(frames)
    frames = insert_tweens(frames)
    return frames_to_cues(frames, duration)


def frames_to_cues(frames: Sequence[object], duration: float) -> list[Cue]:
    """Per-centisecond shapes -> contiguous cues covering [0, duration], ending with X."""
    runs = runs_from_frames(frames)
    cues: list[Cue] = []
    for start, end, shape in runs:
        s, e = start / ANALYSIS_RATE, min(duration, end / ANALYSIS_RATE)
        if e > s:
            cues.append(Cue(s, e, Shape(shape)))
    if not cues:
        return [Cue(0.0, duration, X)]
    last = cues[-1]
    cues[-1] = Cue(last.start, duration, last.shape)
    if cues[-1].shape != X:
        # Rhubarb closes the mouth at the end: the final frame rests.
        tail = max(cues[-1].start, duration - 1 / ANALYSIS_RATE)
        if tail > cues[-1].start:
            cues[-1] = Cue(cues[-1].start, tail, cues[-1].shape)
            cues.append(Cue(tail, duration, X))
        else:
            cues[-1] = Cue(last.start, duration, X)
    return cues


def n_frames(duration: float) -> int:
    """Centisecond frames covering a clip of `duration` seconds."""
    return max(1, math.ceil(duration * ANALYSIS_RATE - 1e-9))


def phones_to_cues(phones: Sequence[Phone], duration: float) -> list[Cue]:
    """Rhubarb mouth cues for aligned phones; contiguous over [0, duration], starting and ending with X."""
    n = n_frames(duration)
    return animate_rules(phone_rules(phones, n), duration)
