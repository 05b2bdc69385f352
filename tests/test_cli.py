"""The command line: bad input gives one clear line and exit code 2, never a traceback,
and never destroys or half-writes an output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from .cli_helpers import assert_one_line_error, run_cli
from .conftest import espeak, stream_durations, write_wav


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    face = d / "face.png"
    Image.fromarray(skimage.data.astronaut()).save(face)
    speech = espeak("Hello there, this is a short test.", d / "speech.wav")
    no_face = d / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(no_face)
    return {"dir": d, "face": face, "speech": speech, "no_face": no_face}


def test_render_writes_video_and_json_progress(capsys, files):
    out = files["dir"] / "ok.mp4"
    code, stdout, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", out, "--json-progress")
    assert code == 0, err
    events = [json.loads(line) for line in err.strip().splitlines()]
    assert {"event", "stage", "fraction", "message"} <= set(events[0])
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert {"speech", "face", "render"} <= set(stages)
    render_fracs = [e["fraction"] for e in events if e.get("stage") == "render"]
    assert render_fracs == sorted(render_fracs) and render_fracs[-1] == 1.0
    assert events[-1]["event"] == "result" and events[-1]["n_frames"] > 0
    assert stream_durations(out)["video"] > 1.0


def test_photo_without_face(capsys, files):
    out = files["dir"] / "noface.mp4"
    code, _, err = run_cli(capsys, "render", "--face", files["no_face"], "--audio", files["speech"], "-o", out)
    assert_one_line_error(code, err, "no face", "coffee.jpg")
    assert not out.exists()
    assert not list(files["dir"].glob(".*part*")), "no temporary file may be left behind"


def test_missing_and_unsupported_files(capsys, files):
    out = files["dir"] / "x.mp4"
    code, _, err = run_cli(capsys, "render", "--face", files["dir"] / "nope.jpg", "--audio", files["speech"], "-o", out)
    assert_one_line_error(code, err, "nope.jpg")
    gif = files["dir"] / "face.gif"
    gif.write_bytes(b"GIF89a")
    code, _, err = run_cli(capsys, "render", "--face", gif, "--audio", files["speech"], "-o", out)
    assert_one_line_error(code, err, ".gif")
    txt = files["dir"] / "speech.txt"
    txt.write_text("hello")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", txt, "-o", out)
    assert_one_line_error(code, err, ".txt")


def test_unreadable_and_truncated_media(capsys, files, media):
    out = files["dir"] / "x.mp4"
    fake = files["dir"] / "fake.wav"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", fake, "-o", out)
    assert_one_line_error(code, err, "fake.wav")
    broken = files["dir"] / "broken.png"
    broken.write_bytes((files["face"]).read_bytes()[:300])
    code, _, err = run_cli(capsys, "render", "--face", broken, "--audio", files["speech"], "-o", out)
    assert_one_line_error(code, err, "broken.png")
    assert not out.exists()


def test_zero_length_audio(capsys, files):
    empty = write_wav(files["dir"] / "empty.wav", np.zeros(0, np.float32), 16000)
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", empty, "-o", files["dir"] / "e.mp4")
    assert_one_line_error(code, err, "zero length")


def test_silent_audio_renders_closed_mouth_with_warning(capsys, files):
    rng = np.random.default_rng(0)
    quiet = write_wav(files["dir"] / "quiet.wav", rng.normal(0, 1e-3, 32000).astype(np.float32), 16000)
    out = files["dir"] / "quiet.mp4"
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", quiet, "-o", out)
    assert code == 0, err
    assert "no speech" in err
    assert out.exists()


def test_unwritable_output_leaves_existing_file(capsys, files):
    blocker = files["dir"] / "not-a-folder"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", blocker / "out.mp4")
    assert_one_line_error(code, err, "not-a-folder")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", files["dir"] / "out.avi")
    assert_one_line_error(code, err, ".avi")
    # a failing render never touches an existing output
    keep = files["dir"] / "keep.mp4"
    keep.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "render", "--face", files["no_face"], "--audio", files["speech"], "-o", keep)
    assert code == 2
    assert keep.read_bytes() == b"precious"


def test_bad_options(capsys, files):
    out = files["dir"] / "x.mp4"
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", out, "--size", "big")
    assert_one_line_error(code, err, "--size")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", out, "--renderer", "magic")
    assert_one_line_error(code, err, "magic", "warp")
    code, _, err = run_cli(capsys, "render", "--face", files["face"], "--audio", files["speech"], "-o", out, "--face-index", "3")
    assert_one_line_error(code, err, "face")


@pytest.mark.parametrize("args, words", [
    (("render", "--fps", "abc"), ("--fps", "abc", "facetalk render --help")),
    (("render", "--bogus"), ("no such option", "--bogus")),
    (("grade", "--lut-strength", "2", "in.mp4", "-o", "out.mp4"), ("--lut-strength", "0.0<=x<=1.0")),
    (("jobs", "list", "--state", "nope"), ("--state", "nope", "queued")),
    (("jobs", "show"), ("missing argument", "facetalk jobs show --help")),
    (("nosuch",), ("no such command", "nosuch")),
])
def test_click_usage_errors_are_one_line(capsys, args, words):
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, *words)


@pytest.mark.parametrize("args", [(), ("jobs",), ("identity",)])
def test_a_bare_command_group_prints_its_help(capsys, args):
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and not err
    assert out.startswith(f"Usage: facetalk {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND") and "Commands:" in out


def test_huge_image_is_downscaled_with_a_note(capsys, files):
    big = files["dir"] / "big.jpg"
    img = Image.fromarray(skimage.data.astronaut()).resize((6000, 6000))
    img.save(big, quality=80)
    out = files["dir"] / "big.mp4"
    code, _, err = run_cli(capsys, "render", "--face", big, "--audio", files["speech"], "-o", out)
    assert code == 0, err
    assert "downscaled" in err
    d = stream_durations(out)
    assert d["video"] > 0


def test_cues_json_and_tsv(capsys, files, tmp_path):
    transcript = tmp_path / "t.txt"
    transcript.write_text("Hello there, this is a short test.")
    code, out, err = run_cli(capsys, "cues", files["speech"], "--transcript", transcript, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    cues = data["mouthCues"]
    assert cues[0]["start"] == 0 and cues[-1]["value"] == "X"
    assert all(c["value"] in "ABCDEFGHX" for c in cues)
    assert all(abs(a["end"] - b["start"]) < 1e-9 for a, b in zip(cues, cues[1:]))
    assert len({c["value"] for c in cues}) >= 4
    code, out, err = run_cli(capsys, "cues", files["speech"], "--format", "tsv")
    assert code == 0, err
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert all(len(r) == 2 and r[1] in "ABCDEFGHX" for r in rows)
    times = [float(r[0]) for r in rows]
    assert times == sorted(times)


def test_console_script_exit_code(files):
    """The installed entry point maps errors to exit code 2 in a real process."""
    proc = subprocess.run([sys.executable, "-m", "facetalk", "render", "--face", str(files["no_face"]),
                           "--audio", str(files["speech"]), "-o", str(files["dir"] / "p.mp4")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("facetalk: error:") and "Traceback" not in proc.stderr


def test_sigterm_mid_render_leaves_nothing_behind(files, tmp_path):
    """A render stopped by SIGTERM (a job runner, `timeout`) removes its temporary file."""
    import signal
    import time

    out_dir = tmp_path / "killed"
    out_dir.mkdir()
    long_audio = write_wav(tmp_path / "long.wav", np.tile(np.sin(np.arange(16000) / 5.0), 20).astype(np.float32) * 0.3, 16000)
    proc = subprocess.Popen([sys.executable, "-m", "facetalk", "render", "--face", str(files["face"]),
                             "--audio", str(long_audio), "-o", str(out_dir / "out.mp4"), "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(out_dir.glob(".*part*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(out_dir.glob(".*part*")), "the render should have started writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(out_dir.iterdir()) == [], "no temporary or partial output may remain"
