"""The lip model: features, the shipped model and its checks, streaming, training on real
footage (a tiny model fits one clip; torch and numpy agree), and the motion it drives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetalk.lips.features import N_MELS, log_mel, mel_filterbank
from facetalk.lips.model import (CONFIG_FILE, DEFAULT_DIR, WEIGHTS_FILE, LipModelError, expected_shapes, lip_model,
                                 load_lip_model, sha256_file)
from facetalk.types import MOUTH_PARAMS

from .cli_helpers import run_cli

OPEN = MOUTH_PARAMS.index("open")


def test_log_mel_puts_a_tone_in_its_band_and_gain_is_a_shift():
    sr = 16_000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel = log_mel(tone)
    assert mel.shape == (100, N_MELS) and mel.dtype == np.float32
    bank = mel_filterbank()
    centre = np.fft.rfftfreq(512, 1 / sr)[np.argmax(bank, axis=0)]  # each band's peak frequency
    loudest = int(np.argmax(mel[50]))
    assert abs(centre[loudest] - 1000) < 120
    # a level change is a constant shift of the log-mel (what the model's normalisation removes)
    quiet = log_mel(tone * 0.1)
    live = mel[50] > mel[50].max() - 9  # bands within ~40 dB of the tone (others sit at the floor)
    np.testing.assert_allclose(quiet[50, live] - mel[50, live], np.log(0.01), atol=1e-3)


def test_shipped_model_loads_checked_and_small():
    m = lip_model()
    cfg = json.loads((DEFAULT_DIR / CONFIG_FILE).read_text())
    weights = DEFAULT_DIR / WEIGHTS_FILE
    assert m.sha256 == cfg["weights"]["sha256"] == sha256_file(weights)
    assert weights.stat().st_size <= 10 * 2**20
    assert {k: v.shape for k, v in m.params.items()} == expected_shapes(m.arch)
    assert m.arch.lookahead * 10 <= 300  # the live path's look-ahead budget
    assert (DEFAULT_DIR / "MODEL_CARD.md").read_text().count("licence") >= 1
    assert cfg["training"]["speakers"] >= 10


def _copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "lips"
    shutil.copytree(DEFAULT_DIR, folder)
    return folder


@pytest.mark.parametrize("damage", ["flipped byte", "renamed weights", "bad json", "other architecture", "wrong shape"])
def test_a_damaged_model_is_refused_in_one_line(tmp_path, damage, capsys):
    folder = _copy_model(tmp_path)
    weights, cfg_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    cfg = json.loads(cfg_path.read_text())
    if damage == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "renamed weights":
        weights.rename(folder / "weights.safetensors")
    elif damage == "bad json":
        cfg_path.write_text("{not json")
    elif damage == "other architecture":
        cfg["architecture"] = "something-else"
        cfg_path.write_text(json.dumps(cfg))
    else:
        cfg["arch"]["channels"] += 1
        cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(LipModelError):
        load_lip_model(folder)
    code, out, err = run_cli(capsys, "lipsync", "show", str(folder))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "lip model" in err


def test_stream_gives_the_whole_file_result(media):
    from facetalk.media.audio import load_audio

    mel = log_mel(load_audio(media / "speech" / "en-film-7s.wav").samples)
    model = lip_model()
    whole = model.predict(mel)
    assert whole.shape == (len(mel), 2)
    s = model.stream()
    parts, pos, sizes = [], 0, [1, 7, 40, 3, 160, 2]  # uneven packets, as a microphone delivers them
    while pos < len(mel):
        k = sizes[len(parts) % len(sizes)]
        out = s.push(mel[pos:pos + k])
        assert len(out) <= k
        parts.append(out)
        pos += k
    parts.append(s.finish())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    # the same numpy computation; only the matrix shapes differ (BLAS may sum in another
    # order), so agreement is to float32 rounding on values of order 1
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_learned_motion_opens_in_speech_closes_in_silence_and_is_deterministic(speech_with_pause):
    from facetalk.context import RunContext
    from facetalk.media.audio import load_audio
    from facetalk.motion.build import build_motion
    from facetalk.speech.analyse import analyse_speech

    speech = analyse_speech(load_audio(speech_with_pause["path"]), None, RunContext())
    fps = 25.0
    n = int(round(speech.duration * fps))
    a = build_motion(speech, fps, n, seed=0)
    b = build_motion(speech, fps, n, seed=0)
    np.testing.assert_array_equal(a.mouth, b.mouth)  # same computation in one process: exact
    t = np.arange(n) / fps
    lo, hi = speech_with_pause["silence"]
    silent = (t > lo + 0.3) & (t < hi - 0.3)
    speaking = np.zeros(n, bool)
    idx = np.flatnonzero(speech.voiced)
    speaking[np.unique(np.clip((idx / 100 * fps).astype(int), 0, n - 1))] = True
    opening = a.mouth[:, OPEN]
    assert opening[silent].max() < 0.02
    assert opening[speaking].mean() > 0.15
    assert np.percentile(opening[speaking], 90) > 0.35  # it opens wide on some syllables
    assert opening[:5].max() < 0.02  # 0.4 s of lead-in silence: closed


@pytest.fixture(scope="module")
def one_clip_data(tmp_path_factory, media):
    """One real talking clip prepared through the CLI (tracking, targets, features)."""
    from click.testing import CliRunner

    from facetalk.cli import cli

    d = tmp_path_factory.mktemp("lipcorpus")
    clip = media / "talking" / "man-suit-6s.mp4"
    (d / "MANIFEST.tsv").write_text(f"file\tspeaker\tlanguage\tsource\tlicence\n{clip}\ts0\ten\tshared media\tsee MANIFEST.md\n")
    out = d / "data"
    result = CliRunner().invoke(cli, ["lipsync", "prepare", str(d), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "prepared 1 clips of 1 speakers" in result.output
    return out


def test_prepared_clip_has_targets_mask_and_features(one_clip_data):
    from facetalk.lips.data import load_prepared

    index = json.loads((one_clip_data / "index.json").read_text())
    assert len(index) == 1 and index[0]["speaker"] == "s0" and index[0]["licence"] == "see MANIFEST.md"
    (clip,) = load_prepared(one_clip_data)
    n = len(clip.open)
    assert abs(n / clip.fps - 6.0) < 0.5
    assert clip.usable.mean() > 0.9  # a frontal talking head: nearly every frame usable
    assert set(clip.mel) == {"clean", "phone", "codec", "room"}
    for m in clip.mel.values():
        assert abs(len(m) - n / clip.fps * 100) <= 4 and m.shape[1] == N_MELS
    # speaker-normalised opening: 0 closed .. 1 wide open (5th and 95th percentiles)
    o = clip.target[clip.usable, 0]
    assert np.percentile(o, 5) == pytest.approx(0, abs=0.02) and np.percentile(o, 95) == pytest.approx(1, abs=0.02)
    assert np.nanstd(clip.open) > 0.02  # the mouth really moves in this clip


def test_tiny_model_fits_one_clip_and_numpy_matches_torch(one_clip_data, tmp_path):
    pytest.importorskip("torch")
    from facetalk.lips.data import lagged_r, load_prepared
    from facetalk.lips.model import Arch
    from facetalk.lips.train import TrainSettings, fit_model, frame_values, predict_clip, save_model

    clips = load_prepared(one_clip_data)
    arch = Arch(channels=24, dilations=(1, 2, 4, 8), lookahead=12)
    # no dropout or masking: this checks that the network can fit what it is shown
    settings = TrainSettings(steps=400, batch=8, lr=3e-3, seed=1, eval_every=400, dropout=0.0, freq_masks=0, time_masks=0)
    net, norm, log = fit_model(clips, settings, arch, val=clips, offsets=False)
    c = clips[0]
    pred = frame_values(predict_clip(net, c.mel["clean"], norm), c)
    r = lagged_r(pred[:, 0], c.target[:, 0], 0)
    assert r > 0.9, log
    save_model(net, norm, tmp_path / "tiny", clips, settings, log)
    model = load_lip_model(tmp_path / "tiny")
    ours = model.predict(c.mel["clean"])
    theirs = predict_clip(net, c.mel["clean"], norm)
    # two implementations of one float32 network (torch's convolution kernels against
    # numpy matmuls) sum in different orders: outputs of order 1 agree to ~1e-5; 1e-3
    # leaves room for any CPU's kernels and still catches a wrong layer or a shifted row
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    card = (tmp_path / "tiny" / "MODEL_CARD.md").read_text()
    assert "shared media" in card and "see MANIFEST.md" in card


def test_training_resumes_from_its_checkpoint(one_clip_data, tmp_path):
    torch = pytest.importorskip("torch")
    from facetalk.lips.data import load_prepared
    from facetalk.lips.model import Arch
    from facetalk.lips.train import TrainSettings, train

    clips = load_prepared(one_clip_data)
    arch = Arch(channels=8, dilations=(1, 2), lookahead=4)
    settings = TrainSettings(steps=6, batch=4, seed=3, eval_every=3)
    straight, _, _ = train(clips, settings, arch)

    class Stop(Exception):
        pass

    def die_at_4(step, loss, val):
        if step == 4:
            raise Stop

    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(Stop):
        train(clips, settings, arch, checkpoint=ckpt, progress=die_at_4)
    assert ckpt.is_file()
    resumed, _, log = train(clips, settings, arch, checkpoint=ckpt)
    assert log["steps"] == 6
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        # the same steps on the same examples in one process; a tolerance rather than
        # equality because the resumed run's first step rebuilds the optimiser from saved tensors
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=k)


def test_folds_split_by_speaker_and_keep_held_out_speakers_out():
    from facetalk.lips.crossval import speaker_folds
    from facetalk.lips.data import LipClip

    rng = np.random.default_rng(0)
    clips = [LipClip(f"c{i}", f"s{i % 7}", "en", 25.0, {}, np.zeros(int(rng.integers(50, 500))), np.zeros(1))
             for i in range(40)]
    folds = speaker_folds(clips, 3, held_out={"s0"})
    assert all(a.isdisjoint(b) for i, a in enumerate(folds) for b in folds[i + 1:])
    assert set().union(*folds) == {f"s{i}" for i in range(1, 7)}
