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
from facetalk.eval.run import EvalOptions, RealClip, measure_generated, pick_photo_frame, prepare_real
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
    assert m["openness_r"] < m["offset_r"] - 0.1


def test_frozen_video_does_not_correlate(frames, real, work, models):
    frozen = write_clip(work / "frozen.mp4", [frames[0]] * N_FRAMES)
    m, gen_open = measure_generated(frozen, real, models, OPTIONS, video_type=False)
    # the still clip's openness is codec noise only; its chance correlation over 60 frames
    # has a standard deviation of ~0.13, far from the 0.9+ of a mouth that follows
    assert np.nanstd(gen_open) < 0.1 * np.nanstd(real.openness)
    assert m["openness_spread"] < 0.1
    assert abs(m["openness_r"]) < 0.5
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


def test_eval_command_end_to_end(real, work):
    from facetalk.cli import cli

    out, png = work / "report.json", work / "curve.png"
    res = CliRunner().invoke(cli, ["eval", "--video", str(real.video), "--max-seconds", "2",
                                   "-o", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["modes"]) == {"photo", "video", "energy", "frozen"}
    assert data["skipped"] == {} and data["identity"] is None  # identity runs only when asked
    keys = {"openness_r", "openness_spread", "av_offset", "lmd", "identity_mean", "identity_max", "identity_drift",
            "sharpness_ratio", "jitter_ratio", "psnr", "ssim", "faces"}
    for mode, entry in data["modes"].items():
        assert entry["error"] is None, (mode, entry["error"])
        assert keys <= set(entry["metrics"]), mode
        assert entry["metrics"]["faces"] > 0.9, mode
        assert len(entry["openness"]) == data["frames"] == 50
    assert data["modes"]["video"]["metrics"]["psnr"] is not None
    assert data["modes"]["photo"]["metrics"]["psnr"] is None  # not frame-aligned with the clip
    # the frozen baseline's mouth really is frozen next to the real one
    real_open = np.array([np.nan if v is None else v for v in data["real"]["openness"]])
    frozen_open = np.array([np.nan if v is None else v for v in data["modes"]["frozen"]["openness"]])
    assert np.nanstd(frozen_open) < 0.5 * np.nanstd(real_open)
    assert png.stat().st_size > 10_000
    for mode in ("real", "photo", "video", "energy", "frozen"):
        assert any(line.startswith(mode) for line in res.output.splitlines()), mode


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
