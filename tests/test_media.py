"""Media stage: decoding audio/images/video and writing the MP4, checked by reading back."""

from __future__ import annotations

import resource
import signal
import sys
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from facetalk.errors import InputError, OutputError, SpeechError
from facetalk.media.audio import load_audio, probe_audio
from facetalk.media.encode import VideoWriter, check_output_path
from facetalk.media.formats import classify
from facetalk.media.image import load_image
from facetalk.media.video import FrameReader, iter_frames, pingpong_index, probe_video

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
FILM_WAV = MEDIA / "speech" / "en-film-7s.wav"  # 7.5 s, 44.1 kHz stereo
JA_WAV = MEDIA / "speech" / "ja-9s.wav"  # 9.09 s, 48 kHz 24-bit stereo
MAN_SUIT = MEDIA / "talking" / "man-suit-6s.mp4"  # 700x700, 22.13 fps, 135 frames

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared test media not available")

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 64, 200), (20, 20, 20), (240, 240, 240)]


def _colour_frame(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    return np.full((h, w, 3), COLOURS[i % len(COLOURS)], np.uint8)


def _write_clip(path: Path, n: int, fps: float = 25.0, audio: Path | None = None, **kw) -> None:
    with VideoWriter(path, 160, 120, fps, audio_path=audio, **kw) as w:
        for i in range(n):
            w.write(_colour_frame(i))


def _stream_seconds(stream: av.stream.Stream) -> float:
    return float(stream.duration * stream.time_base)


def _encode_audio_copy(src: Path, dst: Path, codec: str, rate: int) -> None:
    """Re-encode `src` with PyAV into `dst` (container from the extension)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=rate)
        done = 0
        for frame in list(inp.decode(audio=0)) + [None]:
            for f in resampler.resample(frame):
                f.pts, f.time_base = done, Fraction(1, rate)  # lets the muxer record codec delay
                done += f.samples
                out.mux(stream.encode(f))
        out.mux(stream.encode())


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 800) -> tuple[float, int]:
    """Highest normalised correlation of a and b over lags in [-max_lag, max_lag] samples."""
    n = min(len(a), len(b)) - 2 * max_lag
    ref = a[max_lag : max_lag + n]
    best = (-1.0, 0)
    for lag in range(-max_lag, max_lag + 1, 4):
        seg = b[max_lag + lag : max_lag + lag + n]
        c = float(np.dot(ref, seg) / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12))
        best = max(best, (c, lag))
    return best


# ---------------------------------------------------------------- formats


def test_classify_kinds_and_unsupported(tmp_path: Path) -> None:
    for name, kind in [("a.JPG", "image"), ("a.webp", "image"), ("a.mkv", "video"), ("a.MOV", "video")]:
        (tmp_path / name).write_bytes(b"x")
        assert classify(tmp_path / name, "face") == kind
    (tmp_path / "a.m4a").write_bytes(b"x")
    assert classify(tmp_path / "a.m4a", "--audio") == "audio"
    (tmp_path / "a.xyz").write_bytes(b"x")
    with pytest.raises(InputError, match=r"unsupported format '\.xyz' for --face: use jpg, png, webp, mp4, mov, mkv or webm"):
        classify(tmp_path / "a.xyz", "face")
    with pytest.raises(InputError, match=r"for --audio: use wav, mp3, m4a, flac, ogg, mp4"):
        classify(tmp_path / "a.JPG", "audio")
    with pytest.raises(InputError, match="missing.png does not exist"):
        classify(tmp_path / "missing.png", "face")
    with pytest.raises(InputError, match="--face path cannot be used: File name too long"):
        classify(tmp_path / ("a" * 300 + ".png"), "face")  # the OS refuses the name itself
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")


# ---------------------------------------------------------------- encode


@needs_media
def test_write_with_audio_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    n, fps = 100, 25.0  # 4 s of video, the 7.5 s soundtrack is cut to it
    _write_clip(out, n, fps, audio=FILM_WAV, metadata={"comment": "AI generated", "ai_generated": "true"})
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp files left
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart
    with av.open(str(out)) as c:
        assert c.metadata["comment"] == "AI generated"
        assert c.metadata["ai_generated"] == "true"
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac" and a.rate == 44100 and a.channels == 2
        assert v.frames == n
        assert abs(_stream_seconds(v) - n / fps) < 1 / fps
        assert abs(_stream_seconds(a) - _stream_seconds(v)) < 1 / fps
    frames = list(iter_frames(out))
    assert len(frames) == n
    for i in (30, 33, 40, 58):  # flat colours come back within a level or two
        assert np.abs(frames[i][60, 80].astype(int) - COLOURS[i % 6]).max() <= 3


@needs_media
def test_short_audio_stays_short_and_rates(tmp_path: Path) -> None:
    out = tmp_path / "long.mp4"
    _write_clip(out, 200, 25.0, audio=FILM_WAV)  # 8 s of video, 7.5 s of speech
    with av.open(str(out)) as c:
        assert abs(_stream_seconds(c.streams.audio[0]) - 7.5) < 0.04
        assert abs(_stream_seconds(c.streams.video[0]) - 8.0) < 0.04
    # A 16 kHz mono source becomes 48 kHz mono AAC; 22.13 fps stays exact.
    speech = tmp_path / "s16k.wav"
    _write_wav(speech, 0.3 * np.sin(np.linspace(0, 2000, 16000 * 3)))
    out2 = tmp_path / "mono.mp4"
    _write_clip(out2, 44, 1350 / 61, audio=speech)
    with av.open(str(out2)) as c:
        a, v = c.streams.audio[0], c.streams.video[0]
        assert a.rate == 48000 and a.channels == 1
        assert v.average_rate == Fraction(1350, 61)
        assert abs(_stream_seconds(a) - 44 * 61 / 1350) < 1 / 22.13


def test_exception_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "result.mp4"
    out.write_bytes(b"previous render")
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, 160, 120, 25.0) as w:
            for i in range(10):
                w.write(_colour_frame(i))
            assert w.temp_path is not None and w.temp_path.name.startswith(".result.")
            assert w.temp_path.exists()
            raise RuntimeError("boom")
    assert out.read_bytes() == b"previous render"
    assert [p.name for p in tmp_path.iterdir()] == ["result.mp4"]
    _write_clip(out, 5)  # a successful write replaces it
    assert out.read_bytes()[4:8] == b"ftyp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]


def test_writer_rejects_bad_sizes_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "o.mp4", 161, 120, 25.0)
    with VideoWriter(tmp_path / "o.mp4", 160, 120, 25.0) as w:
        with pytest.raises(ValueError, match=r"\(120, 160, 3\) uint8"):
            w.write(np.zeros((120, 160, 3), np.float32))
        w.write(_colour_frame(0))
    with pytest.raises(OutputError, match=r"must end in \.mp4"):
        check_output_path(tmp_path / "o.mov")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "o.mp4")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(tmp_path / "dir.mp4")
    if sys.platform.startswith("linux"):  # /proc refuses new files even to root
        with pytest.raises(OutputError, match="cannot write to folder /proc"):
            check_output_path("/proc/o.mp4")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_failure_raises_output_error_and_cleans_up(tmp_path: Path) -> None:
    """A real write error (file size limit, like a full disk) mid-render."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    noise = np.random.default_rng(0).integers(0, 256, (20, 120, 160, 3), dtype=np.uint8)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, old_limit[1]))
        with pytest.raises(OutputError, match="cannot write .*o.mp4: File too large"):
            with VideoWriter(tmp_path / "o.mp4", 160, 120, 25.0, crf=0) as w:
                for f in noise:
                    w.write(f)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- audio


@needs_media
def test_audio_formats_agree(tmp_path: Path) -> None:
    ref = load_audio(FILM_WAV)
    assert ref.sample_rate == 16000 and ref.samples.dtype == np.float32 and ref.samples.ndim == 1
    assert abs(ref.duration - 7.5) < 1e-3
    assert 0.3 < np.abs(ref.samples).max() <= 1.0
    for ext, codec, rate in [("mp3", "libmp3lame", 44100), ("m4a", "aac", 44100), ("flac", "flac", 44100), ("ogg", "libopus", 48000)]:
        copy = tmp_path / f"speech.{ext}"
        _encode_audio_copy(FILM_WAV, copy, codec, rate)
        got = load_audio(copy)
        assert abs(got.duration - ref.duration) < 0.03, ext
        corr, lag = _best_correlation(ref.samples, got.samples)
        assert corr > 0.95 and abs(lag) <= 48, (ext, corr, lag)  # same waveform within 3 ms
        assert abs(probe_audio(copy).duration - ref.duration) < 0.05, ext


@needs_media
def test_48k_24bit_stereo_matches_plain_downmix() -> None:
    from scipy.signal import resample_poly

    info = probe_audio(JA_WAV)
    assert (info.sample_rate, info.channels) == (48000, 2)
    got = load_audio(JA_WAV)
    assert abs(got.duration - info.duration) < 1e-3
    with av.open(str(JA_WAV)) as c:
        raw = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)  # s32 interleaved
    stereo = raw.reshape(-1, 2).astype(np.float64) / 2**31
    expected = resample_poly(stereo.mean(axis=1), 1, 3)
    n = min(len(expected), len(got.samples))
    corr = np.corrcoef(expected[:n], got.samples[:n])[0, 1]
    assert corr > 0.99
    assert 0.5 < np.std(got.samples) / np.std(expected) < 2.0


@needs_media
def test_audio_from_video_trims_aac_padding() -> None:
    info = probe_audio(MAN_SUIT)
    got = load_audio(MAN_SUIT)
    assert abs(got.duration - info.duration) < 1e-3  # not the padded 1024-sample tail
    assert abs(got.duration - 6.107) < 0.01
    assert np.abs(got.samples).max() > 0.1


def test_audio_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    _write_wav(empty, np.zeros(0))
    with pytest.raises(SpeechError, match="empty.wav has zero length"):
        load_audio(empty)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 100)
    with pytest.raises(InputError, match="junk.mp3"):
        load_audio(junk)
    full = tmp_path / "full.wav"
    _write_wav(full, 0.2 * np.sin(np.arange(16000 * 4) * 0.05))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 16000])
    # FFmpeg sizes a WAV by its data, so a cut WAV is simply shorter.
    assert abs(load_audio(cut).duration - 1.0) < 1e-3
    m4a = tmp_path / "speech.m4a"
    _encode_audio_copy(full, m4a, "aac", 44100)
    data = m4a.read_bytes()
    (tmp_path / "cut.m4a").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read audio .*cut.m4a"):
        load_audio(tmp_path / "cut.m4a")
    silent_video = tmp_path / "silent.mp4"
    _write_clip(silent_video, 5)
    with pytest.raises(InputError, match="no audio stream"):
        load_audio(silent_video)


# ---------------------------------------------------------------- images


def _gradient(w: int = 96, h: int = 64) -> np.ndarray:
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], axis=2).astype(np.uint8)


def test_image_formats_and_modes(tmp_path: Path) -> None:
    rgb = _gradient()
    for ext, tol in [("png", 0), ("jpg", 12), ("webp", 16)]:
        Image.fromarray(rgb).save(tmp_path / f"g.{ext}", quality=95)
        got = load_image(tmp_path / f"g.{ext}")
        assert got.rgb.shape == (64, 96, 3) and got.rgb.dtype == np.uint8 and got.note is None
        assert np.abs(got.rgb.astype(int) - rgb).mean() <= tol / 3, ext
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    grey = load_image(tmp_path / "grey.png").rgb
    assert grey.shape == (64, 96, 3) and np.array_equal(grey[..., 0], rgb[..., 0]) and np.array_equal(grey[..., 1], grey[..., 2])
    rgba = np.dstack([rgb, np.full((64, 96), 255, np.uint8)])
    rgba[:, :48, 3] = 0  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    got = load_image(tmp_path / "cut.png")
    assert (got.rgb[:, :48] == 255).all() and np.array_equal(got.rgb[:, 48:], rgb[:, 48:])
    assert "transparency" in got.note
    pal = Image.fromarray((np.arange(96)[None, :].repeat(64, 0) // 24).astype(np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 10])
    pal.save(tmp_path / "pal.png")
    got = load_image(tmp_path / "pal.png").rgb
    assert tuple(got[10, 5]) == (255, 0, 0) and tuple(got[10, 90]) == (250, 250, 10)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert np.abs(load_image(tmp_path / "cmyk.jpg").rgb.astype(int) - rgb).mean() < 12
    deep = (rgb[..., 1].astype(np.uint16) * 257)  # 16-bit greyscale
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.abs(load_image(tmp_path / "deep.png").rgb[..., 0].astype(int) - rgb[..., 1]).max() <= 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((60, 100, 3), np.uint8)
    stored[:20, :20] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    got = load_image(tmp_path / "phone.jpg")
    assert got.rgb.shape == (100, 60, 3) and got.original_size == (60, 100)
    assert got.rgb[5, 50, 0] > 200 and got.rgb[95, 5, 0] < 50  # top-left went to top-right


def test_large_image_is_decoded_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, 2000:] = (0, 200, 0)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=80)
    Image.fromarray(big).save(tmp_path / "big.png", compress_level=1)
    # Pillow's own bomb limit would refuse this header; the decoded size is what counts.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    got = load_image(tmp_path / "big.jpg", max_side=400, max_pixels=300_000)  # only 1/8-scale decode fits
    assert got.rgb.shape == (300, 400, 3) and got.original_size == (4000, 3000)
    assert got.note == "big.jpg is 4000x3000; downscaled to 400x300"
    assert got.rgb[150, 300, 1] > 180 and got.rgb[150, 100].max() < 20
    with pytest.raises(InputError, match="big.png is 4000x3000 .* too large"):
        load_image(tmp_path / "big.png", max_side=400, max_pixels=300_000)


def test_bad_images(tmp_path: Path) -> None:
    Image.fromarray(_gradient(400, 300)).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="half.jpg"):
        load_image(tmp_path / "half.jpg")
    (tmp_path / "text.png").write_bytes(b"hello")
    with pytest.raises(InputError, match="text.png is not a JPEG, PNG or WebP"):
        load_image(tmp_path / "text.png")


# ---------------------------------------------------------------- video


def test_pingpong_index() -> None:
    assert [pingpong_index(k, 4) for k in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [pingpong_index(k, 2) for k in range(5)] == [0, 1, 0, 1, 0]
    assert [pingpong_index(k, 1) for k in range(3)] == [0, 0, 0]
    for n in (3, 7, 135):
        seq = [pingpong_index(k, n) for k in range(5 * n)]
        assert all(abs(a - b) == 1 for a, b in zip(seq, seq[1:]))  # no held frames
        assert min(seq) == 0 and max(seq) == n - 1


@needs_media
def test_frame_reader_matches_stream_forward_and_reverse() -> None:
    info = probe_video(MAN_SUIT)
    assert (info.width, info.height, info.rotation, info.has_audio) == (700, 700, 0, True)
    assert abs(info.fps - 22.131) < 0.01 and info.n_frames == 135
    size = (350, 350)
    ref = list(iter_frames(MAN_SUIT, size=size))
    assert len(ref) == 135 and ref[0].shape == (350, 350, 3)
    with FrameReader(MAN_SUIT, chunk=32, size=size) as reader:
        assert len(reader) == 135
        for i in range(135):
            assert np.array_equal(reader.get(i), ref[i]), i
        forward = reader.decoded
        assert forward <= 140  # sequential: no re-decoding
        for i in range(134, -1, -1):
            assert np.array_equal(reader.get(i), ref[i]), i
        assert reader.decoded - forward <= 2 * 135  # each chunk decoded once per pass, not per frame
        seq = [pingpong_index(k, 135) for k in range(300)]
        assert all(np.array_equal(reader.get(i), ref[i]) for i in seq[::7])
        with pytest.raises(IndexError):
            reader.get(135)


def test_counts_frames_when_container_does_not(tmp_path: Path) -> None:
    mkv = tmp_path / "clip.mkv"
    with av.open(str(mkv), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(37):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 6, np.uint8), format="rgb24")))
        out.mux(s.encode())
    info = probe_video(mkv)
    assert info.n_frames == 37 and info.fps == 25.0 and not info.has_audio
    with FrameReader(mkv, chunk=8) as reader:
        assert abs(int(reader.get(30)[0, 0, 0]) - 180) <= 3
        assert abs(int(reader.get(3)[0, 0, 0]) - 18) <= 3


def test_rotation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :16] = 255  # white block at the stored top-left
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(90)  # shown turned a quarter counter-clockwise
        for _ in range(3):
            out.mux(s.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(s.encode())
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    frame = next(iter_frames(path))
    assert frame.shape == (64, 48, 3)
    assert frame[58, 5].min() > 200 and frame[5, 5].max() < 50  # top-left went to bottom-left


def test_truncated_video(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (60, 120, 160, 3), dtype=np.uint8)
    for faststart in (False, True):
        path = tmp_path / f"full{int(faststart)}.mp4"
        with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
            s = out.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
            for f in noise:
                out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(s.encode())
        data = path.read_bytes()
        cut = tmp_path / f"cut{int(faststart)}.mp4"
        cut.write_bytes(data[: len(data) // 2])
        if not faststart:  # index at the end: nothing can be read
            with pytest.raises(InputError, match="cut0.mp4"):
                probe_video(cut)
            continue
        # Index first: the frames before the cut are yielded, then the damage is reported.
        assert probe_video(cut).n_frames == 60
        got = []
        with pytest.raises(InputError, match=r"cut1.mp4 .* truncated or damaged"):
            for f in iter_frames(cut):
                got.append(f)
        assert 10 < len(got) < 50
        full = list(iter_frames(path))
        assert all(np.array_equal(a, b) for a, b in zip(got, full))  # the good part is intact
        with pytest.raises(InputError, match=r"holds \d+ of its 60 frames"):
            FrameReader(cut)


@needs_media
def test_fast_colour_conversion_matches_ffmpeg() -> None:
    """Our RGB->YUV 4:2:0 matches swscale's accurate path; our YUV->RGB stays within a
    level on average of it on real footage (OpenCV repeats each chroma sample over its
    2x2 block where swscale interpolates, which shows only at sharp colour edges)."""
    import cv2
    from av.video.reformatter import Interpolation

    from facetalk.media.colour import rgb_to_yuv420, yuv420_to_rgb

    rng = np.random.default_rng(1)
    rgb = cv2.resize(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), (320, 180), interpolation=cv2.INTER_CUBIC)
    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    ours = av.VideoFrame.from_ndarray(rgb_to_yuv420(rgb), format="yuv420p")
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", src_colorspace="ITU709", dst_colorspace="ITU709", dst_color_range="MPEG", interpolation=flags)
    assert np.abs(ours.to_ndarray().astype(int) - ref.to_ndarray()).max() <= 2
    # BT.601 limited; full range (yuvj420p); untagged 1080p, read as BT.709
    for clip in ("congresswoman-8s.mp4", "congressman-60s-256px.mp4", "presenter-1080p-7s.mp4"):
        with av.open(str(MEDIA / "talking" / clip)) as c:
            frame = next(c.decode(video=0))
        sw = frame.reformat(format="rgb24", interpolation=flags,
                            src_colorspace="ITU709" if frame.height >= 720 else None,
                            src_color_range="JPEG" if frame.color_range == 2 else None,
                            dst_color_range="JPEG" if frame.color_range == 2 else None).to_ndarray()
        fast = yuv420_to_rgb(frame.to_ndarray(), frame.width, frame.height, frame.colorspace, frame.color_range == 2)
        diff = np.abs(fast.astype(int) - sw)
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6, clip


@needs_media
@pytest.mark.parametrize("clip, size, crop", [
    ("presenter-1080p-7s.mp4", (1280, 720), (0, 0, 1920, 1080)),  # BT.709 (untagged 1080p), shrunk
    ("presenter-1080p-7s.mp4", (640, 360), (0, 0, 1920, 1080)),  # still BT.709 once under 720 lines
    ("congresswoman-8s.mp4", (640, 360), (0, 120, 512, 408)),  # BT.601, cut and enlarged
    ("congressman-60s-256px.mp4", (128, 128), (64, 64, 192, 192)),  # full range, cut only
    ("congresswoman-8s.mp4", (300, 200), (1, 3, 451, 303)),  # odd offsets: converted first
])
def test_frames_cut_and_sized_while_decoding_match_framing(clip: str, size, crop) -> None:
    """iter_frames(path, size, crop) resizes the YUV planes before converting (cheaper);
    what it gives matches converting first and cutting and resizing the RGB frame, as
    framing.Framing.apply does, up to rounding and chroma at sharp colour edges."""
    from facetalk.framing import Framing

    framing = Framing(crop=crop, width=size[0], height=size[1])
    path = MEDIA / "talking" / clip
    for k, (a, b) in enumerate(zip(iter_frames(path, framing.size, framing.crop), iter_frames(path))):
        b = framing.apply(b)
        assert a.shape == b.shape == (size[1], size[0], 3) and a.dtype == np.uint8
        diff = np.abs(a.astype(int) - b)
        assert diff.mean() < 0.6 and np.percentile(diff, 99) <= 4, (clip, diff.mean(), np.percentile(diff, 99))
        if k == 2:
            break


def test_frame_cache_round_trip() -> None:
    from facetalk.media.frame_cache import FrameCache

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8) for _ in range(5)]
    with FrameCache(64, 36) as cache:
        assert list(cache.tee(iter(frames))) == frames
        for i in (4, 0, 2, 3, 1):  # any order, as ping-pong reads them
            assert np.array_equal(cache.get(i), frames[i])
        with pytest.raises(IndexError):
            cache.get(5)
        with pytest.raises(ValueError):
            cache.append(np.zeros((10, 10, 3), np.uint8))
    assert FrameCache.fits(1280, 720, 100) and not FrameCache.fits(1920, 1080, 10**6)
