"""Reading a video of the face: probing, streaming frames, and random access for ping-pong.

Frames come out upright (the container's display rotation is applied) as RGB uint8
(H, W, 3). Nothing here holds a whole video: iter_frames streams, and FrameReader keeps
a bounded cache of decoded frames.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import InputError
from .colour import yuv420_to_rgb
from .formats import classify, error_reason, open_media

_FALLBACK_FPS = 25.0  # only for streams that state no rate at all
# swscale's default YUV->RGB path truncates (greys come back 1-2 levels dark); accurate
# rounding with full chroma interpolation returns what the encoder was given.
_TO_RGB_FLAGS = (
    Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
)


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, measured before rendering.

    width, height: of the frames as iter_frames yields them (after rotation).
    fps: average frame rate (frames per second, may be fractional such as 22.13).
    n_frames: frames in the stream (from the container, else counted by demuxing).
    duration: seconds of the video stream.
    rotation: degrees counter-clockwise applied to the stored frames to show them
        upright (0, 90, 180 or 270); already applied by iter_frames and FrameReader.
    """

    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    has_audio: bool
    rotation: int


def pingpong_index(k: int, n: int) -> int:
    """Source frame for output frame k when a clip of n frames plays forward then backward.

    0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...: each turn frame is shown once, so the motion
    has no hold at the ends. n == 1 always gives 0.
    """
    if n <= 0:
        raise ValueError(f"pingpong_index needs n >= 1, got {n}")
    if k < 0:
        raise ValueError(f"pingpong_index needs k >= 0, got {k}")
    if n == 1:
        return 0
    period = 2 * (n - 1)
    r = k % period
    return r if r < n else period - r


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(f"{path} has no video stream: give a video of a person, or a photo")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame threads: decoding is the cost of reading
    return stream


def _fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return _FALLBACK_FPS


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees to show the frame upright, snapped to a quarter turn."""
    return int(round(frame.rotation / 90.0)) % 4 * 90


def _to_rgb(
    frame: av.VideoFrame, rotation: int, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Decoded frame -> upright RGB uint8 (H, W, 3); cut to crop=(x0, y0, x1, y1) of the
    upright frame, then resized to size=(w, h), if given (INTER_AREA shrinking, else
    INTER_CUBIC, as framing.Framing.apply does)."""
    full_range = frame.color_range == 2 or frame.format.name == "yuvj420p"  # AVCOL_RANGE_JPEG
    yuv420 = frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0
    if yuv420 and not rotation and (crop is not None or size is not None):
        planes = _yuv420_framed(frame.to_ndarray(), frame.width, frame.height, crop, size)
        if planes is not None:
            h, w = planes.shape[0] * 2 // 3, planes.shape[1]
            return yuv420_to_rgb(planes, w, h, frame.colorspace, full_range, tagged_height=frame.height)
    if yuv420:
        # the common case, converted in OpenCV: swscale takes ~13 ms a 1080p frame
        rgb = yuv420_to_rgb(frame.to_ndarray(), frame.width, frame.height, frame.colorspace, full_range)
    else:
        rgb = _swscale_rgb(frame, frame.color_range == 2)
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    if crop is not None:
        x0, y0, x1, y1 = crop
        rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        interp = cv2.INTER_AREA if rgb.shape[1] > size[0] else cv2.INTER_CUBIC
        rgb = cv2.resize(rgb, (int(size[0]), int(size[1])), interpolation=interp)
    return rgb


def _yuv420_framed(
    planes: np.ndarray, width: int, height: int, crop: tuple[int, int, int, int] | None, size: tuple[int, int] | None
) -> np.ndarray | None:
    """Flat 4:2:0 planes cut and resized plane by plane, before the conversion to RGB:
    half the bytes to resize, and the conversion runs at the output size (1080p to 720p:
    12 -> 6 ms of CPU a frame). None when the crop or the size is odd (chroma would
    shift by half a pixel): the caller converts first."""
    x0, y0, x1, y1 = crop if crop is not None else (0, 0, width, height)
    w, h = (int(size[0]), int(size[1])) if size is not None else (x1 - x0, y1 - y0)
    if any(v % 2 for v in (x0, y0, x1, y1, w, h)):
        return None
    n = width * height
    flat = planes.reshape(-1)
    y = flat[:n].reshape(height, width)[y0:y1, x0:x1]
    cb = flat[n : n * 5 // 4].reshape(height // 2, width // 2)[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
    cr = flat[n * 5 // 4 : n * 3 // 2].reshape(height // 2, width // 2)[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
    interp = cv2.INTER_AREA if x1 - x0 > w else cv2.INTER_CUBIC
    out = np.empty(h * w * 3 // 2, np.uint8)
    for part, (pw, ph), start in ((y, (w, h), 0), (cb, (w // 2, h // 2), h * w), (cr, (w // 2, h // 2), h * w * 5 // 4)):
        if part.shape[1] != pw or part.shape[0] != ph:
            part = cv2.resize(part, (pw, ph), interpolation=interp)
        out[start : start + pw * ph] = part.reshape(-1)
    return out.reshape(h * 3 // 2, w)


def _swscale_rgb(frame: av.VideoFrame, full_range: bool) -> np.ndarray:
    """Any other pixel format, through FFmpeg's converter."""
    # PyAV takes the matrix from the frame's tag but not the range: pass full range on.
    return frame.reformat(
        format="rgb24",
        interpolation=_TO_RGB_FLAGS,
        src_color_range="JPEG" if full_range else None,
        dst_color_range="JPEG" if full_range else None,
    ).to_ndarray()


def _packet_pts(path: Path) -> list[int] | None:
    """Presentation timestamps of every video packet, sorted (frame i has the i-th);
    None when some packet has no timestamp. Demuxing only: no decoding."""
    pts: list[int] = []
    with open_media(path, "video") as container:
        stream = _video_stream(container, path)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.pts is None:
                    return None
                pts.append(int(packet.pts))
        except (av.FFmpegError, OSError):
            pass  # a damaged tail: the frames before it are still indexed
    return sorted(pts)


def probe_video(path: str | Path) -> VideoInfo:
    """Size, rate, frame count, duration, audio presence and rotation of a video.

    Decodes only the first frame (for the rotation and real frame size). Raises InputError
    if the file is missing, unsupported, unreadable or has no decodable frame.
    """
    p = Path(path)
    classify(p, "video")
    with open_media(p, "video") as container:
        stream = _video_stream(container, p)
        fps = _fps(stream)
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise InputError(f"{p} has no decodable video frame: the file is empty or damaged") from None
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"cannot decode video {p}: {error_reason(e)} (is it truncated?)") from e
        rotation = _rotation(first)
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        has_audio = bool(container.streams.audio)
        n_frames = int(stream.frames or 0)
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
    if n_frames <= 0:
        # Matroska/WebM headers give no count: count packets (cheap, no decoding).
        pts = _packet_pts(p)
        n_frames = len(pts) if pts is not None else max(1, round(duration * fps))
    if duration <= 0:
        duration = n_frames / fps
    return VideoInfo(w, h, fps, n_frames, duration, has_audio, rotation)


def iter_frames(
    path: str | Path, size: tuple[int, int] | None = None, crop: tuple[int, int, int, int] | None = None
) -> Iterator[np.ndarray]:
    """Stream the frames of a video in order as upright RGB uint8 (H, W, 3).

    crop: (x0, y0, x1, y1) of the upright frame to keep, or None; size: (width, height)
    to resize every frame (or its crop) to (INTER_AREA shrinking, else INTER_CUBIC), or None.
    One frame at a time is held. If the file is damaged part-way, the frames before the
    damage are yielded and then InputError is raised (so a run never silently uses a
    shorter clip than the file claims to hold).
    """
    p = Path(path)
    classify(p, "video")
    with open_media(p, "video") as container:
        stream = _video_stream(container, p)
        declared = int(stream.frames or 0)
        n = 0
        try:
            for frame in container.decode(stream):
                yield _to_rgb(frame, _rotation(frame), size, crop)
                n += 1
        except (av.FFmpegError, OSError) as e:
            raise InputError(
                f"cannot decode video {p} after frame {n}: {error_reason(e)} "
                "(the file is truncated or damaged; re-export it)"
            ) from e
    if n == 0:
        raise InputError(f"{p} has no decodable video frame: the file is empty or damaged")
    if _falls_short(n, declared):
        # The demuxer stops quietly at a cut-off end; the header still knows the count.
        raise InputError(
            f"video {p} ends after {n} of its {declared} frames: "
            "the file is truncated or damaged; re-export it"
        )


def _falls_short(count: int, declared: int) -> bool:
    """Whether `count` frames are clearly fewer than the header's `declared` (0 = unknown).

    A frame or two may legitimately go (edit lists, a decoder's lost tail frame)."""
    return declared > 0 and count < declared - max(2, declared // 50)


class FrameReader:
    """Random access to a video's frames by index, decoding in chunks.

    get(i) decodes the chunk of `chunk` frames holding i (seeking to the keyframe before
    it) and keeps at most `cache_chunks` chunks of frames, so memory is bounded whatever
    the video's length. Reading forward continues the open decoder without seeking;
    reading backward decodes each chunk once per pass (frames of the chunk before the
    requested one that the decoder passes through are kept too).

    Use as a context manager, or call close().
    """

    def __init__(
        self,
        path: str | Path,
        chunk: int = 32,
        size: tuple[int, int] | None = None,
        cache_chunks: int = 2,
    ) -> None:
        if chunk < 1 or cache_chunks < 1:
            raise ValueError("chunk and cache_chunks must be >= 1")
        self.path = Path(path)
        classify(self.path, "video")
        self.chunk = chunk
        self.size = size
        self.info = probe_video(self.path)
        pts = _packet_pts(self.path)
        # Without timestamps frames can only be found by counting from the start.
        self._pts: list[int] | None = pts
        self._index_of: dict[int, int] = {t: i for i, t in enumerate(pts)} if pts is not None else {}
        self.n_frames = len(pts) if pts is not None else self.info.n_frames
        if pts is not None and _falls_short(len(pts), self.info.n_frames):
            # Random access into a cut-off file would fail part-way through a render.
            raise InputError(
                f"video {self.path} holds {len(pts)} of its {self.info.n_frames} frames: "
                "the file is truncated or damaged; re-export it"
            )
        self._capacity = chunk * cache_chunks
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._container = open_media(self.path, "video")
        self._stream = _video_stream(self._container, self.path)
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index the open decoder yields next (when _decoder is not None)
        self.decoded = 0  # frames decoded so far (for measuring access patterns)

    @property
    def fps(self) -> float:
        return self.info.fps

    def __len__(self) -> int:
        return self.n_frames

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._decoder = None
        self._cache.clear()
        self._container.close()

    def get(self, i: int) -> np.ndarray:
        """Frame i (0-based) as upright RGB uint8 (H, W, 3), resized to `size` if set.

        Raises IndexError outside [0, n_frames) and InputError if the frame cannot be decoded.
        """
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} outside 0..{self.n_frames - 1} of {self.path}")
        frame = self._cache.get(i)
        if frame is not None:
            self._cache.move_to_end(i)
            return frame
        start = i - i % self.chunk
        end = min(self.n_frames, start + self.chunk)
        if self._decoder is None or not (self._next <= start and start - self._next <= self.chunk):
            self._seek_before(start)
        self._decode_until(end, keep_from=max(0, start - self.chunk))
        frame = self._cache.get(i)
        if frame is None:
            raise InputError(
                f"cannot decode frame {i} of {self.path}: the file is truncated or damaged; re-export it"
            )
        self._cache.move_to_end(i)
        return frame

    def _restart(self) -> None:
        """Reopen and decode from the first frame (always correct, never fast)."""
        self._container.close()
        self._container = open_media(self.path, "video")
        self._stream = _video_stream(self._container, self.path)
        self._decoder = self._counting(self._container.decode(self._stream))
        self._next = 0

    def _seek_before(self, start: int) -> None:
        """Position the decoder at a keyframe at or before frame `start`."""
        if self._pts is None or start == 0:
            self._restart()
            return
        back = 0
        while start - back > 0:
            target = self._pts[start - back]
            try:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            except (av.FFmpegError, OSError):
                break
            decoder = self._counting(self._container.decode(self._stream))
            first = self._first_keyframe(decoder)
            if first is not None and first[1] <= start:
                self._decoder = _prepend(first[0], decoder)
                self._next = first[1]
                return
            # Landed after the frame (B-frame reordering, a coarse index): seek earlier.
            back = max(self.chunk, 2 * back)
        self._restart()

    def _first_keyframe(self, decoder: Iterator[av.VideoFrame]) -> tuple[av.VideoFrame, int] | None:
        """Skip leading frames until a keyframe (after a seek, frames before it may
        reference pictures that were never decoded); return it and its index."""
        try:
            for frame in decoder:
                if frame.key_frame and frame.pts in self._index_of:
                    return frame, self._index_of[frame.pts]
        except (av.FFmpegError, OSError):
            return None
        return None

    def _decode_until(self, end: int, keep_from: int) -> None:
        """Decode on until frame end-1, caching frames with index in [keep_from, end)."""
        assert self._decoder is not None
        index = self._next - 1
        try:
            for frame in self._decoder:
                if frame.pts is not None and frame.pts in self._index_of:
                    index = self._index_of[frame.pts]
                else:
                    index += 1
                if keep_from <= index < end and index not in self._cache:
                    self._store(index, _to_rgb(frame, _rotation(frame), self.size))
                if index >= end - 1:
                    self._next = index + 1
                    return
        except (av.FFmpegError, OSError):
            pass  # damaged tail: get() reports the frame it could not find
        self._decoder = None

    def _counting(self, decoder: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        for frame in decoder:
            self.decoded += 1
            yield frame

    def _store(self, index: int, rgb: np.ndarray) -> None:
        self._cache[index] = rgb
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)


def _prepend(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest
