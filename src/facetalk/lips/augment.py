"""What users feed the lip model, applied to clean training speech: narrow-band phone
audio, lossy codecs, rooms, noise and level. Each takes and returns 16 kHz mono float32.

Gain and speed are applied during training on the features themselves (a gain is a shift
of the log-mel; a speed change stretches features and targets alike), so they cost nothing
here. Everything is seeded by the caller's numpy Generator.
"""

from __future__ import annotations

import io

import av
import numpy as np
from scipy.signal import fftconvolve, lfilter, resample_poly

from ..types import SAMPLE_RATE


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)[:n]
    return np.pad(x, (0, n - len(x))) if len(x) < n else x


def narrowband(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Through a low sample rate and back: 8 kHz (a phone) or 11.025 kHz."""
    down = 8000 if rng.random() < 0.6 else 11025
    y = resample_poly(resample_poly(x, down, SAMPLE_RATE), SAMPLE_RATE, down)
    return _fit(y, len(x))


def codec(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Encoded and decoded by a lossy codec at a low bit rate: MP3 or AAC, 24-48 kb/s."""
    name, fmt = ("libmp3lame", "mp3") if rng.random() < 0.5 else ("aac", "adts")
    rate = int(rng.choice([24_000, 32_000, 48_000]))
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(name, rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = rate
        frame_size = stream.codec_context.frame_size or 1152
        pcm = np.asarray(x, dtype=np.float32)
        for s in range(0, len(pcm), frame_size):
            chunk = pcm[s:s + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = s
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    parts = []
    with av.open(buf, "r") as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                parts.append(f.to_ndarray().reshape(-1))
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    # the encoder's priming delay: align on the cross-correlation peak within 100 ms
    lag = _delay(x, y, 1600)
    return _fit(y[lag:], len(x))


def _delay(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    n = min(len(x), len(y), 5 * SAMPLE_RATE)
    if n <= max_lag:
        return 0
    c = fftconvolve(y[: n + max_lag], x[:n][::-1], mode="full")[n - 1 : n - 1 + max_lag]
    return int(np.argmax(np.abs(c)))


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small room: exponentially decaying noise as the impulse response (RT60 0.2-0.7 s),
    mixed with the direct sound, then a random spectral tilt (a cheap or distant microphone)."""
    rt60 = rng.uniform(0.2, 0.7)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 0.0
    ir *= rng.uniform(0.2, 0.6) / np.sqrt(np.sum(ir**2))
    ir[0] = 1.0
    y = fftconvolve(x, ir)[: len(x)]
    a = rng.uniform(-0.6, 0.6)  # first-order tilt: a > 0 dulls, a < 0 brightens
    y = lfilter([1.0 - abs(a)], [1.0, -a], y) if a > 0 else lfilter([1.0, a], [1.0], y)
    return _peak(y, x)


def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish or white noise at 5-25 dB below the speech's loud parts."""
    white = rng.standard_normal(len(x))
    if rng.random() < 0.6:
        white = lfilter([1.0], [1.0, -0.95], white)  # brown/pink-ish: most energy low
    loud = np.percentile(np.abs(x), 95) + 1e-9
    level = loud * 10 ** (-rng.uniform(5, 25) / 20)
    y = x + white / (np.percentile(np.abs(white), 95) + 1e-9) * level
    return _peak(y, x)


def _peak(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """y scaled to ref's peak (so no clipping), float32."""
    p = np.max(np.abs(y)) + 1e-9
    return (y * (max(np.max(np.abs(ref)), 1e-4) / p)).astype(np.float32)


# Variants stored per clip by `lipsync prepare`; "clean" is the audio as recorded.
VARIANTS = {
    "clean": None,
    "phone": narrowband,
    "codec": codec,
    "room": lambda x, rng: noise(room(x, rng), rng),
}
