"""Language-independent speech analysis at ANALYSIS_RATE frames per second.

Loudness, voice activity, fricative cues and LPC formants, each normalised to the
clip itself (its speech level, its speaker's formant range) so that the result does
not depend on recording gain or on who speaks. `acoustic_cues` turns the features
into mouth shapes and runs them through the same animation rules as aligned phones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import resample_poly

from ..types import ANALYSIS_RATE, SAMPLE_RATE, Audio, Cue, Shape
from .cues import ShapeRule, animate_rules, n_frames

HOP = int(SAMPLE_RATE / ANALYSIS_RATE)  # 160 samples
WINDOW = 400  # 25 ms analysis window
SILENT_DB = -120.0  # level given to digital silence
ENERGY_RANGE_DB = 40.0  # energy 0 this far below the speech level
MIN_SPEECH_RANGE_DB = 8.0  # steady noise spans ~1-3 dB; even one word spans more
MIN_SPEECH_DB = -65.0  # speech level below this is treated as silence (dither, hum)
HANGOVER_FRAMES = 5
FILL_GAP_FRAMES = 10  # gaps <= 100 ms inside speech are filled (Rhubarb)
MIN_SEGMENT_FRAMES = 5  # speech segments < 50 ms are dropped (Rhubarb)
FORMANT_RATE = 10_000  # formants below 5 kHz: LPC at 10 kHz with order 12
LPC_ORDER = 12


@dataclass(frozen=True)
class AcousticFeatures:
    """Per-frame features, all (m,) with m = ceil(duration * ANALYSIS_RATE).

    energy in [0, 1] (1 = the clip's speech level); voiced: voice activity;
    level_db: raw frame level in dBFS; noisiness in [0, 1] (high-band energy share,
    high for fricatives); periodic: voiced (not fricative, not silent) frames;
    f1/f2: formant frequencies in Hz (nan where not estimated);
    openness/spread/rounding in [0, 1], normalised per speaker.
    """

    energy: np.ndarray
    voiced: np.ndarray
    level_db: np.ndarray
    noisiness: np.ndarray
    periodic: np.ndarray
    f1: np.ndarray
    f2: np.ndarray
    openness: np.ndarray
    spread: np.ndarray
    rounding: np.ndarray


BLOCK_FRAMES = 3000  # 30 s: framed copies of a long recording are built a block at a time


def _padded(samples: np.ndarray, m: int) -> np.ndarray:
    pad = (WINDOW - HOP) // 2
    return np.pad(samples.astype(np.float32), (pad, pad + WINDOW + m * HOP))


def _frames(padded: np.ndarray, start: int, stop: int) -> np.ndarray:
    return padded[np.arange(start, stop)[:, None] * HOP + np.arange(WINDOW)[None, :]]


def frame_signal(samples: np.ndarray, m: int) -> np.ndarray:
    """(n,) samples -> (m, WINDOW) frames centred on each 10 ms step."""
    return _frames(_padded(samples, m), 0, m)


def blockwise(samples: np.ndarray, m: int, fn) -> np.ndarray:
    """fn over the (k, WINDOW) frames of samples, BLOCK_FRAMES at a time, results joined:
    memory stays flat with the length of the audio (10 minutes framed at once took 800 MB)."""
    x = _padded(samples, m)
    parts = [fn(_frames(x, b, min(m, b + BLOCK_FRAMES))) for b in range(0, m, BLOCK_FRAMES)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """(m, WINDOW) -> (m,) RMS level in dBFS; digital silence gets SILENT_DB."""
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return np.where(rms > 1e-6, 20 * np.log10(np.maximum(rms, 1e-12)), SILENT_DB)


def speech_level(level_db: np.ndarray) -> tuple[float, float]:
    """(speech level, noise floor) in dB: robust percentiles over non-silent frames."""
    live = level_db[level_db > SILENT_DB + 1]
    if live.size < 5:
        return SILENT_DB, SILENT_DB
    return float(np.percentile(live, 95)), float(np.percentile(live, 10))


def normalised_energy(level_db: np.ndarray, reference_db: float) -> np.ndarray:
    """(m,) energy in [0, 1]: 1 at the speech level, 0 ENERGY_RANGE_DB below; gain-invariant."""
    return np.clip(1.0 + (level_db - reference_db) / ENERGY_RANGE_DB, 0.0, 1.0).astype(np.float32)


def clean_segments(active: np.ndarray, fill: int = FILL_GAP_FRAMES, min_len: int = MIN_SEGMENT_FRAMES) -> np.ndarray:
    """Fill inner gaps <= fill frames, then drop segments < min_len frames. (m,) bool."""
    out = active.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], out.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    for prev_end, next_start in zip(ends[:-1], starts[1:]):
        if next_start - prev_end <= fill:
            out[prev_end:next_start] = True
    edges = np.flatnonzero(np.diff(np.concatenate(([0], out.astype(np.int8), [0]))))
    for s, e in zip(edges[::2], edges[1::2]):
        if e - s < min_len:
            out[s:e] = False
    return out


def voice_activity(level_db: np.ndarray, reference_db: float, floor_db: float) -> np.ndarray:
    """(m,) bool: frames above an adaptive threshold between noise floor and speech level.

    Steady noise has its loud and quiet frames close together, so a clip whose range
    is under MIN_SPEECH_RANGE_DB has no speech; digital silence is never speech.
    """
    if reference_db < MIN_SPEECH_DB or reference_db - floor_db < MIN_SPEECH_RANGE_DB:
        return np.zeros(level_db.shape, dtype=bool)
    threshold = floor_db + max(6.0, 0.35 * (reference_db - floor_db))
    above = level_db > threshold
    # Hangover: speech lingers a few frames after the level drops (decaying vowels).
    held = above.copy()
    for k in range(1, HANGOVER_FRAMES + 1):
        held[k:] |= above[:-k]
    return clean_segments(held)


def band_noisiness(frames: np.ndarray) -> np.ndarray:
    """(m, WINDOW) -> (m,) share of energy above 3 kHz: high for S, SH, F, T bursts."""
    spec = np.abs(np.fft.rfft(frames * np.hanning(WINDOW), axis=1)) ** 2
    freqs = np.fft.rfftfreq(WINDOW, 1.0 / SAMPLE_RATE)
    high = spec[:, freqs >= 3000].sum(axis=1)
    total = spec[:, freqs >= 80].sum(axis=1) + 1e-12
    return (high / total).astype(np.float32)


def lpc_coefficients(frames: np.ndarray, order: int) -> np.ndarray:
    """(m, w) windowed frames -> (m, order + 1) LPC polynomials by batched Levinson-Durbin."""
    m, w = frames.shape
    spectrum = np.fft.rfft(frames, n=2 * w, axis=1)
    r = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : order + 1]
    r[:, 0] *= 1.0 + 1e-6  # white-noise correction keeps the recursion stable
    r[:, 0] += 1e-12
    a = np.zeros((m, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("mj,mj->m", a[:, 1:i], r[:, i - 1 : 0 : -1]) if i > 1 else r[:, 1].copy()
        k = -acc / err
        a_prev = a.copy()
        a[:, i] = k
        if i > 1:
            a[:, 1:i] = a_prev[:, 1:i] + k[:, None] * a_prev[:, i - 1 : 0 : -1]
        err = err * (1.0 - k**2)
    return a


def formants(samples: np.ndarray, m: int, frames_wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m,) F1 and F2 in Hz from LPC roots, nan where not wanted or not found."""
    f1 = np.full(m, np.nan, dtype=np.float32)
    f2 = np.full(m, np.nan, dtype=np.float32)
    idx = np.flatnonzero(frames_wanted)
    if idx.size == 0:
        return f1, f2
    x = resample_poly(samples.astype(np.float64), FORMANT_RATE, SAMPLE_RATE)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])  # pre-emphasis flattens the glottal tilt
    hop = FORMANT_RATE / ANALYSIS_RATE
    win = int(0.025 * FORMANT_RATE)
    xp = np.pad(x, (0, win))
    for b in range(0, idx.size, BLOCK_FRAMES):  # a block at a time: flat memory on long audio
        part = idx[b : b + BLOCK_FRAMES]
        starts = np.clip((part * hop + hop / 2 - win / 2).astype(int), 0, max(0, len(x) - win))
        frames = xp[starts[:, None] + np.arange(win)[None, :]] * np.hamming(win)
        a = lpc_coefficients(frames, LPC_ORDER)
        # Roots of each polynomial: eigenvalues of its companion matrix, all frames at once.
        comp = np.zeros((len(part), LPC_ORDER, LPC_ORDER))
        comp[:, 0, :] = -a[:, 1:]
        comp[:, np.arange(1, LPC_ORDER), np.arange(LPC_ORDER - 1)] = 1.0
        roots = np.linalg.eigvals(comp)
        freq = np.angle(roots) * FORMANT_RATE / (2 * np.pi)
        bandwidth = -np.log(np.maximum(np.abs(roots), 1e-9)) * FORMANT_RATE / np.pi
        ok = (np.imag(roots) > 0) & (freq > 200) & (freq < 4500) & (bandwidth < 500)
        freq = np.where(ok, freq, np.inf)
        freq.sort(axis=1)
        f1[part] = np.where(np.isfinite(freq[:, 0]), freq[:, 0], np.nan)
        f2[part] = np.where(np.isfinite(freq[:, 1]), freq[:, 1], np.nan)
    return f1, f2


def speaker_normalise(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(m,) values -> [0, 1] between the 10th and 90th percentile over masked frames (nan stays 0.5)."""
    sel = values[mask & np.isfinite(values)]
    if sel.size < 10:
        return np.full(values.shape, 0.5, dtype=np.float32)
    lo, hi = np.percentile(sel, [10, 90])
    out = np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return np.where(np.isfinite(out), out, 0.5).astype(np.float32)


def analyse_features(audio: Audio) -> AcousticFeatures:
    """All per-frame features of `audio` (mono float32 at SAMPLE_RATE)."""
    samples = np.asarray(audio.samples, dtype=np.float32)
    m = n_frames(audio.duration)
    level = blockwise(samples, m, frame_levels)
    reference, floor = speech_level(level)
    energy = normalised_energy(level, reference)
    voiced = voice_activity(level, reference, floor)
    noisiness = blockwise(samples, m, band_noisiness) if voiced.any() else np.zeros(m, dtype=np.float32)
    # Periodic (vowel-like) frames: active, not dominated by high-band noise, not faint.
    periodic = voiced & (noisiness < 0.35) & (energy > 0.45)
    f1, f2 = formants(samples, m, periodic)
    f1s = median_filter(np.nan_to_num(f1, nan=np.nanmedian(f1) if periodic.any() else 0.0), size=5)
    f2s = median_filter(np.nan_to_num(f2, nan=np.nanmedian(f2) if periodic.any() else 0.0), size=5)
    f1n = speaker_normalise(np.where(periodic, f1s, np.nan), periodic)
    f2n = speaker_normalise(np.where(periodic, f2s, np.nan), periodic)
    # Loud vowels open more: blend F1 with energy so a shouted "ee" still opens a little.
    openness = np.clip(0.7 * f1n + 0.3 * energy, 0.0, 1.0).astype(np.float32)
    spread = np.where(periodic, f2n, 0.0).astype(np.float32)
    rounding = np.where(periodic, np.clip((1.0 - f2n) * (1.0 - 0.5 * f1n), 0.0, 1.0), 0.0).astype(np.float32)
    return AcousticFeatures(
        energy, voiced, level.astype(np.float32), noisiness, periodic, f1, f2, openness, spread, rounding
    )


# Shape per frame class, with a representative phone so vowel shapes are anticipated
# like aligned vowels are.
_CLASS_PHONES: dict[Shape, str] = {Shape.D: "AA", Shape.C: "EH", Shape.E: "AO", Shape.F: "UW", Shape.A: "M"}


def frame_shapes(features: AcousticFeatures) -> list[tuple[Shape, str | None]]:
    """(shape, phone-like label) per frame: X outside speech, A for near-closures,
    B for fricatives, vowels by openness / spreading / rounding."""
    out: list[tuple[Shape, str | None]] = []
    for i in range(len(features.energy)):
        if not features.voiced[i]:
            out.append((Shape.X, None))
        elif features.energy[i] < 0.3:
            out.append((Shape.A, "M"))
        elif not features.periodic[i]:
            out.append((Shape.B, "S"))
        else:
            o, s, r = features.openness[i], features.spread[i], features.rounding[i]
            if r > 0.7 and o < 0.55:
                shape = Shape.F if o < 0.35 else Shape.E
            elif o > 0.68:
                shape = Shape.D
            elif s > 0.7 and o < 0.45:
                shape = Shape.B
                out.append((shape, "IY"))
                continue
            else:
                shape = Shape.C
            out.append((shape, _CLASS_PHONES[shape]))
    return out


def smooth_labels(labels: list[tuple[Shape, str | None]], size: int = 5) -> list[tuple[Shape, str | None]]:
    """Majority vote over a sliding window, so one-frame flickers do not become shapes."""
    codes = {lab: k for k, lab in enumerate(dict.fromkeys(labels))}
    inverse = list(codes)
    arr = np.array([codes[lab] for lab in labels])
    half = size // 2
    out = []
    for i in range(len(arr)):
        window = arr[max(0, i - half) : i + half + 1]
        counts = np.bincount(window)
        best = counts.argmax()
        out.append(inverse[arr[i]] if counts[arr[i]] == counts[best] else inverse[best])
    return out


def acoustic_cues(features: AcousticFeatures, duration: float) -> list[Cue]:
    """Mouth cues from acoustic features alone; same timing rules as aligned phones."""
    labels = smooth_labels(frame_shapes(features))
    rules = []
    for i, (shape, phone) in enumerate(labels):
        if rules and rules[-1][2].shapes == frozenset({shape}) and rules[-1][2].phone == phone:
            rules[-1] = (rules[-1][0], i + 1, rules[-1][2])
        else:
            rules.append((i, i + 1, ShapeRule(frozenset({shape}), phone)))
    return animate_rules(rules, duration)
