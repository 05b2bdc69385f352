"""Learning identities from real footage, and rendering them (issue #4).

Identities are built through the real CLI into a temporary FACETALK_HOME, from parts of
the talking clips in ../shared/media (a few seconds each, so the suite stays quick), and
judged on what they hold and on re-detected landmarks of what they render.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetalk.cli import main
from facetalk.eval import metrics
from facetalk.eval.bench import cut_clip
from facetalk.face.embed import face_embedding
from facetalk.face.track import track_faces
from facetalk.identity.bank import load_bank
from facetalk.identity.learn import LearnSettings, _turned
from facetalk.media.video import iter_frames, probe_video
from facetalk.motion.shapes import target_table
from facetalk.types import Shape

from .conftest import espeak, read_wav, write_wav


@pytest.fixture(scope="module")
def home(tmp_path_factory, monkeypatch_module) -> Path:
    h = tmp_path_factory.mktemp("home")
    monkeypatch_module.setenv("FACETALK_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def footage(media, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("footage")
    talking = media / "talking"
    return {
        "congressman": cut_clip(talking / "congressman-60s-256px.mp4", d / "congressman.mp4", 14.0),
        "anchor": cut_clip(talking / "news-anchor-de-20s.mp4", d / "anchor.mp4", 10.0),
    }


@pytest.fixture(scope="module")
def built(home, footage) -> dict[str, Path]:
    """Two identities, each built once through `facetalk identity create`."""
    for name in ("congressman", "anchor"):
        assert main(["identity", "create", name, "--footage", str(footage[name]), "--consent", "test footage",
                     "--quiet"]) == 0
    return {name: home / "identities" / name / "v1" for name in ("congressman", "anchor")}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("speech")
    a = espeak("Hello there, my friend.", d / "a.wav")
    b = espeak("We meet again today.", d / "b.wav")
    (sa, sr), (sb, _) = read_wav(a), read_wav(b)
    return write_wav(d / "speech.wav", np.concatenate([sa, np.zeros(int(0.8 * sr), np.float32), sb]), sr)


def test_identity_holds_what_was_learnt(built, footage):
    path = built["congressman"]
    manifest = json.loads((path / "identity.json").read_text())
    assert manifest["consent"] == "test footage"
    assert manifest["footage"][0]["file"] == "congressman.mp4"
    frames = manifest["frames"]
    assert frames["total"] == 350 and frames["used"] + sum(frames["skipped"].values()) == 350
    assert frames["used"] > 300  # a clean, frontal clip
    # the person's shapes: open, wide, round fitted; this man speaks with a small opening
    table = np.array([[row[p] for p in ("open", "wide", "round")] for row in manifest["shapes"].values()])
    generic = target_table()[:, :3]
    assert table[list(Shape).index(Shape.D), 0] < 0.6 * generic[list(Shape).index(Shape.D), 0]
    assert table[list(Shape).index(Shape.A), 0] == 0.0 and table[list(Shape).index(Shape.X), 0] == 0.0
    fit = manifest["settings"]["shape_fit"]
    assert fit["rms_fitted"] < 0.8 * fit["rms_generic"]
    # the bank: crops of usable frames, in runs of consecutive frames
    bank = load_bank(path / "mouth_bank.safetensors")
    assert len(bank) == frames["bank"] and len(bank) >= 200
    runs = np.diff(bank.source[:, 1]) == 1
    assert runs.mean() > 0.6
    # the face clip: clip_seconds of the footage, no audio
    info = probe_video(path / "face.mp4")
    assert abs(info.duration - LearnSettings().clip_seconds) < 0.1 and not info.has_audio
    # the reference frame shows a closed mouth
    ref = cv2.imread(str(path / "reference.png"))[..., ::-1]
    lm = track_faces(iter([np.ascontiguousarray(ref)]), _models(), fps=25).raw[0]
    assert metrics.openness_series(lm[None])[0] < 0.08


def _models():
    from facetalk.face.models import FaceModels

    return FaceModels()


def test_bad_frames_are_skipped_and_counted(home, media, tmp_path):
    """Black frames (no face), blurred frames and a covered mouth never reach the bank."""
    def edit(k: int, rgb: np.ndarray) -> np.ndarray:
        if k < 15:
            return np.zeros_like(rgb)
        if 60 <= k < 75:
            return cv2.GaussianBlur(rgb, (0, 0), 5)
        if 120 <= k < 135:
            out = rgb.copy()
            out[150:230, 70:190] = (40, 200, 60)  # a green card over the mouth and chin
            return out
        return rgb

    clip = cut_clip(media / "talking" / "congressman-60s-256px.mp4", tmp_path / "edited.mp4", 8.0, edit)
    assert main(["identity", "create", "edited", "--footage", str(clip), "--quiet"]) == 0
    path = home / "identities" / "edited" / "v1"
    skipped = json.loads((path / "identity.json").read_text())["frames"]["skipped"]
    assert skipped["no_face"] >= 15
    assert skipped["blur"] >= 10
    assert skipped["occluded"] >= 12  # the card: its colour is far from the lower face's
    used = set(load_bank(path / "mouth_bank.safetensors").source[:, 1].tolist())
    assert not used & set(range(15)) and not used & set(range(62, 73)) and not used & set(range(122, 133))


def test_turned_head_is_detected():
    """A nose tip far towards one cheek reads as a turned head."""
    lm = np.zeros((3, 68, 2), np.float32)
    lm[:, 2] = (0, 0)
    lm[:, 14] = (100, 0)
    lm[:, 30] = [(50, 0), (52, 0), (90, 0)]
    assert _turned(lm, np.ones(3, bool), LearnSettings()).tolist() == [False, False, True]


def test_footage_of_another_person_is_refused(home, footage, capsys):
    argv = ["identity", "create", "mixed", "--footage", str(footage["congressman"]), "--footage", str(footage["anchor"])]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different person" in err[0] and "anchor.mp4" in err[0] and "--allow-mixed" in err[0]
    assert not (home / "identities" / "mixed").exists() or not any((home / "identities" / "mixed").glob("v*"))
    assert main([*argv, "--allow-mixed", "--quiet"]) == 0
    manifest = json.loads((home / "identities" / "mixed" / "v1" / "identity.json").read_text())
    assert manifest["frames"]["skipped"]["other_person"] >= 200  # the anchor's 250 frames, nearly all


def _render(identity: str, audio: Path, out: Path, *extra: str) -> Path:
    assert main(["render", "--identity", identity, "--audio", str(audio), "-o", str(out), "--quiet", *extra]) == 0
    return out


def test_two_identities_same_timing_different_faces(built, speech, tmp_path):
    outs = {n: _render(n, speech, tmp_path / f"{n}.mp4") for n in ("congressman", "anchor")}
    models = _models()
    opens, embs = {}, {}
    for name, out in outs.items():
        frames = list(iter_frames(out))
        lm = track_faces(iter(frames), models, fps=25, smooth=False).raw
        opens[name] = metrics.openness_series(lm)
        k = len(frames) // 2
        embs[name] = face_embedding(models, frames[k], lm[k])
        # the rendered person is the identity's own
        ref = cv2.imread(str(built[name] / "reference.png"))[..., ::-1]
        ref_lm = track_faces(iter([np.ascontiguousarray(ref)]), models, fps=25).raw[0]
        assert np.linalg.norm(embs[name] - face_embedding(models, ref, ref_lm)) < 0.45
    a, b = opens["congressman"], opens["anchor"]
    n = min(len(a), len(b))
    assert metrics.pearson(a[:n], b[:n]) > 0.5  # same audio: the mouths move together
    assert np.linalg.norm(embs["congressman"] - embs["anchor"]) > 0.6  # different people
    sr = read_wav(speech)[1]
    assert n == pytest.approx(len(read_wav(speech)[0]) / sr * 25, abs=1)


def test_export_import_renders_identical_frames(built, speech, tmp_path, home):
    archive = tmp_path / "congressman.zip"
    assert main(["identity", "export", "congressman", "-o", str(archive)]) == 0
    assert main(["identity", "import", str(archive), "--name", "copy"]) == 0
    a = _render("congressman@v1", speech, tmp_path / "a.mp4")
    b = _render("copy", speech, tmp_path / "b.mp4")
    for fa, fb in zip(iter_frames(a), iter_frames(b), strict=True):
        assert np.array_equal(fa, fb)


def test_warp_renderer_and_photo_source_on_an_identity(built, speech, tmp_path):
    out = _render("anchor", speech, tmp_path / "warp.mp4", "--renderer", "warp", "--identity-face", "photo")
    import av

    with av.open(str(out)) as c:
        tags = c.metadata
    assert (tags["renderer"], tags["identity"], tags["ai_generated"]) == ("warp", "anchor@v1", "true")
    assert "renderer warp; identity anchor@v1" in tags["comment"]


def test_unknown_identity_is_one_line(home, speech, tmp_path, capsys):
    assert main(["render", "--identity", "nobody", "--audio", str(speech), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody" in err[0]
    assert not (tmp_path / "x.mp4").exists()


def test_eval_identity_mode_learns_before_and_tests_after(footage, tmp_path):
    """Mode identity: learnt from the first part, every mode measured on the part after."""
    from facetalk.eval.report import format_table, to_dict
    from facetalk.eval.run import EvalOptions, evaluate_clip

    res = evaluate_clip(footage["congressman"], options=EvalOptions(modes=("photo", "identity"), train_seconds=9.0),
                        workdir=tmp_path)
    assert res.identity["train_seconds"] == pytest.approx(9.0, abs=0.05)
    assert res.real.n_frames == 350 - 225  # only the held-out frames are the ground truth
    ident = res.modes["identity"]
    assert ident.error is None and ident.speech_method == "acoustic"
    assert ident.metrics["faces"] > 0.95
    assert ident.metrics["identity_mean"] < 0.45
    assert np.isfinite(ident.metrics["lmd"]) and np.isfinite(ident.metrics["sharpness_ratio"])
    assert "learnt from the first 9.0 s" in format_table(res)
    assert to_dict(res)["identity"]["ref"] == "eval@v1"


def test_transcript_drives_forced_alignment_of_the_footage(home, tmp_path):
    """Footage with known words (a portrait rendered speaking espeak speech) is aligned
    with its transcript, and the learnt table keeps the open shapes ordered."""
    import skimage.data
    from PIL import Image

    text = "Bob and Mary eat apples. We can go out to the park today."
    face = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(face)
    words = espeak(text, tmp_path / "words.wav")
    talk = tmp_path / "talk.mp4"
    assert main(["render", "--face", str(face), "--audio", str(words), "-o", str(talk), "--size", "256",
                 "--still", "--quiet"]) == 0
    script = tmp_path / "talk.txt"
    script.write_text(text)
    assert main(["identity", "create", "astro", "--footage", str(talk), "--transcript", str(script), "--quiet"]) == 0
    manifest = json.loads((home / "identities" / "astro" / "v1" / "identity.json").read_text())
    assert manifest["footage"][0]["speech"] == "alignment"
    shapes = manifest["shapes"]
    assert shapes["D"]["open"] > shapes["B"]["open"] > 0.0 == shapes["A"]["open"]
