"""Log-mel features of speech at ANALYSIS_RATE (one row per 10 ms), the lip model's input.

Frames are the speech stage's own (speech.acoustic.frame_signal: 25 ms Hann windows
centred on each 10 ms step), so row i of the features and sample i of the loudness
curve describe the same instant. The filterbank is the HTK mel scale written out here
(a dozen lines) rather than pulling librosa and numba into every install.
"""

from __future__ import annotations

import numpy as np

from ..speech.acoustic import WINDOW, blockwise
from ..types import ANALYSIS_RATE, SAMPLE_RATE

N_MELS = 40
N_FFT = 512
F_MIN, F_MAX = 60.0, 7600.0
LOG_FLOOR = 1e-10  # power floor: digital silence is log(1e-10) = -23, not -inf


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE,
                   f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float32 triangular filters on the HTK mel scale, each with
    unit area (Slaney-style normalisation), so a band's value does not depend on its width."""
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return tri.T.astype(np.float32)


_WINDOW = np.hanning(WINDOW + 2)[1:-1].astype(np.float32)
_BANK = mel_filterbank()


def _block_power(frames: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft(frames * _WINDOW, n=N_FFT, axis=1)
    return (spec.real**2 + spec.imag**2).astype(np.float32) @ _BANK


def mel_power(samples: np.ndarray) -> np.ndarray:
    """(m, N_MELS) float32 mel-band power of 16 kHz mono samples, m = ceil(n / 160)."""
    samples = np.asarray(samples, dtype=np.float32).ravel()
    m = int(np.ceil(len(samples) * ANALYSIS_RATE / SAMPLE_RATE))
    if m == 0:
        return np.zeros((0, N_MELS), np.float32)
    return blockwise(samples, m, _block_power).reshape(m, N_MELS)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(m, N_MELS) float32 natural-log mel power (see mel_power)."""
    return np.log(mel_power(samples) + LOG_FLOOR).astype(np.float32)
