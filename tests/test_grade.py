"""facetalk.finish.grade and `facetalk grade`: a real clip graded with LUTs whose result
is known, read back with PyAV; the user errors as one line and exit code 2."""

from __future__ import annotations

import os
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest

from facetalk.cli import main
from facetalk.context import RunContext
from facetalk.errors import InputError, OutputError
from facetalk.finish.grade import grade_video
from facetalk.finish.lut import load_lut
from facetalk.media.encode import VideoWriter
from facetalk.media.video import iter_frames, probe_video

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
ANCHOR = MEDIA / "talking" / "news-anchor-de-20s.mp4"
LABEL = {"comment": "AI-generated with facetalk (test)", "title": "Anchor, graded", "encoder_tool": "facetalk"}

needs_media = pytest.mark.skipif(not ANCHOR.is_file(), reason=f"{ANCHOR} not present")


def _cube(path: Path, fn, n: int = 9) -> Path:
    """A 3D .cube whose entry at input (r, g, b) is fn(r, g, b); rows with red fastest."""
    g = np.linspace(0, 1, n)
    rows = [" ".join(f"{v:.6f}" for v in fn(r, gg, b)) for b in g for gg in g for r in g]
    path.write_text(f'TITLE "test"\nLUT_3D_SIZE {n}\n' + "\n".join(rows) + "\n")
    return path


def _invert_1d(path: Path) -> Path:
    ramp = np.linspace(1, 0, 64)
    path.write_text("LUT_1D_SIZE 64\n" + "\n".join(f"{v:.6f} {v:.6f} {v:.6f}" for v in ramp) + "\n")
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of the news anchor (512x512, 25 fps) with its speech and a facetalk-like label."""
    if not ANCHOR.is_file():
        pytest.skip(f"{ANCHOR} not present")
    out = tmp_path_factory.mktemp("grade") / "anchor-2s.mp4"
    with VideoWriter(out, 512, 512, 25.0, audio_path=ANCHOR, crf=16, metadata=LABEL) as w:
        for rgb in islice(iter_frames(ANCHOR), 50):
            w.write(rgb)
    return out


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grade") / "silent.mp4"
    with VideoWriter(out, 320, 240, 30.0, crf=16) as w:
        for i in range(20):
            frame = np.zeros((240, 320, 3), np.uint8)
            frame[:, : 16 * (i + 1)] = (200, 60, 30)
            frame[120:] += np.uint8(40)
            w.write(frame)
    return out


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path))).astype(np.int16)


def _audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.size]


@needs_media
def test_channel_swap_grade_keeps_audio_duration_and_label(clip, tmp_path):
    out = tmp_path / "swapped.mp4"
    lut = _cube(tmp_path / "swap.cube", lambda r, g, b: (b, r, g))  # out = (B, R, G)
    ctx_events: list[tuple[str, float]] = []
    result = grade_video(clip, lut, out, ctx=RunContext(progress=lambda s, f, m: ctx_events.append((s, f))))
    assert result.audio == "copied" and (result.width, result.height, result.n_frames) == (512, 512, 50)
    assert ctx_events[-1] == ("grade", 1.0)

    src, graded = _frames(clip), _frames(out)
    assert graded.shape == src.shape
    swapped = src[..., [2, 0, 1]]
    err = np.abs(graded - swapped)
    assert err.mean() < 2.0 and np.percentile(err, 99) < 12  # a second H.264 + 4:2:0 pass
    assert np.abs(graded - src).mean() > 10  # the anchor's colours did move

    a, b = probe_video(clip), probe_video(out)
    assert (b.n_frames, b.fps) == (a.n_frames, a.fps) and abs(b.duration - a.duration) < 1e-6
    assert _audio_packets(out) == _audio_packets(clip)  # bytes and times, untouched
    with av.open(str(out)) as c:
        tags = dict(c.metadata)
        v = c.streams.video[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt) == ("h264", "yuv420p")
    for k, val in LABEL.items():
        assert tags.get(k) == val
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


@needs_media
def test_cli_1d_invert_at_half_strength_and_trilinear(clip, tmp_path, capsys):
    out = tmp_path / "half.mp4"
    rc = main(["grade", str(clip), "--lut", str(_invert_1d(tmp_path / "inv.cube")), "--lut-strength", "0.5",
               "--interpolation", "trilinear", "-o", str(out), "--quiet"])
    assert rc == 0 and capsys.readouterr().err == ""
    src, graded = _frames(clip), _frames(out)
    # halfway between x and 255 - x is mid-grey everywhere
    assert np.abs(graded - 127.5).mean() < 1.5 and np.abs(src - 127.5).mean() > 30

    full = tmp_path / "full.mp4"
    rc = main(["grade", str(clip), "--lut", str(tmp_path / "inv.cube"), "-o", str(full)])
    assert rc == 0
    assert capsys.readouterr().out.strip() == f"wrote {full} (512x512, 2.00 s, audio copied)"
    assert np.abs(_frames(full) - (255 - src)).mean() < 2.0


def test_video_without_audio(silent_clip, tmp_path):
    out = tmp_path / "graded.mp4"
    lut = load_lut(_cube(tmp_path / "warm.cube", lambda r, g, b: (min(1.0, r * 1.1), g, b * 0.8)))
    result = grade_video(silent_clip, lut, out, crf=12)
    assert result.audio == "none" and result.n_frames == 20
    with av.open(str(out)) as c:
        assert not c.streams.audio and float(c.streams.video[0].average_rate) == 30.0
    src = _frames(silent_clip)
    expected = lut.apply(src.astype(np.uint8).reshape(-1, 320, 3)).reshape(src.shape).astype(np.int16)
    assert np.abs(_frames(out) - expected).mean() < 1.5


@needs_media
def test_opus_soundtrack_of_an_mkv_is_copied(clip, tmp_path):
    """Any video: Matroska with Opus audio (video packets remuxed, speech encoded to Opus)."""
    mkv = tmp_path / "talk.mkv"
    with av.open(str(clip)) as inp, av.open(str(mkv), "w") as out:
        v_in = inp.streams.video[0]
        v_out = out.add_stream_from_template(v_in)
        a_out = out.add_stream("libopus", rate=48000)
        a_out.layout = "stereo"
        resampler = av.AudioResampler(format=a_out.format.name, layout="stereo", rate=48000)
        for p in inp.demux(v_in):
            if p.size:
                p.stream = v_out
                out.mux(p)
        inp.seek(0)
        done = 0
        for frame in list(inp.decode(audio=0)) + [None]:
            for f in resampler.resample(frame):
                f.pts, f.time_base = done, Fraction(1, 48000)
                done += f.samples
                out.mux(a_out.encode(f))
        out.mux(a_out.encode())
    graded = tmp_path / "talk.mp4"
    result = grade_video(mkv, _cube(tmp_path / "id.cube", lambda r, g, b: (r, g, b)), graded)
    assert result.audio == "copied"
    with av.open(str(graded)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
    assert [p for p, _ in _audio_packets(graded)] == [p for p, _ in _audio_packets(mkv)]
    assert result.n_frames == 50


# ---------------------------------------------------------------- user errors


def _fails(args: list[str], capsys, folder: Path, *words: str) -> str:
    before = set(folder.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("facetalk: error: "), err
    for w in words:
        assert w in err, err
    assert set(folder.iterdir()) == before  # nothing written, nothing half-written
    return err


def test_errors_are_one_line_and_leave_nothing(silent_clip, tmp_path, capsys):
    lut = _cube(tmp_path / "id.cube", lambda r, g, b: (r, g, b), n=2)
    out = str(tmp_path / "out.mp4")
    _fails(["grade", str(tmp_path / "nope.mp4"), "--lut", str(lut), "-o", out], capsys, tmp_path, "does not exist")
    png = tmp_path / "still.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    _fails(["grade", str(png), "--lut", str(lut), "-o", out], capsys, tmp_path, "not a video")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all")
    _fails(["grade", str(fake), "--lut", str(lut), "-o", out], capsys, tmp_path, "fake.mp4")
    _fails(["grade", str(silent_clip), "--lut", str(lut), "-o", str(tmp_path / "out.mov")], capsys, tmp_path, ".mp4")
    _fails(["grade", str(silent_clip), "--lut", str(tmp_path / "none.cube"), "-o", out], capsys, tmp_path,
           "none.cube", "does not exist")
    bad = tmp_path / "bad.cube"
    bad.write_text("LUT_3D_SIZE 2\n0 0 0\n0 0 zero\n")
    _fails(["grade", str(silent_clip), "--lut", str(bad), "-o", out], capsys, tmp_path, f"{bad}:3:")
    _fails(["grade", str(silent_clip), "--lut", str(lut), "-o", str(tmp_path / "no" / "out.mp4")], capsys,
           tmp_path, "does not exist")


def test_refuses_to_grade_a_video_into_itself(silent_clip, tmp_path, capsys):
    video = tmp_path / "talk.mp4"
    video.write_bytes(silent_clip.read_bytes())
    lut = _cube(tmp_path / "id.cube", lambda r, g, b: (r, g, b), n=2)
    before = video.read_bytes()
    _fails(["grade", str(video), "--lut", str(lut), "-o", str(video)], capsys, tmp_path, "is the input")
    os.link(video, tmp_path / "alias.mp4")
    (tmp_path / "sym.mp4").symlink_to(video)
    for other in ("alias.mp4", "sym.mp4", "./talk.mp4"):
        with pytest.raises(OutputError, match="is the input"):
            grade_video(video, lut, tmp_path / other)
    with pytest.raises(OutputError, match="is the input"):
        grade_video(video, lut, Path(os.path.relpath(video)))
    assert video.read_bytes() == before
    with pytest.raises(InputError, match="0..1"):
        grade_video(video, lut, tmp_path / "x.mp4", strength=1.5)


def test_audio_mp4_cannot_hold_is_re_encoded_with_a_warning(silent_clip, tmp_path):
    """8-bit PCM in Matroska has no MP4 form: it goes to AAC, and the run says so."""
    mkv = tmp_path / "pcm.mkv"
    with av.open(str(silent_clip)) as inp, av.open(str(mkv), "w") as out:
        v_out = out.add_stream_from_template(inp.streams.video[0])
        a_out = out.add_stream("pcm_u8", rate=44100)
        a_out.layout = "mono"
        for p in inp.demux(inp.streams.video[0]):
            if p.size:
                p.stream = v_out
                out.mux(p)
        tone = (128 + 60 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.uint8)
        for k in range(0, len(tone), 1024):
            f = av.AudioFrame.from_ndarray(tone[None, k : k + 1024].copy(), format="u8", layout="mono")
            f.sample_rate, f.pts, f.time_base = 44100, k, Fraction(1, 44100)
            out.mux(a_out.encode(f))
        out.mux(a_out.encode())
    ctx = RunContext()
    result = grade_video(mkv, _cube(tmp_path / "id.cube", lambda r, g, b: (r, g, b), n=2), tmp_path / "o.mp4", ctx=ctx)
    assert result.audio == "re-encoded"
    assert any("re-encoded to AAC" in w for w in ctx.warnings)
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.abs(samples).max() > 0.2  # the tone came through
