"""Speaker-disjoint evaluation of the lip model against the rule path and loudness.

Folds are made of speakers, never of clips; speakers named as held out (the shared test
clips' speakers) are never trained on and are measured with every fold's model. Each clip
is scored by Pearson r between a curve and the real opening (and width), at lag 0 (what a
viewer sees) and at the best lag within +-10 frames (a positive lag: the curve is late).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .data import LipClip, lagged_r

MAX_LAG = 10


@dataclass
class CurveScore:
    r0: float
    r_best: float
    lag: int

    @classmethod
    def of(cls, curve: np.ndarray, real: np.ndarray) -> "CurveScore":
        rs = {k: lagged_r(curve, real, k) for k in range(-MAX_LAG, MAX_LAG + 1)}
        rs = {k: r for k, r in rs.items() if np.isfinite(r)}
        if not rs:
            return cls(float("nan"), float("nan"), 0)
        best = max(sorted(rs, key=abs), key=lambda k: rs[k])
        return cls(rs.get(0, float("nan")), rs[best], best)


@dataclass
class ClipResult:
    key: str
    speaker: str
    language: str
    seconds: float
    fold: int
    scores: dict[str, CurveScore] = field(default_factory=dict)  # "learned", "learned_width", "rules", "energy", ...


def speaker_folds(clips: list[LipClip], k: int, held_out: set[str], seed: int = 0) -> list[set[str]]:
    """k sets of speakers (held_out excluded), balanced by their minutes of footage."""
    minutes: dict[str, float] = {}
    for c in clips:
        if c.speaker not in held_out:
            minutes[c.speaker] = minutes.get(c.speaker, 0.0) + len(c.open) / c.fps
    rng = np.random.default_rng(seed)
    order = sorted(minutes, key=lambda s: (-minutes[s], rng.random()))
    folds: list[set[str]] = [set() for _ in range(k)]
    load = np.zeros(k)
    for s in order:  # largest first, each into the lightest fold
        i = int(np.argmin(load))
        folds[i].add(s)
        load[i] += minutes[s]
    return folds


def summarise(results: list[ClipResult], curve: str) -> dict[str, float]:
    """Mean over speakers (each speaker the mean of its clips) of r0, r best and |lag|."""
    per: dict[str, list[CurveScore]] = {}
    for r in results:
        if curve in r.scores and np.isfinite(r.scores[curve].r0):
            per.setdefault(r.speaker, []).append(r.scores[curve])
    if not per:
        return {"speakers": 0}
    r0 = [np.mean([s.r0 for s in v]) for v in per.values()]
    rb = [np.mean([s.r_best for s in v]) for v in per.values()]
    lag = [np.mean([abs(s.lag) for s in v]) for v in per.values()]
    return {"speakers": len(per), "r0": round(float(np.mean(r0)), 3), "r_best": round(float(np.mean(rb)), 3),
            "abs_lag": round(float(np.mean(lag)), 2), "mean_lag": round(float(np.mean(
                [np.mean([s.lag for s in v]) for v in per.values()])), 2)}


def score_clip(clip: LipClip, fold: int, curves: dict[str, np.ndarray]) -> ClipResult:
    """Scores of per-frame curves against the clip's raw (not offset-corrected) targets:
    curves named "*_width" against the width, every other against the opening."""
    res = ClipResult(clip.key, clip.speaker, clip.language, len(clip.open) / clip.fps, fold)
    real_open = clip.open
    real_width = clip.width
    for name, curve in curves.items():
        res.scores[name] = CurveScore.of(curve, real_width if name.endswith("_width") else real_open)
    return res


def rule_curves(clip: LipClip) -> dict[str, np.ndarray]:
    """The rule path's and the loudness baseline's opening of a clip, from its soundtrack
    as recorded (no transcript), at its frame rate; the rule path's width (wide - round)."""
    from ..context import RunContext
    from ..media.audio import load_audio
    from ..motion.build import build_motion
    from ..speech.analyse import analyse_speech
    from ..types import MOUTH_PARAMS

    speech = analyse_speech(load_audio(clip.file), None, RunContext())
    n = len(clip.open)
    rules = build_motion(speech, clip.fps, n, still=True, mouth="rules").mouth
    energy = build_motion(speech, clip.fps, n, still=True, mouth="energy").mouth
    o, w, r = (MOUTH_PARAMS.index(p) for p in ("open", "wide", "round"))
    return {"rules": rules[:, o], "rules_width": rules[:, w] - rules[:, r], "energy": energy[:, o]}


def cross_validate(clips: list[LipClip], folds: list[set[str]], held_out: set[str],
                   fit: Callable[[list[LipClip]], Callable[[LipClip], np.ndarray]],
                   report: Callable[[str], None] = print) -> list[ClipResult]:
    """Train with fit(train clips) -> predict(clip) -> (n, 2) per-frame open and width,
    once per fold; score each fold's speakers and the held-out speakers (every fold)."""
    results: list[ClipResult] = []
    baselines = {c.key: rule_curves(c) for c in clips if c.speaker in held_out or any(c.speaker in f for f in folds)}
    for i, test in enumerate(folds):
        train = [c for c in clips if c.speaker not in test and c.speaker not in held_out]
        predict = fit(train)
        for c in clips:
            if c.speaker in test or c.speaker in held_out:
                p = predict(c)
                results.append(score_clip(c, i, {"learned": p[:, 0], "learned_width": p[:, 1], **baselines[c.key]}))
        fold_res = [r for r in results if r.fold == i]
        s = summarise(fold_res, "learned")
        report(f"fold {i + 1}/{len(folds)}: {len(test)} speakers, {len(train)} training clips: "
               f"learned r0 {s.get('r0')} r_best {s.get('r_best')}; rules r0 {summarise(fold_res, 'rules').get('r0')}")
    return results
