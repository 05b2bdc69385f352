"""Rhubarb Lip Sync's animation rules, each in isolation, and the TSV/JSON export."""

from __future__ import annotations

import json

import pytest

from facetalk.speech.cues import (
    A, B, C, D, E, F, G, H, X,
    ShapeRule, animate_pauses, animate_rough, closest_shape, frames_to_cues, insert_tweens,
    merge_short_shapes, occlusion_cs, optimise_timing, pause_shape, phone_rules,
    phone_shape_sets, phones_to_cues, relax, tween,
)  # fmt: skip
from facetalk.speech.export import cues_to_json, cues_to_tsv
from facetalk.types import Cue, Phone, Shape


def frames(*runs: tuple[Shape, int]) -> list[object]:
    """Per-centisecond frames from (shape, length) runs."""
    return [s for s, n in runs for _ in range(n)]


def shapes_at(cues: list[Cue], t: float) -> Shape:
    return next(c.shape for c in cues if c.start <= t < c.end)


@pytest.mark.parametrize(
    ("phone", "cs", "expected"),
    [("AO", 10, {E}), ("AA", 10, {D}), ("IY", 10, {B}), ("UW", 10, {F}), ("EH", 10, {C}), ("M", 10, {A}),
     ("F", 10, {G}), ("AH", 10, {C}), ("AH", 25, {D}), ("ER", 5, {B, C}), ("ER", 10, {E}),
     ("S", 10, {B, F}), ("N", 10, {B, C, F, H}), ("L", 10, {B, E, F, H}), ("L", 25, {H}), ("R", 10, {B, E, F})],
)  # fmt: skip
def test_single_phone_shape_sets(phone: str, cs: int, expected: set[Shape]) -> None:
    assert phone_shape_sets(phone, cs, 10) == [(0, cs, frozenset(expected))]


def test_diphthongs_split_60_40() -> None:
    assert phone_shape_sets("EY", 20, 10) == [(0, 12, frozenset({C})), (12, 20, frozenset({B}))]
    assert phone_shape_sets("AY", 10, 10)[0][2] == frozenset({C})
    assert phone_shape_sets("AY", 20, 10)[0][2] == frozenset({D})
    assert phone_shape_sets("AW", 30, 10)[0][2] == frozenset({D})
    assert [s for _, _, s in phone_shape_sets("OW", 10, 10)] == [frozenset({E}), frozenset({F})]


def test_plosive_occlusion_is_half_the_previous_phone_clamped() -> None:
    assert occlusion_cs(4) == 4 and occlusion_cs(16) == 8 and occlusion_cs(60) == 12
    sets = phone_shape_sets("P", 10, 16)
    assert sets[0] == (-8, 0, frozenset({A}))
    assert phone_shape_sets("T", 10, 16)[0][2] == frozenset({B, F})
    assert X not in phone_shape_sets("K", 10, 16)[1][2]


def test_closest_shape_and_relax() -> None:
    assert closest_shape(A, frozenset({B, D})) == B
    assert closest_shape(D, frozenset({B, C})) == C
    assert closest_shape(X, frozenset({A, D})) == A
    assert (relax(D), relax(C), relax(G), relax(A)) == (C, B, X, A)


def test_rough_pass_anticipates_vowel_up_to_200ms() -> None:
    rules = [
        (0, 10, ShapeRule(frozenset({X}))),
        (10, 20, ShapeRule(frozenset({B, F}), "S")),  # S before UW takes F (rounded early)
        (20, 40, ShapeRule(frozenset({F}), "UW")),
    ]
    out = animate_rough(rules)
    assert out[15] == F and out[25] == F and out[5] == X
    # Without the vowel the S would stay on the least-effort B.
    assert animate_rough(rules[:2])[15] == B


def test_rough_pass_anticipation_stops_after_200ms() -> None:
    rules = [(0, 30, ShapeRule(frozenset({B, F}), "S")), (30, 40, ShapeRule(frozenset({F}), "UW"))]
    assert animate_rough(rules)[5] == B  # the S starts 300 ms before the vowel


def test_short_segment_is_extended_to_80ms() -> None:
    out = optimise_timing(frames((X, 20), (D, 3), (X, 20)))
    open_frames = [i for i, s in enumerate(out) if s != X]
    assert len(open_frames) >= 8
    assert open_frames[0] >= 20 - 6  # borrowed at most 60 ms from the left


def test_shapes_within_segment_last_70ms() -> None:
    merged = merge_short_shapes([(0, 10, C), (10, 13, D), (13, 30, B)])
    assert all(e - s >= 7 for s, e, _ in merged)
    assert merge_short_shapes([(0, 5, C), (5, 10, D)])[0][2] == D  # D wins over C


@pytest.mark.parametrize(("cs", "expected"), [(10, D), (20, C), (40, X)])
def test_pause_shape_by_length(cs: int, expected: Shape) -> None:
    assert pause_shape(D, B, cs) == expected


def test_relaxed_pause_differs_from_next_shape() -> None:
    assert pause_shape(D, B, 20) == C
    assert pause_shape(C, B, 20) == X  # relaxing C gives B, the next shape: rest instead
    out = animate_pauses(frames((D, 20), (X, 20), (B, 20)))
    assert out[30] == C


@pytest.mark.parametrize(
    ("pair", "shape"), [((D, A), C), ((D, B), C), ((D, X), C), ((C, F), E), ((F, C), E), ((D, F), E), ((H, F), E)]
)
def test_tweens(pair: tuple[Shape, Shape], shape: Shape) -> None:
    found = tween((0, 30, pair[0]), (30, 60, pair[1]))
    assert found is not None and found[2] == shape and 4 <= found[1] - found[0] <= 8


def test_tween_skipped_under_40ms_and_absent_for_other_pairs() -> None:
    assert tween((0, 30, D), (30, 35, B)) is None  # 50 ms / 4 < 40 ms
    assert tween((0, 30, B), (30, 60, D)) is None  # pops open without a tween
    out = insert_tweens(frames((D, 30), (X, 30)))
    assert out[31] == C and out[29] == D


def test_phone_rules_fill_gaps_with_silence() -> None:
    rules = phone_rules([Phone("AA", 0.1, 0.2)], 30)
    assert rules[0][2].shapes == frozenset({X}) and rules[-1][2].shapes == frozenset({X})
    assert rules[1][2].phone == "AA"


def test_mama_papa_closes_lips_at_m_and_p() -> None:
    phones = [Phone("SIL", 0, 0.3)]
    t = 0.3
    for label, length in [("M", 0.08), ("AA", 0.15), ("M", 0.08), ("AH", 0.12),
                          ("P", 0.08), ("AA", 0.15), ("P", 0.08), ("AH", 0.12)]:  # fmt: skip
        phones.append(Phone(label, t, t + length))
        t += length
    cues = phones_to_cues(phones, t + 0.5)
    m_times = [p.start + 0.03 for p in phones if p.label == "M"]
    p_times = [p.start - 0.02 for p in phones if p.label == "P"]  # the closure precedes a P
    assert all(shapes_at(cues, tm) == A for tm in m_times + p_times)
    assert shapes_at(cues, 0.5) in (D, C)  # first AA is open


def test_cues_contiguous_start_and_end_with_x() -> None:
    cues = phones_to_cues([Phone("HH", 0.2, 0.3), Phone("AY", 0.3, 0.6)], 1.234)
    assert cues[0].start == 0 and cues[0].shape == X and cues[-1].shape == X
    assert cues[-1].end == pytest.approx(1.234)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(cues, cues[1:]))
    assert phones_to_cues([], 0.5) == [Cue(0.0, 0.5, X)]


def test_speech_to_the_end_still_closes() -> None:
    cues = frames_to_cues(frames((X, 10), (D, 20)), 0.3)
    assert cues[-1].shape == X and cues[-2].shape == D


def test_tsv_matches_rhubarb() -> None:
    cues = [Cue(0.0, 0.456, X), Cue(0.456, 0.789, D), Cue(0.789, 1.0, X)]
    assert cues_to_tsv(cues) == "0.00\tX\n0.45\tD\n0.78\tX\n1.00\tX\n"


def test_json_matches_rhubarb() -> None:
    cues = [Cue(0.0, 0.29, X), Cue(0.29, 0.5, A), Cue(0.5, 0.8, A), Cue(0.8, 1.0, X)]
    doc = json.loads(cues_to_json(cues, "a.wav", 1.0))
    assert doc["metadata"] == {"soundFile": "a.wav", "duration": 1.0}
    assert doc["mouthCues"] == [
        {"start": 0.0, "end": 0.29, "value": "X"},
        {"start": 0.29, "end": 0.8, "value": "A"},
        {"start": 0.8, "end": 1.0, "value": "X"},
    ]
