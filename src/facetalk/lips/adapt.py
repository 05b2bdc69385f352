"""A person's own lip head: the lip model's output layer refitted on that person's footage.

The lip model (lips.model) ends in a 1x1 layer reading its hidden features (48 in the
shipped model) per 10 ms row.
People differ in how much they open, widen and round for the same sound and in how early
they move: a head of their own is a new output layer read at a few time offsets ("taps",
rows around the frame's time), fitted by ridge regression on their footage (the hidden
features of its audio at each usable video frame against their mouth opening and width,
normalised as the model's training targets are: lips.data.normalise_targets) and pulled
towards the generic layer (the tap nearest 0 = the generic weights, other taps 0):

    min |X W - Y|^2 + lam |W - W_generic|^2

then scaled to the generic layer's spread and level on the same footage (ridge shrinks its
output; the head is to change when the mouth moves, the shape table how far).

The taps and lam are picked per person by cross-validation over contiguous blocks of
their footage; when the head does not beat the generic layer on the held-out blocks by
MARGIN, or the footage has less than MIN_SECONDS of usable frames, no head is kept and
the generic model is used (fit_head says why). Everything here is numpy: no torch at
`identity create` or at render time.

On disk a head is one safetensors file (HEAD_FILE): tensors "weight" (2, taps * channels)
and "bias" (2,), metadata: format, the taps, and the sha256 of the lip model it was fitted
on; a head is only ever applied to that model (adapt raises LipHeadError otherwise).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import IdentityError
from ..types import ANALYSIS_RATE
from .model import OUTPUTS, LipModel

HEAD_FILE = "lips_head.safetensors"
FORMAT = "facetalk-lip-head/1"
# Candidate tap sets (rows of 10 ms around the frame's time; + = later audio). One tap off 0
# is a per-person lag; several let the head weigh the sound before and after.
TAP_SETS: tuple[tuple[int, ...], ...] = ((0,), (-4,), (4,), (-8,), (8,), (-8, 0, 8), (-12, -6, 0, 6, 12))
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # ridge strength, relative to the features' mean power
FOLDS = 5  # contiguous blocks of the footage for the cross-validation
MARGIN = 0.02  # held-out r the head must gain over the generic layer to be kept
MIN_SECONDS = 30.0  # usable footage below which no head is fitted: under it heads fitted on 10-20 s lost
# up to 0.18 r on the person's later footage although their own held-out check passed (README)


class LipHeadError(IdentityError):
    """A person's lip head that belongs to another lip model (an identity problem: the fix
    is to fit the identity's head again)."""


@dataclass(frozen=True)
class LipHead:
    """weight (2, len(taps) * channels), bias (2,), taps (rows), lip_sha256: the lip model
    fitted on."""

    weight: np.ndarray
    bias: np.ndarray
    taps: tuple[int, ...]
    lip_sha256: str

    @property
    def channels(self) -> int:
        return self.weight.shape[1] // len(self.taps)


@dataclass
class HeadFit:
    """What fit_head found: the head (None: use the generic model) and why."""

    head: LipHead | None
    reason: str
    frames: int
    seconds: float  # usable footage, seconds
    cv_generic: float = float("nan")  # mean held-out r of the opening, generic layer
    cv_head: float = float("nan")  # ... the chosen head
    cv_width_generic: float = float("nan")
    cv_width_head: float = float("nan")
    taps: tuple[int, ...] = (0,)
    alpha: tuple[float, float] = (float("nan"), float("nan"))  # open, width
    fit_seconds: float = 0.0

    def entry(self) -> dict:
        """identity.json's "lips" entry."""
        r = lambda x: None if not np.isfinite(x) else round(float(x), 4)  # noqa: E731
        out = {"kind": "head" if self.head is not None else "generic", "reason": self.reason,
               "frames": self.frames, "seconds": round(self.seconds, 1),
               "cv_r": {"generic": r(self.cv_generic), "head": r(self.cv_head),
                        "width_generic": r(self.cv_width_generic), "width_head": r(self.cv_width_head)},
               "fit_seconds": round(self.fit_seconds, 2)}
        if self.head is not None:
            out |= {"file": HEAD_FILE, "lip_model": {"sha256": self.head.lip_sha256}, "taps": list(self.head.taps),
                    "alpha": [round(a, 4) for a in self.alpha]}
        return out


@dataclass
class Recording:
    """One recording of the person: its log-mel (m, n_mels) at 100 rows/s and per video
    frame the raw mouth opening and width (IOD units, NaN where unusable)."""

    mel: np.ndarray
    fps: float
    open: np.ndarray
    width: np.ndarray
    name: str = ""
    target: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


# -- features --------------------------------------------------------------------------------


def frame_features(hidden: np.ndarray, fps: float, n_frames: int, taps: tuple[int, ...]) -> np.ndarray:
    """(n_frames, len(taps) * channels): the hidden rows read at each frame's time plus each
    tap (linear interpolation, as motion.learned reads predictions; clamped at the ends)."""
    rows = np.arange(n_frames) / fps * ANALYSIS_RATE
    last = len(hidden) - 1
    parts = []
    for tap in taps:
        r = np.clip(rows + tap, 0, max(last, 0))
        i0 = np.floor(r).astype(int)
        i1 = np.minimum(i0 + 1, last)
        f = (r - i0)[:, None]
        parts.append((1 - f) * hidden[i0] + f * hidden[i1])
    return np.concatenate(parts, axis=1).astype(np.float64)


def head_rows(hidden: np.ndarray, head: LipHead) -> np.ndarray:
    """(m, 2) the head's output at every row of hidden (m, channels)."""
    m = len(hidden)
    out = np.broadcast_to(head.bias.astype(np.float64), (m, len(OUTPUTS))).copy()
    c = head.channels
    for j, tap in enumerate(head.taps):
        idx = np.clip(np.arange(m) + tap, 0, max(m - 1, 0))
        out += hidden[idx].astype(np.float64) @ head.weight[:, j * c:(j + 1) * c].T.astype(np.float64)
    return out.astype(np.float32)


class AdaptedLipModel(LipModel):
    """The lip model with a person's head in place of its output layer. Shares the base
    model's weights (nothing is copied), so one loaded model serves any number of people."""

    def __init__(self, base: LipModel, head: LipHead) -> None:
        super().__init__(base.arch, base.norm, base.params, base.config, base.sha256)
        self.head = head

    def predict(self, mel: np.ndarray) -> np.ndarray:
        return head_rows(self.hidden(mel), self.head)


def adapt(model: LipModel | None, head: LipHead | None, label: str = "lip head", name: str = "NAME"
          ) -> LipModel | None:
    """model with head applied (None or no head: model as is). LipHeadError, one line, when
    the head was fitted on another lip model (name: the identity, for the fix)."""
    if model is None or head is None:
        return model
    fix = (f"fit it again on this lip model with 'facetalk identity train-lips {name} --footage VIDEO', "
           "or render with --motion rules")
    if head.lip_sha256 != model.sha256:
        raise LipHeadError(f"{label}: {HEAD_FILE} was fitted on lip model sha256 {head.lip_sha256[:12]}, not on the "
                           f"one in use ({model.sha256[:12]}); {fix}")
    if head.channels * len(head.taps) != head.weight.shape[1] or head.channels != model.arch.channels:
        raise LipHeadError(f"{label}: {HEAD_FILE} has {head.weight.shape[1]} inputs, which do not fit the lip model; "
                           f"{fix}")
    return AdaptedLipModel(model, head)


def identity_lips(model: LipModel | None, identity) -> LipModel | None:
    """The lip model a render of identity uses: its own head on model when it has one."""
    if identity is None:
        return model
    return adapt(model, getattr(identity, "lips", None), label=identity.ref, name=identity.name)


# -- file -------------------------------------------------------------------------------------


def save_head(head: LipHead, path) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": np.ascontiguousarray(head.weight, np.float32), "bias": np.ascontiguousarray(head.bias, np.float32)},
              str(path), metadata={"format": FORMAT, "taps": json.dumps(list(head.taps)), "lip_sha256": head.lip_sha256})


def load_head(path) -> LipHead:
    """A head file; ValueError (or the safetensors error) when it is not one."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {str(meta.get('format'))[:40]!r}, not {FORMAT!r}")
        if keys != {"weight", "bias"}:
            raise ValueError(f"tensors {sorted(keys)}, not weight and bias")
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    taps = json.loads(meta.get("taps", "null"))
    sha = meta.get("lip_sha256")
    if not (isinstance(taps, list) and taps and all(isinstance(t, int) and abs(t) <= 100 for t in taps)):
        raise ValueError("its taps are not a list of row offsets")
    if not (isinstance(sha, str) and len(sha) == 64):
        raise ValueError("it names no lip model sha256")
    if weight.ndim != 2 or weight.shape[0] != len(OUTPUTS) or weight.shape[1] % len(taps) or bias.shape != (len(OUTPUTS),):
        raise ValueError(f"shapes weight {weight.shape}, bias {bias.shape}")
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise ValueError("it holds a value that is not a finite number")
    return LipHead(weight.astype(np.float32), bias.astype(np.float32), tuple(taps), sha)


# -- fitting ----------------------------------------------------------------------------------


def normalise(recordings: list[Recording]) -> None:
    """Fill each recording's target (n, 2) as the lip model's training targets are made,
    all recordings being one speaker (lips.data.normalise_targets)."""
    from .data import LipClip, normalise_targets

    clips = [LipClip(r.name, "person", "", r.fps, {}, np.asarray(r.open, np.float64), np.asarray(r.width, np.float64))
             for r in recordings]
    normalise_targets(clips)
    for r, c in zip(recordings, clips):
        r.target = c.target


def _augment(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def _regulariser(x_power: float, n: int, d: int, alpha: float) -> np.ndarray:
    """(d + 1,) ridge strength per weight: lam = alpha * mean feature power * n, the bias
    (last) barely held (lam / 1000)."""
    lam = alpha * x_power * n
    reg = np.full(d + 1, lam)
    reg[-1] = lam * 1e-3
    return reg


def _solve(gram: np.ndarray, xty: np.ndarray, prior: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """argmin |[x 1] w - y|^2 + sum reg (w - prior)^2 from the Gram matrix and x'y; (d + 1, k)."""
    return np.linalg.solve(gram + np.diag(reg), xty + reg[:, None] * prior)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 5 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _prior(taps: tuple[int, ...], w0: np.ndarray, b0: np.ndarray) -> np.ndarray:
    """(len(taps) * channels + 1, 2): the generic layer on the tap nearest 0 (a lagged
    generic layer for a single tap off 0), zeros on the others, the generic bias last."""
    c = w0.shape[1]
    prior = np.zeros((len(taps) * c + 1, 2))
    j = int(np.argmin([abs(t) for t in taps]))
    prior[j * c:(j + 1) * c] = w0.T
    prior[-1] = b0
    return prior


def fit_head(model: LipModel, recordings: list[Recording], tap_sets=TAP_SETS, alphas=ALPHAS, folds: int = FOLDS,
             margin: float | None = None, min_seconds: float | None = None,
             hidden: list[np.ndarray] | None = None) -> HeadFit:
    """The person's head from their recordings (see the module docstring), or none and why.

    margin, min_seconds: None for MARGIN and MIN_SECONDS. hidden: each recording's
    model.hidden(mel), when already computed."""
    t0 = time.perf_counter()
    margin = MARGIN if margin is None else margin
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    normalise(recordings)
    hidden = hidden if hidden is not None else [model.hidden(r.mel) for r in recordings]
    usable = [np.isfinite(r.target).all(axis=1) for r in recordings]
    frames = int(sum(u.sum() for u in usable))
    seconds = float(sum(u.sum() / r.fps for u, r in zip(usable, recordings)))
    if seconds < min_seconds or frames < 5 * folds:
        return HeadFit(None, f"{seconds:.0f} s of usable footage of the mouth with sound, less than the "
                       f"{min_seconds:.0f} s a head of its own needs: the generic lip model is used", frames, seconds,
                       fit_seconds=time.perf_counter() - t0)
    y = np.concatenate([r.target[u] for r, u in zip(recordings, usable)]).astype(np.float64)
    # contiguous blocks of the footage, in order
    block = np.minimum((np.arange(frames) * folds) // frames, folds - 1)
    w0 = model.params["out.weight"][:, :, 0].astype(np.float64)  # (2, channels)
    b0 = model.params["out.bias"].astype(np.float64)
    c = w0.shape[1]

    def features(taps):
        return np.concatenate([frame_features(h, r.fps, len(r.open), taps)[u]
                               for h, r, u in zip(hidden, recordings, usable)])

    x0 = features((0,))
    generic = x0 @ w0.T + b0
    cv_gen = [np.nanmean([_pearson(generic[block == k, j], y[block == k, j]) for k in range(folds)]) for j in range(2)]
    best = None  # (score, taps, alphas, cv per output)
    for taps in tap_sets:
        x = x0 if taps == (0,) else features(taps)
        prior = _prior(taps, w0, b0)
        xa = _augment(x)
        power = float(np.mean(x**2))
        grams = [xa[block == k].T @ xa[block == k] for k in range(folds)]
        xtys = [xa[block == k].T @ y[block == k] for k in range(folds)]
        gram, xty = sum(grams), sum(xtys)
        scores = np.full((len(alphas), 2), np.nan)
        for ai, alpha in enumerate(alphas):
            rs = [[], []]
            for k in range(folds):
                test = block == k
                reg = _regulariser(power, int((~test).sum()), x.shape[1], alpha)
                w = _solve(gram - grams[k], xty - xtys[k], prior, reg)
                pred = xa[test] @ w
                for j in range(2):
                    rs[j].append(_pearson(pred[:, j], y[test, j]))
            scores[ai] = [np.nanmean(rs[0]), np.nanmean(rs[1])]
        if np.isnan(scores[:, 0]).all():
            continue
        a_open, a_width = int(np.nanargmax(scores[:, 0])), int(np.nanargmax(np.nan_to_num(scores[:, 1], nan=-2)))
        cand = (scores[a_open, 0], taps, (alphas[a_open], alphas[a_width]), (scores[a_open, 0], scores[a_width, 1]),
                xa, gram, xty, power, prior)
        if best is None or cand[0] > best[0] + 1e-3:  # a simpler tap set wins ties (listed first)
            best = cand
    fit = HeadFit(None, "", frames, seconds, cv_gen[0], float("nan"), cv_gen[1], float("nan"))
    if best is None:
        fit.reason = "the footage's mouth does not move enough to measure: the generic lip model is used"
        fit.fit_seconds = time.perf_counter() - t0
        return fit
    _, taps, (a_open, a_width), (cv_open, cv_width), xa, gram, xty, power, prior = best
    fit.cv_head, fit.cv_width_head, fit.taps, fit.alpha = float(cv_open), float(cv_width), taps, (a_open, a_width)
    if not cv_open >= cv_gen[0] + margin:
        fit.reason = (f"a head of its own did not beat the generic lip model on held-out parts of the footage "
                      f"(r {cv_open:.2f} against {cv_gen[0]:.2f}): the generic lip model is used")
        fit.fit_seconds = time.perf_counter() - t0
        return fit
    d = xa.shape[1] - 1
    w_open = _solve(gram, xty, prior, _regulariser(power, frames, d, a_open))[:, 0]
    # the width keeps the (nearest-tap) generic layer unless its own fit helps on held-out parts
    w_width = _solve(gram, xty, prior, _regulariser(power, frames, d, a_width))[:, 1] if cv_width >= cv_gen[1] \
        else prior[:, 1]
    # same spread and level as the generic layer on this footage: ridge shrinks its output
    # (a third less spread on the congressman), and a flatter curve moves the rendered mouth
    # less than the renderers and the shape table's gains are made for; the head is to
    # change when the mouth moves, the shape table how far (an affine map keeps every r)
    w = np.stack([w_open, w_width], axis=1)
    pred, gen = xa @ w, x0 @ w0.T + b0
    scale = np.std(gen, axis=0) / np.maximum(np.std(pred, axis=0), 1e-6)
    w = w * scale
    w[-1] += np.mean(gen, axis=0) - scale * np.mean(pred, axis=0)
    weight = w[:-1].T.astype(np.float32)
    bias = w[-1].astype(np.float32)
    fit.head = LipHead(weight, bias, tuple(taps), model.sha256)
    fit.reason = (f"own lip head: held-out r {cv_open:.2f} against the generic {cv_gen[0]:.2f} "
                  f"({len(taps)} tap{'s' if len(taps) > 1 else ''} at {', '.join(f'{t * 10:+d}' for t in taps)} ms)")
    fit.fit_seconds = time.perf_counter() - t0
    return fit
