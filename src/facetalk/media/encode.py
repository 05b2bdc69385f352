"""Writing the result: H.264 (yuv420p) + AAC in an MP4 that appears only when complete.

Frames are encoded as they are written and the soundtrack is decoded and encoded
alongside them (interleaved), so memory stays constant with video length. The file is
written under a hidden temporary name in the output folder and renamed into place only
when the `with` block ends without an exception.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ..errors import InputError, OutputError
from .colour import rgb_to_yuv420
from .audio import decode_audio, probe_audio
from .formats import error_reason, open_media

_KEEP_AUDIO_RATES = (44_100, 48_000)  # AAC rates kept as they come; others go to 48 kHz
_AUDIO_RATE = 48_000
_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709: HD players assume it for untagged video anyway
_MPEG_RANGE = 1  # limited (16-235) range, what every player expects from H.264


def _write_failed(path: Path, e: BaseException) -> OutputError:
    full = getattr(e, "errno", None) == errno.ENOSPC
    hint = "free some disk space" if full else "choose another output folder"
    return OutputError(f"cannot write {path}: {error_reason(e)} ({hint})")


def check_output_path(path: str | Path) -> Path:
    """Fail early, before any work, if `path` cannot receive the MP4.

    Checks the .mp4 extension, that the folder exists and that a file can be created in
    it (by creating and removing one: permission bits alone mislead on some mounts).
    Returns the path. Raises OutputError naming the problem and the fix.
    """
    p = Path(path)
    if p.suffix.lower() != ".mp4":
        raise OutputError(f"output {p} must end in .mp4 (facetalk writes MP4 video): rename it")
    folder = p.absolute().parent
    if not folder.exists():
        raise OutputError(f"folder {folder} for the output does not exist: create it or choose another")
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder: choose an output path inside a folder")
    if p.is_dir():
        raise OutputError(f"output {p} is a folder: give a file name ending in .mp4")
    probe = folder / f".{p.name}.{secrets.token_hex(4)}.check"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"cannot write to folder {folder}: {error_reason(e)} (choose another output folder)"
        ) from e
    return p


def _mp4_holds(stream: av.audio.stream.AudioStream) -> bool:
    """Whether an MP4 can carry this audio stream's packets as they are (its header is
    written to memory: FFmpeg's muxer is the one that knows)."""
    probe = av.open(io.BytesIO(), mode="w", format="mp4")
    try:
        probe.add_stream_from_template(stream)
        probe.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False
    finally:
        try:
            probe.close()
        except (av.FFmpegError, ValueError):
            pass


def mp4_can_copy_audio(path: str | Path) -> bool:
    """Whether VideoWriter(audio_path=path, audio_copy=True) can copy the first audio
    stream of `path` into the MP4 untouched (False: no audio, or a codec MP4 cannot hold,
    such as Vorbis). Raises InputError if the file cannot be read."""
    with open_media(path, "audio") as source:
        return bool(source.streams.audio) and _mp4_holds(source.streams.audio[0])


def _audio_layout(channels: int) -> str:
    return "mono" if channels <= 1 else "stereo"


class VideoWriter:
    """Write RGB frames (and optionally a soundtrack) to an MP4, atomically.

        with VideoWriter("out.mp4", 1280, 720, 25.0, audio_path="speech.wav") as w:
            for rgb in frames:        # each (height, width, 3) uint8
                w.write(rgb)

    Video: libx264, yuv420p, BT.709 tagged, crf/preset as given, +faststart.
    Audio (if audio_path): its first audio stream (any supported audio or video file) as
    AAC at 44.1/48 kHz as the source (else 48 kHz), mono or stereo as the source, cut at
    the video's duration n_frames / fps; a shorter soundtrack stays shorter.
    With audio_copy=True the first audio stream of audio_path is instead copied packet
    for packet (no decoding, no re-encoding, no cut: the bytes stay as they are), its
    timestamps kept relative to the start of that file's video stream (0 without one),
    so a re-encoded copy of a video stays in sync. See mp4_can_copy_audio.
    metadata: container tags (any keys), readable back with PyAV's container.metadata.

    On an exception inside the block the temporary file is removed and an existing file
    at `path` is left untouched. Write failures (disk full, permissions) raise OutputError.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | Fraction,
        audio_path: str | Path | None = None,
        crf: int = 18,
        preset: str = "superfast",  # half the CPU of veryfast at 720p; crf keeps the quality
        metadata: dict[str, str] | None = None,
        audio_copy: bool = False,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"frame size must be positive and even for yuv420p, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = check_output_path(path)
        self.width = int(width)
        self.height = int(height)
        # A rational rate keeps timestamps exact (29.97 -> 30000/1001, 22.13 -> 1350/61).
        self.rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.audio_path = Path(audio_path) if audio_path is not None else None
        self.crf = crf
        self.preset = preset
        self.metadata = dict(metadata or {})
        self.n_frames = 0
        self._tmp: Path | None = None
        self._out: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        self._audio_chunks: Iterator[np.ndarray] | None = None
        self._audio_pending: np.ndarray | None = None
        self._audio_rate = 0
        self._audio_layout = "mono"
        self._audio_done = 0  # samples encoded so far
        self.audio_copy = audio_copy and audio_path is not None
        self._copy_source: av.container.InputContainer | None = None
        self._copy_packets: Iterator[av.Packet] | None = None
        self._copy_pending: av.Packet | None = None
        self._copy_shift = 0  # source audio ticks to subtract (the source video's start)

    @property
    def temp_path(self) -> Path | None:
        """Where the file is being written until it is complete (None when closed)."""
        return self._tmp

    def __enter__(self) -> VideoWriter:
        folder = self.path.absolute().parent
        tmp = folder / f".{self.path.stem}.{secrets.token_hex(4)}.part.mp4"
        try:
            # 0o666 so the finished file gets the usual umask-based permissions.
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except OSError as e:
            raise _write_failed(self.path, e) from e
        self._tmp = tmp
        try:
            self._open_streams(tmp)
        except BaseException:
            self._abort()
            raise
        return self

    def _open_streams(self, tmp: Path) -> None:
        if self.audio_copy:
            self._open_copy_source()
        elif self.audio_path is not None:
            info = probe_audio(self.audio_path)  # InputError now, before any frame is encoded
            self._audio_rate = info.sample_rate if info.sample_rate in _KEEP_AUDIO_RATES else _AUDIO_RATE
            self._audio_layout = _audio_layout(info.channels)
        try:
            out = av.open(
                str(tmp),
                mode="w",
                format="mp4",
                # faststart: moov first, so players start before the whole file arrives;
                # use_metadata_tags: keep custom keys (e.g. an "AI generated" label).
                options={"movflags": "+faststart+use_metadata_tags"},
            )
        except (av.FFmpegError, OSError) as e:
            raise _write_failed(self.path, e) from e
        self._out = out
        for key, value in self.metadata.items():
            out.metadata[str(key)] = str(value)
        video = out.add_stream("libx264", rate=self.rate)
        video.width = self.width
        video.height = self.height
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(self.crf), "preset": self.preset}
        cc = video.codec_context
        cc.colorspace = _BT709
        cc.color_primaries = _BT709
        cc.color_trc = _BT709
        cc.color_range = _MPEG_RANGE
        self._video = video
        if self._copy_source is not None:
            source = self._copy_source.streams.audio[0]
            audio = out.add_stream_from_template(source)
            if "language" in source.metadata:
                audio.metadata["language"] = source.metadata["language"]
            self._audio = audio
        elif self.audio_path is not None:
            audio = out.add_stream("aac", rate=self._audio_rate)
            audio.layout = self._audio_layout
            self._audio = audio
            self._audio_chunks = decode_audio(self.audio_path, self._audio_rate, self._audio_layout)

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: (height, width, 3) uint8 RGB."""
        if self._out is None or self._video is None:
            raise RuntimeError("VideoWriter.write outside its `with` block")
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"frame must be ({self.height}, {self.width}, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        # Converted with the matrix the stream is tagged with (BT.709, limited range), so
        # colours survive any player; see media.colour for why not swscale.
        frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(np.ascontiguousarray(rgb)), format="yuv420p")
        frame.pts = self.n_frames
        frame.time_base = 1 / self.rate
        try:
            self._out.mux(self._video.encode(frame))
            self.n_frames += 1
            self._pump_audio(self.n_frames / self.rate)
        except (av.FFmpegError, OSError) as e:
            raise _write_failed(self.path, e) from e

    def _open_copy_source(self) -> None:
        assert self.audio_path is not None
        source = open_media(self.audio_path, "audio")
        self._copy_source = source
        if not source.streams.audio:
            raise InputError(f"{self.audio_path} has no audio stream to copy")
        stream = source.streams.audio[0]
        if not _mp4_holds(stream):
            raise InputError(
                f"the {stream.codec_context.name} audio of {self.audio_path} cannot go into an MP4 as it is"
            )
        video = source.streams.video[0] if source.streams.video else None
        if video is not None and video.start_time and video.time_base and stream.time_base:
            self._copy_shift = round(video.start_time * video.time_base / stream.time_base)
        self._copy_packets = (p for p in source.demux(stream) if p.size and p.pts is not None)

    def _copy_audio(self, until_s: Fraction | None) -> None:
        """Mux copied audio packets that start before `until_s` seconds (all if None)."""
        assert self._out is not None and self._audio is not None
        while True:
            if self._copy_pending is None:
                if self._copy_packets is None:
                    return
                try:
                    packet = next(self._copy_packets, None)
                except (av.FFmpegError, OSError):
                    packet = None  # a damaged tail: what came before is kept
                if packet is None:
                    self._copy_packets = None
                    return
                packet.pts -= self._copy_shift
                if packet.dts is not None:
                    packet.dts -= self._copy_shift
                self._copy_pending = packet
            packet = self._copy_pending
            assert packet.pts is not None and packet.time_base is not None
            if until_s is not None and packet.pts * packet.time_base >= until_s:
                return
            packet.stream = self._audio  # mux rescales from the source's time base
            self._out.mux(packet)
            self._copy_pending = None

    def _pump_audio(self, until_s: Fraction) -> None:
        """Encode the soundtrack up to `until_s` seconds (never past it)."""
        if self._audio is None or self._out is None:
            return
        if self._copy_source is not None:
            self._copy_audio(until_s)
            return
        limit = int(until_s * self._audio_rate)
        while self._audio_done < limit:
            if self._audio_pending is None:
                if self._audio_chunks is None:
                    return
                self._audio_pending = next(self._audio_chunks, None)
                if self._audio_pending is None:
                    self._audio_chunks = None  # the soundtrack ended before the video
                    return
            take = min(self._audio_pending.shape[1], limit - self._audio_done)
            piece = self._audio_pending[:, :take]
            rest = self._audio_pending[:, take:]
            self._audio_pending = rest if rest.shape[1] else None
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(piece), format="fltp", layout=self._audio_layout
            )
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_done
            frame.time_base = Fraction(1, self._audio_rate)
            self._out.mux(self._audio.encode(frame))
            self._audio_done += take

    def _finish(self) -> None:
        assert self._out is not None and self._video is not None and self._tmp is not None
        if self.n_frames == 0:
            raise ValueError(f"no frames were written to {self.path}")
        try:
            self._pump_audio(self.n_frames / self.rate)
            self._out.mux(self._video.encode())
            if self._copy_source is not None:
                self._copy_audio(None)  # the whole stream: copied audio is never cut
            elif self._audio is not None:
                self._out.mux(self._audio.encode())
            self._out.close()
            self._out = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except (av.FFmpegError, OSError) as e:
            raise _write_failed(self.path, e) from e
        finally:
            self._close_audio_source()

    def _close_audio_source(self) -> None:
        self._copy_packets = None
        self._copy_pending = None
        if self._copy_source is not None:
            self._copy_source.close()
            self._copy_source = None
        if self._audio_chunks is not None:
            self._audio_chunks.close()  # closes the source container
            self._audio_chunks = None

    def _abort(self) -> None:
        """Drop everything written so far; never raises."""
        self._close_audio_source()
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
                pass
            self._out = None
        if self._tmp is not None:
            try:
                self._tmp.unlink(missing_ok=True)
            except OSError:
                pass
            self._tmp = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise
