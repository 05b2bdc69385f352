"""`facetalk eval` and `facetalk bench`: known answers through the runner, end to end.

Clips are made on the spot from the first seconds of a real talking clip, so every
figure is measured the way `facetalk eval` measures a render: landmarks re-detected
from an encoded video file, pixels decoded from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facetalk.eval import metrics
from facetalk.eval import report
from facetalk.eval.run import (_VIDEO_MODES, DEFAULT_MODES, EvalOptions, EvalResult, ModeResult, RealClip, _request,
                               measure_generated, pick_photo_frame, prepare_real)
from facetalk.media.encode import VideoWriter
from facetalk.media.video import iter_frames

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIP = MEDIA / "talking" / "congresswoman-8s.mp4"
N_FRAMES = 60  # 2.4 s at 25 fps
SIDE = 256  # half size: the face stays ~130 px, well above the detector's 80 px
OPTIONS = EvalOptions(pixel_every=2, embed_every=10)


def write_clip(path: Path, frames: list[np.ndarray], audio: Path | None = None) -> Path:
    with VideoWriter(path, SIDE, SIDE, 25.0, audio_path=audio, crf=10) as writer:
        for rgb in frames:
            writer.write(rgb)
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    if not CLIP.is_file():
        pytest.skip(f"test media missing: {CLIP}")
    out = []
    for rgb in iter_frames(CLIP, size=(SIDE, SIDE)):
        out.append(rgb)
        if len(out) == N_FRAMES:
            break
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def models():
    from facetalk.face.models import FaceModels

    return FaceModels()


@pytest.fixture(scope="module")
def real(frames, work, models) -> RealClip:
    clip = write_clip(work / "real.mp4", frames, audio=CLIP)
    return prepare_real(clip, None, work, models, OPTIONS)


def measure(path: Path, real: RealClip, models, video_type: bool = True) -> dict[str, float]:
    return measure_generated(path, real, models, OPTIONS, video_type=video_type)[0]


def test_real_side_is_measured(real):
    assert real.n_frames == N_FRAMES
    assert metrics.valid_frames(real.landmarks).mean() > 0.95
    assert np.isfinite(real.sharpness).sum() >= N_FRAMES // 2 - 2  # every 2nd frame
    assert len(real.embeddings) == 6 and np.isfinite(real.embedding).all()
    assert real.audio.is_file()
    open_ = real.openness
    assert np.nanmax(open_) - np.nanmin(open_) > 0.1  # she talks: a curve worth comparing


def test_clip_against_itself_is_perfect(real, models):
    m = measure(real.video, real, models)
    assert m["openness_r"] == pytest.approx(1.0, abs=1e-9)
    assert m["av_offset"] == 0
    assert m["width_r"] == pytest.approx(1.0, abs=1e-9)
    assert m["width_offset"] == 0 and m["width_offset_r"] == pytest.approx(1.0, abs=1e-9)
    assert m["lmd"] == pytest.approx(0.0, abs=1e-9)
    assert m["psnr"] == float("inf") and m["ssim"] == pytest.approx(1.0)
    assert m["sharpness_ratio"] == pytest.approx(1.0) and m["jitter_ratio"] == pytest.approx(1.0)
    assert m["openness_spread"] == pytest.approx(1.0)
    assert m["identity_mean"] < 0.3  # the person's own frames against their mean


def test_clip_late_by_three_frames_gives_offset_three(frames, real, work, models):
    late = write_clip(work / "late.mp4", [frames[0]] * 3 + frames[:-3])
    m = measure(late, real, models)
    assert m["av_offset"] == 3  # positive: the generated mouth moves late
    assert m["offset_r"] > 0.9
    assert m["openness_r"] < m["offset_r"] - 0.1  # lag 0, what a viewer sees, is worse
    # the mouth corners are late by the same three frames
    assert m["width_offset"] == 3
    assert m["width_offset_r"] > 0.9
    assert m["width_r"] < m["width_offset_r"] - 0.1


def test_frozen_video_does_not_correlate(frames, real, work, models):
    frozen = write_clip(work / "frozen.mp4", [frames[0]] * N_FRAMES)
    m, gen_open = measure_generated(frozen, real, models, OPTIONS, video_type=False)
    # the still clip's openness is codec noise only; its chance correlation over 60 frames
    # has a standard deviation of ~0.13, far from the 0.9+ of a mouth that follows
    assert np.nanstd(gen_open) < 0.1 * np.nanstd(real.openness)
    assert m["openness_spread"] < 0.1
    assert abs(m["openness_r"]) < 0.5
    assert abs(m["width_r"]) < 0.5  # nor do its mouth corners
    assert np.isnan(m["psnr"])  # not a video-type mode: no pixel comparison
    assert m["lmd"] > 0.02


def test_blurred_mouth_is_less_sharp(frames, real, work, models):
    blurred = []
    for rgb, lm in zip(frames, real.landmarks):
        out = rgb.copy()
        if np.isfinite(lm).all():
            x0, y0, x1, y1 = metrics.mouth_box(lm, rgb.shape)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), 3)
        blurred.append(out)
    m = measure(write_clip(work / "blurred.mp4", blurred), real, models)
    assert m["sharpness_ratio"] < 0.6
    assert 20 < m["psnr"] < 45 and m["ssim"] < 1.0


def test_photo_frame_has_a_closed_mouth(real):
    k = pick_photo_frame(real.landmarks)
    open_ = real.openness
    assert open_[k] <= np.nanpercentile(open_, 25)


def test_rules_mode_renders_the_photo_with_the_rule_path(real, work):
    photo = _request("photo", real, None, work, 0)
    written = (work / "photo.png").stat().st_mtime_ns
    rules = _request("rules", real, None, work, 0)
    assert rules.face == photo.face == str(work / "photo.png")  # the same still, not rewritten
    assert (work / "photo.png").stat().st_mtime_ns == written
    assert (photo.mouth, rules.mouth) == ("learned", "rules")
    assert _request("video", real, None, work, 0).mouth == "learned"
    assert "rules" not in _VIDEO_MODES  # no frame-by-frame PSNR against the clip
    assert DEFAULT_MODES == ("photo", "rules", "video", "energy", "frozen")


def fake_result(name: str, lips: dict[str, tuple[float, float, int, float]]) -> EvalResult:
    """An EvalResult with no render behind it: per mode (r0 open, r best open, lag, r0 width)."""
    n = 50
    real = RealClip(video=Path(name), audio=Path("a.wav"), source=Path(name), fps=25.0, width=256, height=256,
                    landmarks=np.full((n, 68, 2), np.nan, np.float32), sharpness=np.full(n, np.nan),
                    embeddings=np.zeros((0, 128), np.float32), embedding=np.full(128, np.nan, np.float32))
    modes = {}
    for mode, (r0, best, lag, w0) in lips.items():
        values = {"openness_r": r0, "offset_r": best, "av_offset": float(lag), "width_r": w0,
                  "width_offset_r": w0 + 0.01, "width_offset": 1.0, "openness_spread": 1.0, "lmd": 0.05,
                  "identity_mean": 0.2, "faces": 1.0}
        modes[mode] = ModeResult(mode, values, np.zeros(n), render_seconds=1.0)
    real_metrics = {"openness_r": 1.0, "offset_r": 1.0, "av_offset": 0.0, "width_r": 1.0, "width_offset_r": 1.0,
                    "width_offset": 0.0}
    return EvalResult(real, modes, real_metrics, {}, False, 1.0, max_lag=7)


def cells_of(text: str, first: str) -> list[str]:
    """The cells of the table line that starts with `first` (cells split on 2+ spaces)."""
    import re

    line = next(line for line in text.splitlines() if line.startswith(first))
    return re.split(r"\s{2,}", line.strip())


def test_report_gives_r0_beside_r_best_for_opening_and_width():
    res = fake_result("a.mp4", {"photo": (0.12, 0.41, 3, -0.05), "rules": (0.30, 0.35, -1, 0.22)})
    table = report.format_table(res)
    assert cells_of(table, "mode ")[:7] == ["mode", "r0 open", "r best open", "lag open", "r0 width", "r best width",
                                           "lag width"]
    assert cells_of(table, "photo")[:5] == ["photo", "+0.12", "+0.41", "+3", "-0.05"]
    assert cells_of(table, "rules")[:5] == ["rules", "+0.30", "+0.35", "-1", "+0.22"]
    assert "+-7 frames" in table  # the lag search range is said

    other = fake_result("b.mp4", {"photo": (0.20, 0.30, 1, 0.15), "rules": (0.10, 0.20, 0, 0.02)})
    rows = [(r.real.source.name, report.suite_row(r), None) for r in (res, other)] + [("c.mp4", None, "no face")]
    suite = report.format_suite(rows, max_lag=7)
    assert cells_of(suite, "clip")[:6] == ["clip", "mode", "r0 open", "r best open", "lag open", "r0 width"]
    assert cells_of(suite, "a.mp4")[:6] == ["a.mp4", "photo", "+0.12", "+0.41", "+3", "-0.05"]
    lines = suite.splitlines()
    after_a = lines[next(i for i, line in enumerate(lines) if line.startswith("a.mp4")) + 1]
    assert after_a.split()[:5] == ["rules", "+0.30", "+0.35", "-1", "+0.22"]  # modes side by side per clip
    assert cells_of(suite, "mean")[:6] == ["mean", "photo", "+0.16", "+0.35", "+2", "+0.05"]
    assert not any(line.split()[:1] == ["video"] for line in lines)  # no mode without figures
    assert "c.mp4: failed: no face" in suite


def test_eval_command_end_to_end(real, work):
    from facetalk.cli import cli

    out, png = work / "report.json", work / "curve.png"
    res = CliRunner().invoke(cli, ["eval", "--video", str(real.video), "--max-seconds", "2",
                                   "-o", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["modes"]) == {"photo", "rules", "video", "energy", "frozen"}
    assert data["max_lag"] == 10
    assert data["skipped"] == {} and data["identity"] is None  # identity runs only when asked
    keys = {"openness_r", "openness_spread", "av_offset", "offset_r", "width_r", "width_offset", "width_offset_r",
            "lmd", "identity_mean", "identity_max", "identity_drift", "sharpness_ratio", "jitter_ratio", "psnr", "ssim",
            "faces"}
    for mode, entry in data["modes"].items():
        assert entry["error"] is None, (mode, entry["error"])
        assert keys <= set(entry["metrics"]), mode
        assert entry["metrics"]["faces"] > 0.9, mode
        assert len(entry["openness"]) == data["frames"] == 50
    assert data["modes"]["video"]["metrics"]["psnr"] is not None
    for mode in ("photo", "rules"):  # not frame-aligned with the clip
        assert data["modes"][mode]["metrics"]["psnr"] is None, mode
    # the frozen baseline's mouth really is frozen next to the real one
    real_open = np.array([np.nan if v is None else v for v in data["real"]["openness"]])
    frozen_open = np.array([np.nan if v is None else v for v in data["modes"]["frozen"]["openness"]])
    assert np.nanstd(frozen_open) < 0.5 * np.nanstd(real_open)
    assert png.stat().st_size > 10_000
    for mode in ("real", "photo", "rules", "video", "energy", "frozen"):
        assert any(line.startswith(mode) for line in res.output.splitlines()), mode
    for title in ("r0 open", "r best open", "r0 width", "r best width"):
        assert title in res.output, title


def test_bench_smoke(work):
    from facetalk.cli import cli

    out = work / "bench.json"
    res = CliRunner().invoke(cli, ["bench", "--seconds", "1", "--size", "320x180", "--input", "photo", "-o", str(out)])
    assert res.exit_code == 0, res.output
    (case,) = json.loads(out.read_text())["cases"]
    assert "error" not in case, case
    assert case["frames"] == 25 and case["size"] == "320x180"
    assert case["rtf"] > 0 and case["x_floor"] > 1  # rendering costs more than copying
    assert {"render", "encode", "speech"} <= set(case["stages_s"])
    assert 50 < case["peak_rss_mb"] < 4000 and case["floor_rss_mb"] > 20


def test_bench_cuda_without_gpu_is_a_clear_error():
    pytest.importorskip("facetalk")
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here")
    except ImportError:
        pass
    from facetalk.cli import main

    assert main(["bench", "--device", "cuda"]) == 2
