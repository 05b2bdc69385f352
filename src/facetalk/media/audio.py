"""Reading speech: any audio file, or a video's soundtrack, decoded by PyAV (FFmpeg).

Decoding streams through av.AudioResampler, so memory beyond the returned samples stays
small whatever the source's rate, channel count or sample format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, SpeechError
from ..types import SAMPLE_RATE, Audio
from .formats import classify, error_reason, open_media

# A decode shorter than the header's duration by more than this is a damaged file, not
# codec padding or rounding (a few AAC/MP3 frames at most).
_TRUNCATION_SLACK_S = 0.25


@dataclass(frozen=True)
class AudioInfo:
    """What an audio stream's header says, before decoding."""

    duration: float  # seconds; 0.0 when the container does not say
    sample_rate: int
    channels: int


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise InputError(f"{path} has no audio stream: give a file with speech in it")
    return container.streams.audio[0]


def _declared_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    """Duration in seconds from the stream header, else the container's; None if unknown."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def probe_audio(path: str | Path) -> AudioInfo:
    """Duration, sample rate and channel count of the first audio stream of `path`.

    Reads headers only. Raises InputError if the file is missing, unreadable or has no audio.
    """
    p = Path(path)
    classify(p, "audio")
    with open_media(p, "audio") as container:
        stream = _audio_stream(container, p)
        duration = _declared_duration(container, stream) or 0.0
        return AudioInfo(duration=duration, sample_rate=int(stream.rate), channels=int(stream.channels))


def decode_audio(
    path: str | Path, rate: int, layout: str = "mono", check_truncated: bool = True
) -> Iterator[np.ndarray]:
    """Stream the first audio stream of `path` as float32 chunks of shape (channels, n).

    Resampled to `rate` Hz and `layout` ("mono" or "stereo"), and cut at the duration the
    header declares, so codec padding (AAC fills its last frame to 1024 samples) never shows.
    Raises InputError if the file cannot be decoded, or (with check_truncated) if it ends
    clearly before its declared duration.
    """
    p = Path(path)
    with open_media(p, "audio") as container:
        stream = _audio_stream(container, p)
        declared = _declared_duration(container, stream)
        limit = round(declared * rate) if declared is not None else None
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        done = 0
        try:
            frames = container.decode(stream)
            for frame in _with_flush(frames):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().astype(np.float32, copy=False)
                    if limit is not None:
                        chunk = chunk[:, : max(0, limit - done)]
                    if chunk.shape[1]:
                        done += chunk.shape[1]
                        yield chunk
                if limit is not None and done >= limit:
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"cannot decode audio in {p}: {error_reason(e)}") from e
        if check_truncated and declared is not None and done > 0:
            if done / rate < declared - max(_TRUNCATION_SLACK_S, 0.02 * declared):
                raise InputError(
                    f"cannot decode audio in {p}: it ends at {done / rate:.2f} s but its header says "
                    f"{declared:.2f} s (the file is truncated; export it again)"
                )


def _with_flush(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame | None]:
    """The decoded frames, then None so the resampler releases what it still holds."""
    yield from frames
    yield None


def load_audio(path: str | Path) -> Audio:
    """Decode speech from an audio file or a video's soundtrack.

    Returns Audio with samples (n,) float32 in [-1, 1], mono, at SAMPLE_RATE (16 kHz).
    Raises InputError (missing, unsupported, undecodable, truncated, no audio stream) or
    SpeechError (no samples at all).
    """
    p = Path(path)
    classify(p, "audio")
    chunks = [c[0] for c in decode_audio(p, SAMPLE_RATE, "mono")]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise SpeechError(f"audio in {p} has zero length: give a recording with speech in it")
    # Down-mixing and resampling can overshoot full scale by a hair.
    np.clip(samples, -1.0, 1.0, out=samples)
    return Audio(samples=samples, sample_rate=SAMPLE_RATE, source=str(p))
